"""``tfrs-pipeline train``: data -> split -> both stages -> export -> evaluation, as named phases.

:func:`run_training` runs the phases in order; each one is a function of its own that
takes what the phase before it produced:

1. :func:`load_and_prepare`: read and validate the data, split it, build vocabularies and tables.
2. :func:`fit_stages`: fit the item-item model, train retrieval, then the rating model; choose the
   rating blend's weight on validation; train the list ranker
   (:func:`~tfrs_pipeline.ranking.ranker_stage.fit_ranker_stage`); end with :func:`fit_for_serving`,
   which fits what is served on the whole training side.
3. :func:`export`: write the pipeline, every stage and the records into the staging version
   folder; it trains nothing.
4. :func:`evaluate`: measure the exported model on the test split; write ``metrics.json`` and the model card.

Longer than 500 lines: the phases, in order, and :func:`train`, the Python entry point that runs
them (most of it its documented keywords).

The version folder is claimed and written under a staging name and renamed when
complete (:class:`~tfrs_pipeline.model_dir.ModelDir`), so ``saved_models/NAME``'s newest
version is never a half-written model.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import tensorflow as tf

from tfrs_pipeline.config import PipelineConfig, apply_overrides, changed_settings, to_toml
from tfrs_pipeline.data import load_data, recorded_paths
from tfrs_pipeline.data.schema import RatingsData
from tfrs_pipeline.data.split import Split, split_ratings
from tfrs_pipeline.errors import ConfigError, DataError, ModelError
from tfrs_pipeline.evaluation.evaluate import evaluate_export
from tfrs_pipeline.evaluation.summary import model_card
from tfrs_pipeline.export.top_rated import TopRatedMovies
from tfrs_pipeline.export.writer import export_model
from tfrs_pipeline.features.dataset import Prepared, prepare
from tfrs_pipeline.model_dir import STAGES, ModelDir
from tfrs_pipeline.ranking.blend import choose_rating_weight, logit_scale
from tfrs_pipeline.ranking.candidate_lists import fitting_part_retriever
from tfrs_pipeline.ranking.neighbours import REFIT_MAX_EASE_MOVIES, Sessions, build_item_table
from tfrs_pipeline.ranking.ranker_stage import fit_ranker_stage
from tfrs_pipeline.ranking.rating import refit_matrix_factorization, stack_matrix_factorization, train_rating_model
from tfrs_pipeline.recommender import Recommender
from tfrs_pipeline.retrieval.index import SeenMovies
from tfrs_pipeline.retrieval.model import refit_retrieval, train_retrieval
from tfrs_pipeline.training.backup import StageBackup
from tfrs_pipeline.training.distribute import describe_devices, gpu_memory_peaks, is_chief, make_strategy
from tfrs_pipeline.training.loop import TrainingResult
from tfrs_pipeline.training.memory import Phases, Steps


@dataclass
class PreparedRun:
    """What :func:`load_and_prepare` hands on: the configuration, data, split and model inputs, and
    the seconds and peak memory of each phase so far."""

    config: PipelineConfig
    data: RatingsData
    split: Split
    prepared: Prepared | None  # None once training state is released
    phases: Phases = field(default_factory=Phases)
    steps: Steps = field(default_factory=lambda: Steps(6))


@dataclass
class FittedStages:
    """What :func:`fit_stages` hands on: both trained stages and the chosen rating weight."""

    retrieval: TrainingResult
    rating: TrainingResult
    rating_weight: float
    validation_hit_rate_by_weight: dict[float, float]
    list_ranker: TrainingResult | None = None
    replicas: int = 1
    #: The rating model's stacked matrix factorization (:func:`~tfrs_pipeline.ranking.rating.stack_matrix_factorization`).
    rating_stack: dict | None = None
    #: The list ranker's training lists: how many, and the validation ratings among their candidates by source.
    ranker_candidates: dict | None = None
    #: The list ranker's item-item model as exported: its description, session kernel (None: plain
    #: co-rating counts) and session choice (hold-out NDCG@10s); ``training.item_item`` of metrics.json.
    item_item: dict | None = None
    #: The two-tower model trained again on the whole training side (``retrieval.refit``), served in place of ``retrieval``'s.
    retrieval_refit: TrainingResult | None = None
    #: The list ranker's short-history head (``ranker.short_history``), trained after its whole-history head.
    short_history_ranker: TrainingResult | None = None

    @property
    def list_ranker_model(self):
        return self.list_ranker.model if self.list_ranker is not None else None

    @property
    def served_retrieval_model(self):
        """The two-tower model the export serves: the refitted one where there is one."""
        return (self.retrieval_refit or self.retrieval).model


@dataclass
class TrainedModel:
    """Where a training run exported its model, what it measured, and the data and split it used.

    Args:
        model_dir: the published version folder.
        metrics: every figure of its ``metrics.json``.
        seconds: wall time of the whole run.
        data: the ratings it was trained on.
        split: their training and test sides.
    """

    model_dir: ModelDir
    metrics: dict
    seconds: float
    data: RatingsData
    split: Split

    @property
    def path(self) -> Path:
        """``saved_models/NAME/VERSION``, the published folder."""
        return self.model_dir.path


def load_and_prepare(config: PipelineConfig, log=print, data: RatingsData | None = None) -> PreparedRun:
    """Phase 1: reads and validates ``config.data`` (or takes ``data``, read already), splits it, and builds the models' inputs."""
    phases, steps = Phases(), Steps.of(config)
    with phases("data"):
        data, split, prepared = _load_split_prepare(config, log, data, steps)
    return PreparedRun(config, data, split, prepared, phases, steps)


