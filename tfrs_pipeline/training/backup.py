"""Stage backups: a run that crashed, started again with the same command, resumes where it stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import tensorflow as tf

from tfrs_pipeline.training.result import TrainingResult


class StageBackup:
    """What a stage leaves in ``folder/STAGE`` so that a crashed run, started again, goes on where it stopped.

    While the stage trains, Keras's ``BackupAndRestore`` keeps the state of its last finished
    epoch (weights, optimizer, epoch number) in ``epochs/``: a restart resumes from the next
    epoch. Once the stage has finished, its kept weights and its history are written to
    ``finished/`` and ``finished.json``: a restart skips the stage and restores them. Early
    stopping starts counting afresh on a resumed stage (Keras does not back its state up).

    Args:
        folder: the run's backup folder (``runtime.backup_dir``): on storage every worker reads.
        stage: the stage's name, a folder of ``folder``.
        writer: whether this process writes the finished stage (the chief of a multi-worker run).
        formerly: the stage's folder name in the previous release: a backup made by it is moved
            to ``stage`` and resumed.
    """

    def __init__(self, folder: str | Path, stage: str, writer: bool = True, formerly: str | None = None) -> None:
        self.folder = Path(folder) / stage
        self.writer = writer
        old = Path(folder) / formerly if formerly else None
        if writer and old is not None and old.is_dir() and not self.folder.exists():
            old.rename(self.folder)

    def callback(self) -> tf.keras.callbacks.Callback:
        return tf.keras.callbacks.BackupAndRestore(str(self.folder / "epochs"))

    def finished(self, model: tf.keras.Model) -> TrainingResult | None:
        """The finished stage, its weights restored into ``model`` (variables made later are restored when
        made), or None when the stage has not finished yet."""
        record = self.folder / "finished.json"
        if not record.exists():
            return None
        saved = json.loads(record.read_text())
        # Read lazily: a subclassed model makes its variables on first call, and each is restored as it is
        # made. The optimizer's slots are in the checkpoint too, but a finished stage never trains again.
        tf.train.Checkpoint(model=model).read(str(self.folder / "finished" / "weights")).expect_partial()
        return TrainingResult(model, saved["history"], saved["seconds"], saved["examples_per_second"],
                              saved["best_epoch"])

    def save(self, result: TrainingResult) -> None:
        """Writes the finished stage: the weights first, then the record whose presence says both are complete."""
        if not self.writer:
            return
        shutil.rmtree(self.folder / "finished", ignore_errors=True)
        tf.train.Checkpoint(model=result.model).write(str(self.folder / "finished" / "weights"))
        saved = {"history": result.history, "seconds": result.seconds,
                 "examples_per_second": result.examples_per_second, "best_epoch": result.best_epoch}
        (self.folder / "finished.json").write_text(json.dumps(saved))
