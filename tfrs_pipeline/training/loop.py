"""The training loop both stages share: ``model.fit`` with early stopping, progress, timing, TensorBoard."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_pipeline.errors import TrainingError
from tfrs_pipeline.training.backup import StageBackup
from tfrs_pipeline.training.result import TrainingResult
from tfrs_pipeline.training.step import scales_loss


class Progress(tf.keras.callbacks.Callback):
    """Times each epoch's training and shows it: a live batch counter on a terminal, one line per epoch.

    The line names only what matters for the stage (``shown``), with seconds and
    training examples per second. ``verbose`` 0 only times; 1 adds the live counter (redrawn at
    most every ``refresh_seconds``); 2 (logs) adds a line every ``report_seconds`` within an epoch, so a long epoch shows progress.
    """

    def __init__(self, stage: str, examples_per_epoch: int, shown: tuple[str, ...], verbose: int,
                 report_seconds: float = 60.0, refresh_seconds: float = 0.2) -> None:
        super().__init__()
        self.stage, self.examples, self.shown, self.verbose = stage, examples_per_epoch, shown, verbose
        self.report_seconds, self.refresh_seconds = report_seconds, refresh_seconds
        self.seconds: list[float] = []

    def on_train_begin(self, logs=None):
        self.epochs = self.params.get("epochs", 0)
        self.steps = self.params.get("steps")

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._reported = self._shown = time.perf_counter()
        self._train_seconds = None

    def on_train_batch_end(self, batch, logs=None):
        # Called once per call into TensorFlow (``steps_per_execution`` batches), with the last batch's index.
        if self.verbose == 1 and (time.perf_counter() - self._shown >= self.refresh_seconds or batch + 1 == self.steps):
            self._shown = time.perf_counter()
            sys.stdout.write(f"\r{self.stage} epoch {len(self.seconds) + 1}/{self.epochs}: "
                             f"batch {batch + 1}/{self.steps or '?'}  {time.perf_counter() - self._start:.0f} s")
            sys.stdout.flush()
        elif self.verbose == 2 and time.perf_counter() - self._reported >= self.report_seconds:
            self._reported = time.perf_counter()
            elapsed = self._reported - self._start
            rate = (batch + 1) * self.examples / max(self.steps or 1, 1) / elapsed if self.steps else 0.0
            print(f"{self.stage} epoch {len(self.seconds) + 1}/{self.epochs}: batch {batch + 1}/{self.steps or '?'}  "
                  f"{elapsed:.0f} s ({rate:,.0f} examples/s)", flush=True)

    def on_test_begin(self, logs=None):
        # Training ends where the epoch's validation begins: time the training alone.
        if self._train_seconds is None:
            self._train_seconds = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        train_seconds = self._train_seconds if self._train_seconds is not None else time.perf_counter() - self._start
        self.seconds.append(train_seconds)
        if logs is not None:
            logs["epoch_seconds"] = train_seconds
        if self.verbose:
            values = "  ".join(f"{name} {logs[name]:.4f}" for name in self.shown if logs and name in logs)
            line = (f"{self.stage} epoch {epoch + 1}/{self.epochs}: {values}  "
                    f"{time.perf_counter() - self._start:.1f} s ({self.examples / max(train_seconds, 1e-9):,.0f} examples/s)")
            sys.stdout.write(("\r" if self.verbose == 1 else "") + line + "\n")
            sys.stdout.flush()


def in_float32(build):
    """Builds a layer with the float32 policy, whatever the global (mixed) precision policy is.

    Losses, metrics and indexes stay in float32 under mixed precision: Keras would
    otherwise cast their first input to the compute dtype (bfloat16 or float16).
    """
    policy = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("float32")
    try:
        return build()
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)


#: Fewest planned training steps for which several steps per call pay: the multi-step loop's first call
#: costs about 0.5 s more on the retrieval model (its step traced once, see :func:`trace_step_once`), and
#: each later step saves 3 to 5 ms.
MULTI_STEP_FROM = 200


def steps_per_call(requested: int, strategy: tf.distribute.Strategy, examples: int, batch_size: int,
                   epochs: int) -> int:
    """``steps_per_execution`` for ``compile``: as ``requested`` where it pays, otherwise 1.

    1 on runs of fewer than :data:`MULTI_STEP_FROM` steps, and on several replicas: they all-gather
    the embedding tables' sparse gradients, whose row counts differ from replica to replica, and
    within Keras's multi-step loop the gather keeps its first shape and fails.
    """
    planned = -(-examples // batch_size) * epochs
    return requested if strategy.num_replicas_in_sync == 1 and planned >= MULTI_STEP_FROM else 1


def trace_step_once(model: tf.keras.Model, strategy: tf.distribute.Strategy | None = None) -> None:
    """Makes ``model``'s training step a ``tf.function`` of its own, for Keras's multi-step loop.

    That loop (``steps_per_execution`` > 1) first runs its body in a throwaway graph to learn
    what it returns, so the step was traced twice: 0.7-0.9 s more of the first epoch at 100K
    ratings. A step of its own is traced once and called from both graphs. Only with the default
    strategy and without mixed float16: under any ``tf.distribute`` strategy, one replica
    included (``--strategy mirrored`` on a machine with one device), the optimizer aggregates
    gradients with a ``merge_call``, as the loss-scale optimizer updates its scale, and a
    ``merge_call`` inside a nested ``tf.function`` is a RuntimeError (``benchmark gpu`` stopped so
    at synthetic:1m, the first size whose runs plan enough steps for the multi-step loop).
    """
    with (strategy or tf.distribute.get_strategy()).scope():
        distributed = tf.distribute.has_strategy()  # False for the default strategy alone
    if distributed or scales_loss(model):
        return
    model.train_step = tf.function(model.train_step)


def build_optimizer(model: tf.keras.Model) -> None:
    """Creates the compiled optimizer's moment variables for every trainable variable, before ``fit``.

    Call it under the strategy's scope once every variable of the model exists. Left to
    ``fit``, the first training step creates them, and TensorFlow traces a step that creates
    variables twice: on the retrieval model that second trace cost 0.6 to 1.2 s of the first epoch.
    """
    model.optimizer.build(model.trainable_variables)


def fit(model: tf.keras.Model, train: tf.data.Dataset, validation: tf.data.Dataset | None, *, epochs: int,
        monitor: str, mode: str, patience: int, examples: int, log_dir: str | Path | None, verbose: int,
        stage: str = "training", shown: tuple[str, ...] = ("loss",), extra_callbacks: list | None = None,
        reduce_lr_on_plateau: bool = False, early_stopping_without_validation: bool = False,
        backup: StageBackup | None = None, settings: str = "",
        initial: tuple[float, list] | None = None) -> TrainingResult:
    """``model.fit`` with early stopping on ``monitor`` (best weights kept), progress and TensorBoard.

    Args:
        early_stopping_without_validation: ``monitor`` is logged by one of ``extra_callbacks``,
            so early stopping applies although ``validation`` is None.
        backup: where the stage is backed up; a stage it holds as finished is restored, not trained.
        settings: the stage's configuration section (``retrieval``, ``rating``, ``ranker``), named by
            the error of a loss that became NaN or infinite.
        initial: ``monitor``'s value before the first epoch and the weights then: kept (``best_epoch``
            0) where no epoch does better, so training never serves a model worse than its start.
        verbose: 0 silent; 1 live batch counter and a line per epoch; 2 a line per epoch;
            -1 chooses 1 on a terminal and 2 elsewhere (logs, CI).
    """
    if verbose < 0:
        verbose = 1 if sys.stdout.isatty() else 2
    if backup is not None:
        finished = backup.finished(model)
        if finished is not None:
            if verbose:
                print(f"{stage}: finished before the restart; its weights and history come from {backup.folder}",
                      flush=True)
            return finished
    progress = Progress(stage, examples, shown, verbose)
    # Extra callbacks first: they add validation numbers to the logs that early stopping reads.
    callbacks = list(extra_callbacks or []) + [progress]
    validated = validation is not None or early_stopping_without_validation
    if validated:
        if reduce_lr_on_plateau:
            # A smaller step once validation stalls, before early stopping gives up.
            callbacks.append(tf.keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode=mode, factor=0.3, patience=1,
                                                                  min_delta=0.0, verbose=0))
        callbacks.append(tf.keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                                          restore_best_weights=True))
    if log_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False))
        callbacks.append(tf.keras.callbacks.ModelCheckpoint(
            str(Path(log_dir) / "checkpoint"), save_weights_only=True, save_best_only=True,
            monitor=monitor if validated else "loss", mode=mode if validated else "min"))
    # Stops at the first batch whose loss is NaN or infinite; the run is then refused below.
    callbacks.insert(0, tf.keras.callbacks.TerminateOnNaN())
    if backup is not None:
        callbacks.insert(0, backup.callback())  # restores the last finished epoch before anything else begins
    start = time.perf_counter()
    history = model.fit(train, validation_data=validation, epochs=epochs, callbacks=callbacks, verbose=0)
    seconds = time.perf_counter() - start
    logs = {key: [float(v) for v in values] for key, values in history.history.items()}
    bad = [(epoch, value) for epoch, value in enumerate(logs.get("loss", []), 1) if not np.isfinite(value)]
    if bad:
        epoch, value = bad[0]
        setting = f"{settings}.learning_rate" if settings else "learning rate"
        raise TrainingError(f"{stage} training stopped: the loss became {value} in epoch {epoch}; lower {setting} "
                            "or check the data. Nothing was published")
    if monitor in logs:
        best = int(np.argmax(logs[monitor]) if mode == "max" else np.argmin(logs[monitor]))
    else:
        best = len(progress.seconds) - 1
    # A stage resumed from its backup logs only the epochs run since: number them as they were.
    best += history.epoch[0] if history.epoch else 0
    # (Not on a stage resumed mid-way: its logs hold only the epochs run since.)
    if initial is not None and monitor in logs and not (history.epoch and history.epoch[0]):
        value, weights = initial
        trained = logs[monitor][best]
        if (value >= trained) if mode == "max" else (value <= trained):
            model.set_weights(weights)
            best = -1
    train_seconds = float(np.sum(progress.seconds))
    result = TrainingResult(model, logs, seconds, examples * len(progress.seconds) / max(train_seconds, 1e-9), best + 1)
    if backup is not None:
        backup.save(result)
    return result