def _load_split_prepare(config: PipelineConfig, log, data: RatingsData | None,
                        steps: Steps) -> tuple[RatingsData, Split, Prepared]:
    log(steps(f"data: {data.source if data is not None else config.data.source}"))
    if data is None:
        data = load_data(config.data.source, config.data)
    log(data.report.format())
    log(steps("split"))
    split = split_ratings(data, config.split)
    log(split.describe())
    prepared = prepare(data, split.train, config.split.validation_fraction, config.split.seed)
    catalog = len(prepared.movies.movie_ids)
    if config.serving.num_candidates > catalog:
        log(f"note: serving.num_candidates {config.serving.num_candidates} is capped at the catalog's {catalog} movies")
    return data, split, prepared


def fit_stages(run: PreparedRun, model_dir: ModelDir | None = None, log=print,
               strategy: tf.distribute.Strategy | None = None) -> FittedStages:
    """Phase 2: trains retrieval, the rating model and the list ranker (TensorBoard logs in ``model_dir``), then picks the rating weight.

    Args:
        strategy: the distribution strategy (default: made from ``run.config.runtime``).
    """
    config, prepared = run.config, run.prepared
    strategy = strategy or make_strategy(config.runtime)

    def backup(stage: str, formerly: str | None = None) -> StageBackup | None:
        folder = config.runtime.backup_dir
        return StageBackup(folder, stage, writer=is_chief(strategy), formerly=formerly) if folder else None

    item_table = None
    if config.ranker.enabled and len(prepared.validation):
        # First, while the process holds little more than the data: at 20M ratings EASE's matrix and
        # its working copies (2.4 GB) would otherwise come on top of what training leaves resident.
        log(run.steps("item-item model (the list ranker's feature) on the fitting part"))
        with run.phases("item_item"):
            item_table = build_item_table(prepared, config.ranker, log=log)
        log(f"item-item model: {item_table.describe()}, {run.phases.record['item_item']['seconds']:.1f} s")
    log(run.steps(f"retrieval: {len(prepared.fitting):,} training and {len(prepared.validation):,} validation ratings"))
    with run.phases("retrieval"):
        retrieval = train_retrieval(prepared, config.retrieval, seed=config.runtime.seed, verbose=config.runtime.verbose,
                                    log_dir=model_dir.logs("retrieval") if model_dir else None, strategy=strategy,
                                    backup=backup("retrieval"))
    log(f"retrieval: {retrieval.seconds:.1f} s, {retrieval.examples_per_second:,.0f} training examples/s, "
        f"best epoch {retrieval.best_epoch}")
    log(run.steps("rating model"))
    with run.phases("rating"):
        rating = train_rating_model(prepared, config.rating, seed=config.runtime.seed, verbose=config.runtime.verbose,
                                    log_dir=model_dir.logs("rating") if model_dir else None, strategy=strategy,
                                    backup=backup("rating", formerly="ranking"))
        log(f"rating model: {rating.seconds:.1f} s, {rating.examples_per_second:,.0f} training examples/s, "
            f"best epoch {rating.best_epoch}")
        stack = stack_matrix_factorization(rating.model, prepared, config.rating)
    if stack is not None:
        held = stack["validation_rmse"]
        log(f"rating model: stacked with matrix factorization ({config.rating.mf_factors} factors, {stack['seconds']:.1f} s)"
            f": validation RMSE network {held['network']:.4f}, MF {held['matrix_factorization']:.4f}, "
            + (f"stacked {held['stacked']:.4f} (weights {', '.join(f'{w:.3f}' for w in stack['weights'])})"
               if stack["stacked"] else f"stacked {held['stacked']:.4f}, no better: the network alone is kept"))
    # The rating weight, the validation users' candidate lists and the list ranker.
    with run.phases("list_ranker"):
        model = retrieval.model
        # Candidates for the weight choice exclude the fitting part only: validation movies must stay findable.
        retriever = fitting_part_retriever(model, prepared)
        scale = logit_scale(config.retrieval.normalize, config.retrieval.temperature)
        weight, recall = choose_rating_weight(retriever, rating.model, prepared.validation, config.serving.num_candidates,
                                              scale, k=config.serving.k)
        ranker_stage = None
        if config.ranker.enabled and len(prepared.validation):
            ranker_stage = fit_ranker_stage(
                prepared, run.data, config, model, rating.model, scale, item_table=item_table, retriever=retriever,
                strategy=strategy, log=log, step=run.steps,
                logs=lambda stage: model_dir.logs(stage) if model_dir else None, backup=backup)
    refit = None
    if config.retrieval.refit and len(prepared.validation):
        log(run.steps(f"retrieval: trained again on the whole training side ({len(run.split.train):,} ratings, "
            f"{retrieval.best_epoch} epoch{'s' if retrieval.best_epoch != 1 else ''} as chosen on validation)"))
        with run.phases("retrieval_refit"):
            refit = refit_retrieval(prepared, run.split.train, config.retrieval, retrieval.best_epoch,
                                    seed=config.runtime.seed, verbose=config.runtime.verbose, strategy=strategy,
                                    log_dir=model_dir.logs("retrieval_refit") if model_dir else None,
                                    backup=backup("retrieval_refit"))
        log(f"retrieval refit: {refit.seconds:.1f} s")
    stages = FittedStages(retrieval, rating, weight, recall, ranker_stage.ranker if ranker_stage else None,
                          strategy.num_replicas_in_sync, stack, ranker_stage.candidates if ranker_stage else None,
                          retrieval_refit=refit, short_history_ranker=ranker_stage.short_history if ranker_stage else None)
    fit_for_serving(run, stages, log)
    return stages


def fit_for_serving(run: PreparedRun, stages: FittedStages, log=print) -> None:
    """The end of phase 2: validation is over, so the served models take the whole training side as
    history and tables, and the rating model's matrix factorization and the ranker's item-item model
    are fitted again on it (export then writes what is here and trains nothing)."""
    config, prepared = run.config, run.prepared
    stages.served_retrieval_model.query_tower.use_history(prepared.whole_users)
    stages.rating.model.use_history(prepared.whole_users)
    ranker = stages.list_ranker_model
    if ranker is not None:
        if stages.retrieval_refit is not None:  # the ranker's cosines and candidate logits follow the served towers
            served = stages.served_retrieval_model
            candidates = served.candidate_embeddings()
            ranker.use_retrieval(served.without_bias(candidates).numpy(), candidates.numpy())
        ranker.use_tables(prepared.whole_movies)
    with run.phases("whole_training_side"):
        if stages.rating_stack is not None and stages.rating_stack["stacked"]:
            seconds = refit_matrix_factorization(stages.rating.model, prepared, config.rating, run.split.train)
            stages.rating_stack["refit_seconds"] = seconds
            log(f"rating model: matrix factorization refitted on the whole training side ({seconds:.1f} s)")
        if ranker is not None and ranker.item_table.ease_movies <= REFIT_MAX_EASE_MOVIES:
            # Above it, a second fit at 20M ratings costs minutes and GiB: the fitting part's weights serve.
            began = time.perf_counter()
            ranker.refit_item_item(run.split.train)
            log(f"list ranker: item-item model refitted on the whole training side ({time.perf_counter() - began:.1f} s)")
    if ranker is not None:
        log(f"list ranker: item-item model served: {ranker.item_model_description}")
        sessions = ranker.item_sessions
        stages.item_item = {"model": ranker.item_model_description,
                            "sessions": dataclasses.asdict(sessions) if sessions is not None else None,
                            "session_choice": ranker.session_choice}


def export(run: PreparedRun, stages: FittedStages, model_dir: ModelDir, log=print) -> None:
    """Phase 3: the pipeline and stage SavedModels, configuration, split record, vocabularies and history."""
    config = run.config
    log(run.steps(f"export to {model_dir.published_path}"))
    log(f"two-stage: rating weight {stages.rating_weight:g} (validation hit rate@{config.serving.k} by weight: "
        + ", ".join(f"{w:g}: {r:.4f}" for w, r in stages.validation_hit_rate_by_weight.items()) + ")")
    with run.phases("export"):
        _export(run, stages, model_dir)
    weights = (f", the item-item weights {stages.list_ranker_model.item_table.nbytes / 2**20:,.1f} MiB of it"
               if stages.list_ranker is not None else "")
    log(f"model folder {model_dir.published_path}: {model_dir.size_bytes() / 2**20:,.1f} MiB (the two-stage pipeline "
        f"a server loads{weights}); beside it, each stage's own SavedModel in {model_dir.base / STAGES}/STAGE/"
        f"{model_dir.version} ({model_dir.stages_bytes() / 2**20:,.1f} MiB in all) and the TensorBoard logs in "
        f"{model_dir.logs_path}")


def _export(run: PreparedRun, stages: FittedStages, model_dir: ModelDir) -> None:
    config, prepared = run.config, run.prepared
    seen = SeenMovies(prepared.vocab, prepared.whole_movies.movie_ids, run.split.train)
    top_rated = TopRatedMovies(prepared.vocab.user_ids, prepared.whole_movies.movie_ids, run.split.train)
    export_model(model_dir, stages.served_retrieval_model, stages.rating.model, prepared.whole_movies, seen,
                 index_kind=config.retrieval.index, num_candidates=config.serving.num_candidates,
                 rating_weight=stages.rating_weight, list_ranker=stages.list_ranker_model, top_rated=top_rated)
    model_dir.write_config(apply_overrides(config, recorded_paths(config.data)))  # found again from any folder
    model_dir.write_split(run.split.record)
    model_dir.write_vocabularies(vars(prepared.vocab))
    model_dir.write_history({
        "retrieval": stages.retrieval.history, "rating": stages.rating.history,
        **({"retrieval_refit": stages.retrieval_refit.history} if stages.retrieval_refit is not None else {}),
        "rating_weight": stages.rating_weight, "rating_stack": stages.rating_stack,
        "validation_hit_rate_by_rating_weight": {str(w): r for w, r in stages.validation_hit_rate_by_weight.items()},
        "retrieval_best_epoch": stages.retrieval.best_epoch, "rating_best_epoch": stages.rating.best_epoch,
        # The rating model's entries under their names before this release, read by older reports; to be removed.
        "ranking": stages.rating.history, "ranking_best_epoch": stages.rating.best_epoch,
        **({"list_ranking": stages.list_ranker.history, "list_ranking_best_epoch": stages.list_ranker.best_epoch}
           if stages.list_ranker is not None else {}),
        **({"short_history_ranking": stages.short_history_ranker.history,
            "short_history_ranking_best_epoch": stages.short_history_ranker.best_epoch}
           if stages.short_history_ranker is not None else {}),
    })


def release_training_state(run: PreparedRun, stages: FittedStages) -> None:
    """Drops what only training needs (the models and their optimizer state, data sets, feature
    tables) once the model is exported: evaluation reads the export, and at 20M ratings the
    training side holds gigabytes. The stages keep their histories and timings."""
    for result in (stages.retrieval, stages.retrieval_refit, stages.rating, stages.list_ranker,
                   stages.short_history_ranker):
        if result is not None:
            result.model = None
    run.prepared = None
    gc.collect()


def evaluate(run: PreparedRun, stages: FittedStages, model_dir: ModelDir, log=print) -> dict:
    """Phase 4: metrics of the exported model on the test split, beside baselines; writes them and the model card."""
    log(run.steps("evaluation of the exported model on the test split"))
    with run.phases("evaluation"):
        metrics = evaluate_export(model_dir, run.split.train, run.split.test, run.data.rating_scale,
                                  sessions=Sessions.from_record(stages.item_item), log=log)
    metrics["training"] = {
        "retrieval_seconds": stages.retrieval.seconds,
        "retrieval_examples_per_second": stages.retrieval.examples_per_second,
        # The served model's second fit on the whole training side (retrieval.refit), else None.
        "retrieval_refit": ({"seconds": stages.retrieval_refit.seconds, "epochs": stages.retrieval.best_epoch,
                             "ratings": len(run.split.train)} if stages.retrieval_refit is not None else None),
        "rating_seconds": stages.rating.seconds, "rating_examples_per_second": stages.rating.examples_per_second,
        # Their names before this release (the rating model was called "ranking"); to be removed in the next one.
        "ranking_seconds": stages.rating.seconds, "ranking_examples_per_second": stages.rating.examples_per_second,
        "list_ranker_seconds": stages.list_ranker.seconds if stages.list_ranker is not None else 0.0,
        "short_history_head_seconds": (stages.short_history_ranker.seconds
                                       if stages.short_history_ranker is not None else 0.0),
        "rating_stack": stages.rating_stack,
        "list_ranker_candidates": stages.ranker_candidates,
        # The ranker's item-item model as exported, and the hold-out's NDCG@10 with and without the session kernel.
        "item_item": stages.item_item,
        "devices": describe_devices(),
        "gpu_peak_mib": gpu_memory_peaks(),  # per GPU, over the whole run; empty on a CPU
        "replicas": stages.replicas,
        # Seconds of each phase and the process's peak resident memory (MiB) when it ended.
        "phases": run.phases.record,
        "export_mib": model_dir.size_bytes() / 2**20,  # the version folder: what a server of the pipeline loads
        "stages_mib": model_dir.stages_bytes() / 2**20,
    }
    metrics["data"] = {"source": run.data.source, "ratings": int(len(run.data.interactions)),
                       "validation": run.data.report.to_dict()}
    metrics["split"] = vars(run.split.record)
    model_dir.write_metrics(metrics)
    model_dir.write_card(model_card(run.config, metrics, model_dir.published_path))
    return metrics


def run_training(config: PipelineConfig, out: str | Path, log: Callable[[str], None] = print, *,
                 data: RatingsData | None = None) -> TrainedModel:
    """Trains both stages on ``config.data`` and publishes ``out/VERSION``; returns where, and what it measured.

    In a multi-worker run every worker trains (each on its shard of every batch) and exports,
    so that any collective step stays in lock step, but only the chief publishes into ``out``;
    the other workers write into a temporary folder that is removed at the end.

    Args:
        config: the whole configuration (validated here).
        out: the model base, ``saved_models/NAME``: the run publishes its next integer version.
        log: where progress lines go (default ``print``).
        data: ratings read already (:func:`~tfrs_pipeline.data.load_data`); default: read
            ``config.data.source``.

    Returns:
        The published folder, the metrics, the run's wall time, and its data and split.

    Raises:
        ConfigError, DataError: bad configuration or data, before anything is trained.
        ModelError: a metric came out NaN or infinite; nothing is published.

    Examples:
        >>> from tfrs_pipeline.config import apply_overrides
        >>> config = apply_overrides(PipelineConfig(), {"data.source": "synthetic:60x50x1500", "retrieval.epochs": 1,
        ...                                             "rating.epochs": 1, "ranker.epochs": 1, "runtime.verbose": 0})
        >>> trained = run_training(config, tmp_folder / "doc", log=lambda *_: None)
        >>> trained.path.name, "ndcg_at_10" in trained.metrics["pipeline"]
        ('1', True)
    """
    start = time.perf_counter()
    config.validate()
    policy = tf.keras.mixed_precision.global_policy()
    strategy = make_strategy(config.runtime)  # before anything else runs TensorFlow (multi-worker needs it)
    if config.runtime.verbose == 2:
        log("configuration:\n" + to_toml(config))
    else:  # the whole of it is saved beside the model as config.toml
        changed = changed_settings(config)
        log("configuration: the defaults" + (f", with {'; '.join(changed)}" if changed else "")
            + " (all of it: --verbose, or config.toml beside the model)")
    log(describe_devices())
    scratch = None
    if not is_chief(strategy):
        resolver = strategy.cluster_resolver
        scratch = Path(tempfile.mkdtemp(prefix=f"tfrs-{resolver.task_type}-{resolver.task_id}-"))
        log(f"{resolver.task_type} {resolver.task_id}: not the chief, so this worker's export goes to {scratch} "
            f"and is removed at the end; the chief publishes into {out}")
        out = scratch
    staging = ModelDir.create(out, log)
    try:
        backup = _claim_backup(config, is_chief(strategy), log)
        run = load_and_prepare(config, log, data)
        stages = fit_stages(run, staging, log, strategy)
        export(run, stages, staging, log)
        release_training_state(run, stages)
        metrics = evaluate(run, stages, staging, log)
        _require_finite(metrics)
        staging.write_manifest()
        published = staging.publish()
        if backup is not None and is_chief(strategy):
            shutil.rmtree(backup, ignore_errors=True)  # published: nothing is left to resume
    except OSError as error:  # a full disk, a file system turned read-only, ...
        staging.discard()
        where = f" ({error.filename})" if error.filename else ""
        raise ModelError(f"{out}: {error.strerror or error}{where}; the run stopped and nothing was "
                         "published") from error
    except tf.errors.ResourceExhaustedError as error:  # TensorFlow's own writes: a full disk while saving
        staging.discard()
        first = (error.message.strip().splitlines() or [""])[0][:200]
        raise ModelError(f"{out}: {first}; the run stopped and nothing was published") from None
    except BaseException:
        staging.discard()
        raise
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)  # --mixed-precision must not outlive the run
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - start
    log(f"done in {seconds:.0f} s: {published.path}")
    return TrainedModel(published, metrics, seconds, run.data, run.split)


def _claim_backup(config: PipelineConfig, writer: bool, log=print) -> Path | None:
    """The run's backup folder (``runtime.backup_dir``), checked to belong to this configuration.

    The folder records the configuration it backs up; a run of another configuration (other
    data, split, models or seed) is refused rather than resumed from the wrong weights.
    """
    if not config.runtime.backup_dir:
        return None
    folder = Path(config.runtime.backup_dir)
    mine = to_toml(dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, verbose=-1, backup_dir="")))
    record = folder / "configuration.toml"
    if record.exists():
        if record.read_text() != mine:
            raise ConfigError(f"--backup-dir {folder} holds the backup of a run with another configuration "
                              f"({record}); remove the folder or choose another one")
        stages = sorted(path.name for path in folder.iterdir() if path.is_dir())
        log(f"resuming from the backup in {folder} (stages backed up: {', '.join(stages) or 'none yet'})")
    elif writer:
        folder.mkdir(parents=True, exist_ok=True)
        record.write_text(mine)
    return folder


def _require_finite(metrics: dict, path: str = "") -> None:
    """Refuses to publish a model any of whose metrics is NaN or infinite (its scores are then broken)."""
    for key, value in metrics.items():
        name = f"{path}{key}"
        if isinstance(value, dict):
            _require_finite(value, f"{name}/")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ModelError(f"the model was not published: its metric {name} is {value}")


def train(data: str | pd.DataFrame | None = None, *, movies: pd.DataFrame | None = None,
          out: str | Path = "saved_models/model", config: PipelineConfig | str | Path | None = None,
          settings: dict[str, object] | None = None, user_col: str | None = None, item_col: str | None = None,
          rating_col: str | None = None, timestamp_col: str | None = None, title_col: str | None = None,
          genres_col: str | None = None, implicit: bool | None = None,
          rating_scale: tuple[float, float] | None = None, on_bad_rows: str | None = None,
          encoding: str | None = None, date_format: str | None = None,
          log: Callable[[str], None] = print) -> Recommender:
    """Trains, exports and evaluates a model in one call, and returns it ready to use.

    The same run as ``tfrs-pipeline train``: the data is validated (a bad row stops the run
    with its row and value, or is counted and dropped with ``on_bad_rows="skip"``), split,
    both stages are trained with progress lines, and ``out/VERSION`` is published with its
    metrics.

    Args:
        data: ratings in a DataFrame (a row per interaction), or a data source string
            (``"movielens:PATH"``, ``"csv:PATH"``, ``"synthetic:100k"``, ...); default: the
            configuration's source.
        movies: with a DataFrame: the movies (item id and title columns, genres optional, as
            ``|``-separated text or lists); default: titles are the ids.
        out: the model base, ``saved_models/NAME``; the run publishes its next version.
        config: a :class:`~tfrs_pipeline.config.PipelineConfig` or a TOML file (default: the
            defaults).
        settings: dotted settings over it, as ``--set`` takes them:
            ``{"retrieval.epochs": 5, "split.kind": "temporal"}``.
        user_col: the ratings' user id column (default ``user_id``), as ``--user-col``.
        item_col: the item id column of the ratings and the movies (default ``item_id``).
        rating_col: the rating column (default ``rating``).
        timestamp_col: the timestamp column, seconds or dates (default ``timestamp``; absent: 0).
        title_col: the movies' title column (default ``title``).
        genres_col: the movies' genres column (default ``genres`` when present).
        implicit: every row is a positive interaction (plays, clicks, purchases); without it a
            rating column is required.
        rating_scale: lowest and highest rating, such as ``(1, 10)`` (default 0.5 to 5).
        on_bad_rows: ``"error"`` (the default) or ``"skip"``.
        encoding: the text encoding of a source string's files (default UTF-8).
        date_format: how the timestamp column writes dates, in ``strftime`` codes such as
            ``"%d/%m/%Y"`` (default: seconds, ISO 8601, or numeric dates in the one order the
            column allows; a column that fits both orders is an error).
        log: where progress lines go (default ``print``; ``lambda line: None`` for silence).

    Returns:
        The published model, loaded; ``model.metrics`` holds every figure of the run.

    Raises:
        DataError: a missing column or a bad row, naming the row and the value.
        ConfigError: a bad setting, naming the key, the value and what is allowed.

    Examples:
        >>> import pandas as pd
        >>> ratings = pd.DataFrame({"customer": ["a", "a", "b", "b", "c", "c", "d", "d"] * 40,
        ...                         "sku": [str(i % 37) for i in range(320)], "stars": [1, 5, 3, 4] * 80,
        ...                         "when": range(320)})
        >>> ratings = ratings.drop_duplicates(["customer", "sku"])
        >>> model = train(ratings, user_col="customer", item_col="sku", rating_col="stars", timestamp_col="when",
        ...               rating_scale=(1, 5), out=tmp_folder / "shop", log=lambda line: None,
        ...               settings={"retrieval.epochs": 1, "rating.epochs": 1, "ranker.epochs": 1,
        ...                         "runtime.verbose": 0})
        >>> len(model.recommend("a", k=3)), model.version
        (3, 1)
    """
    keywords = dict(locals())  # the data keywords, read by the names their settings declare (python_keywords)
    from tfrs_pipeline.config import apply_overrides, load_toml, python_keywords

    if config is None:
        config = PipelineConfig()
    elif not isinstance(config, PipelineConfig):
        config = load_toml(config)
    overrides = {key: keywords[name] for name, key in python_keywords().items() if keywords[name] is not None}
    if isinstance(data, str):
        if movies is not None:
            raise DataError(f"movies= goes with ratings in a DataFrame; for {data!r} name the items file with "
                            "settings={'data.csv_items_path': PATH}")
        overrides["data.source"] = data
    elif data is not None or movies is not None:
        overrides["data.source"] = "dataframe"
    config = apply_overrides(config, {**overrides, **(settings or {})})
    config.validate()  # settings first: a typo must not wait for the data
    # Read here, so that a message about the data names this function's keywords, not the command line's flags.
    loaded = load_data(data if config.data.source == "dataframe" else config.data.source, config.data,
                       movies=movies, python_names=True)
    trained = run_training(config, out, log, data=loaded)
    return Recommender.load(trained.path)
