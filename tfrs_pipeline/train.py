"""``tfrs-pipeline train``: data -> split -> both stages -> export -> evaluation, as named phases.

:func:`run_training` runs the phases in order; each one is a function of its own that
takes what the phase before it produced:

1. :func:`load_and_prepare`: read and validate the data, split it, build vocabularies and tables.
2. :func:`fit_stages`: train retrieval, then the rating model; choose the rating blend's weight on
   validation; train the list ranker on retrieval's candidate lists for the validation users.
3. :func:`export`: write the pipeline, every stage and the records into the staging version folder.
4. :func:`evaluate`: measure the exported model on the test split; write ``metrics.json`` and the model card.

The version folder is claimed and written under a staging name and renamed when
complete (:class:`~tfrs_pipeline.model_dir.ModelDir`), so ``saved_models/NAME``'s newest
version is never a half-written model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf

from tfrs_pipeline.config import PipelineConfig, RuntimeConfig, to_toml
from tfrs_pipeline.data import RatingsData, load_data
from tfrs_pipeline.errors import ConfigError, ModelError
from tfrs_pipeline.evaluation import evaluate_export
from tfrs_pipeline.export import export_model
from tfrs_pipeline.features import Prepared, prepare
from tfrs_pipeline.index import SeenMovies
from tfrs_pipeline.list_ranking import MATERIALIZE_LIMIT, candidate_lists, train_list_ranker
from tfrs_pipeline.metrics import rows_per_block
from tfrs_pipeline.model_dir import ModelDir
from tfrs_pipeline.ranking import train_ranking
from tfrs_pipeline.retrieval import train_retrieval
from tfrs_pipeline.serving.blend import choose_rating_weight, logit_scale
from tfrs_pipeline.serving.candidates import CandidateRetriever
from tfrs_pipeline.split import Split, split_ratings
from tfrs_pipeline.training_loop import StageBackup, TrainingResult


def peak_rss_mib(usage=None) -> float:
    """Peak resident memory, MiB: this process's so far, or that of ``usage`` (a ``resource``
    usage record, such as a finished child's from ``os.wait4``); 0 where the platform does not say."""
    if usage is None:
        try:
            import resource
        except ImportError:  # Windows
            return 0.0
        usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux


class Phases:
    """Wall seconds of each phase of a run, and the process's peak resident memory when it ended.

    Example:
        >>> phases = Phases()
        >>> with phases("data"):
        ...     pass
        >>> sorted(phases.record["data"])
        ['peak_rss_mib', 'seconds']
    """

    def __init__(self) -> None:
        self.record: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.record[name] = {"seconds": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


@dataclass
class PreparedRun:
    """What :func:`load_and_prepare` hands on: the configuration, data, split and model inputs, and
    the seconds and peak memory of each phase so far."""

    config: PipelineConfig
    data: RatingsData
    split: Split
    prepared: Prepared | None  # None once training state is released
    phases: Phases = field(default_factory=Phases)


@dataclass
class FittedStages:
    """What :func:`fit_stages` hands on: both trained stages and the chosen rating weight."""

    retrieval: TrainingResult
    ranking: TrainingResult
    rating_weight: float
    validation_hit_rate_by_weight: dict[float, float]
    list_ranker: TrainingResult | None = None
    replicas: int = 1

    @property
    def list_ranker_model(self):
        return self.list_ranker.model if self.list_ranker is not None else None


@dataclass
class TrainedModel:
    """Where a training run exported its model, what it measured, and the data and split it used."""

    model_dir: ModelDir
    metrics: dict
    seconds: float
    data: RatingsData
    split: Split

    @property
    def path(self) -> Path:
        return self.model_dir.path


def make_strategy(runtime: RuntimeConfig) -> tf.distribute.Strategy:
    """The distribution strategy and precision policy for ``runtime`` (GPU used when present).

    ``multi-worker`` reads the cluster from ``TF_CONFIG`` and must be made before TensorFlow
    runs anything else in the process (collective ops are configured at start-up).
    """
    if runtime.strategy == "multi-worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_cluster_from_tf_config())
    elif runtime.strategy == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    if runtime.mixed_precision:
        policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
        tf.keras.mixed_precision.set_global_policy(policy)
    return strategy


def _cluster_from_tf_config() -> tf.distribute.cluster_resolver.TFConfigClusterResolver:
    """``TF_CONFIG``'s cluster, checked: a clear error instead of a hang or a stack trace."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise ConfigError("--strategy multi-worker needs TF_CONFIG, such as "
                          '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}')
    try:
        described = json.loads(text)
        workers = list(described["cluster"]["worker"])
        kind, index = described["task"]["type"], int(described["task"]["index"])
        known = kind in ("worker", "chief") and 0 <= index < len(described["cluster"].get(kind, []))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"TF_CONFIG must be JSON with cluster.worker (host:port list) and task.type/index, "
                          f"got {text[:200]!r}") from error
    if not known:
        raise ConfigError(f"TF_CONFIG's task {described['task']} is not one of its cluster's tasks "
                          f"({len(workers)} workers)")
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process publishes the model: always, except on the other workers of a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def describe_devices() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"devices: {len(gpus)} GPU(s) {[g.name for g in gpus]}" if gpus else "devices: CPU only (no GPU found)"


def load_and_prepare(config: PipelineConfig, log=print) -> PreparedRun:
    """Phase 1: reads and validates ``config.data``, splits it, and builds the models' inputs."""
    phases = Phases()
    with phases("data"):
        data, split, prepared = _load_split_prepare(config, log)
    return PreparedRun(config, data, split, prepared, phases)


def _load_split_prepare(config: PipelineConfig, log) -> tuple[RatingsData, Split, Prepared]:
    log(f"[1/6] data: {config.data.source}")
    data = load_data(config.data.source, config.data)
    log(data.report.format())
    log("[2/6] split")
    split = split_ratings(data, config.split)
    log(split.describe())
    prepared = prepare(data, split.train, config.split.validation_fraction, config.split.seed)
    catalog = len(prepared.movies.movie_ids)
    if config.serving.num_candidates > catalog:
        log(f"note: serving.num_candidates {config.serving.num_candidates} is capped at the catalog's {catalog} movies")
    return data, split, prepared


def fit_stages(run: PreparedRun, model_dir: ModelDir | None = None, log=print,
               strategy: tf.distribute.Strategy | None = None) -> FittedStages:
    """Phase 2: trains retrieval and ranking (TensorBoard logs in ``model_dir``), then picks the rating weight.

    Args:
        strategy: the distribution strategy (default: made from ``run.config.runtime``).
    """
    config, prepared = run.config, run.prepared
    strategy = strategy or make_strategy(config.runtime)

    def backup(stage: str) -> StageBackup | None:
        folder = config.runtime.backup_dir
        return StageBackup(folder, stage, writer=is_chief(strategy)) if folder else None

    log(f"[3/6] retrieval: {len(prepared.train):,} training and {len(prepared.validation):,} validation ratings")
    with run.phases("retrieval"):
        retrieval = train_retrieval(prepared, config.retrieval, seed=config.runtime.seed, verbose=config.runtime.verbose,
                                    log_dir=model_dir.logs("retrieval") if model_dir else None, strategy=strategy,
                                    backup=backup("retrieval"))
    log(f"retrieval: {retrieval.seconds:.1f} s, {retrieval.examples_per_second:,.0f} training examples/s, "
        f"best epoch {retrieval.best_epoch}")
    log("[4/6] ranking")
    with run.phases("ranking"):
        ranking = train_ranking(prepared, config.ranking, seed=config.runtime.seed, verbose=config.runtime.verbose,
                                log_dir=model_dir.logs("ranking") if model_dir else None, strategy=strategy,
                                backup=backup("ranking"))
    log(f"ranking: {ranking.seconds:.1f} s, {ranking.examples_per_second:,.0f} training examples/s, "
        f"best epoch {ranking.best_epoch}")
    # The rating weight, the validation users' candidate lists and the list ranker.
    with run.phases("list_ranker"):
        model = retrieval.model
        # Candidates for the weight choice exclude the fitting part only: validation movies must stay findable.
        retriever = CandidateRetriever(model.query_tower, model.index,
                                       SeenMovies(prepared.vocab, prepared.movies.movie_ids, prepared.train))
        scale = logit_scale(config.retrieval.normalize, config.retrieval.temperature)
        weight, recall = choose_rating_weight(retriever, ranking.model, prepared.validation, config.serving.num_candidates,
                                              scale, k=config.serving.k)
        list_ranker = None
        if config.ranking.list_ranker and len(prepared.validation):
            lists = candidate_lists(retriever, prepared.validation, config.serving.num_candidates,
                                    batch_users=rows_per_block(len(prepared.movies.movie_ids), 1024))
            log(f"[4/6] list ranker: {len(lists):,} candidate lists of {lists.movie_ids.shape[1]} movies, "
                f"{int(lists.labels.sum()):,} of {int(lists.relevant.sum()):,} validation ratings among the candidates")
            embeddings = model.candidate_embeddings()[:, : config.retrieval.embedding_dim].numpy()
            list_ranker = train_list_ranker(ranking.model, prepared, embeddings, lists, scale, config.ranking,
                                            seed=config.runtime.seed, verbose=config.runtime.verbose, strategy=strategy,
                                            log_dir=model_dir.logs("list_ranking") if model_dir else None,
                                            backup=backup("list_ranking"))
            log(f"list ranker: {list_ranker.seconds:.1f} s, best epoch {list_ranker.best_epoch}")
    return FittedStages(retrieval, ranking, weight, recall, list_ranker, strategy.num_replicas_in_sync)


def export(run: PreparedRun, stages: FittedStages, model_dir: ModelDir, log=print) -> None:
    """Phase 3: the pipeline and stage SavedModels, configuration, split record, vocabularies and history."""
    config, prepared = run.config, run.prepared
    log(f"[5/6] export to {model_dir.published_path}")
    log(f"two-stage: rating weight {stages.rating_weight:g} (validation hit rate@{config.serving.k} by weight: "
        + ", ".join(f"{w:g}: {r:.4f}" for w, r in stages.validation_hit_rate_by_weight.items()) + ")")
    # Validation is over: the exported model serves with every training rating as history and popularity.
    stages.retrieval.model.query_tower.use_history(prepared.full_users)
    stages.ranking.model.use_history(prepared.full_users)
    if stages.list_ranker is not None:
        stages.list_ranker_model.use_tables(prepared.full_movies, prepared.full_users)
    with run.phases("export"):
        if stages.list_ranker is not None:
            users, movies = len(prepared.vocab.user_ids), len(prepared.full_movies.movie_ids)
            cells = (users + 1) * (movies + 1)  # with a row for unknown ids on each side
            stored = stages.list_ranker_model.materialize_neighbour_scores()
            log(f"list ranker: item-item scores of {users:,} users x {movies:,} movies "
                + (f"stored for serving ({cells * 4 / 2**20:,.1f} MiB)" if stored
                   else f"computed per request ({cells:,} cells is over the {MATERIALIZE_LIMIT:,}-cell limit)"))
        _export(run, stages, model_dir)


def _export(run: PreparedRun, stages: FittedStages, model_dir: ModelDir) -> None:
    config, prepared = run.config, run.prepared
    seen = SeenMovies(prepared.vocab, prepared.full_movies.movie_ids, run.split.train)
    export_model(model_dir, stages.retrieval.model, stages.ranking.model, prepared.full_movies, seen,
                 index_kind=config.retrieval.index, num_candidates=config.serving.num_candidates,
                 rating_weight=stages.rating_weight, list_ranker=stages.list_ranker_model)
    model_dir.write_config(config)
    model_dir.write_split(run.split.record)
    model_dir.write_vocabularies(vars(prepared.vocab))
    model_dir.write_history({
        "retrieval": stages.retrieval.history, "ranking": stages.ranking.history,
        "rating_weight": stages.rating_weight,
        "validation_hit_rate_by_rating_weight": {str(w): r for w, r in stages.validation_hit_rate_by_weight.items()},
        "retrieval_best_epoch": stages.retrieval.best_epoch, "ranking_best_epoch": stages.ranking.best_epoch,
        **({"list_ranking": stages.list_ranker.history, "list_ranking_best_epoch": stages.list_ranker.best_epoch}
           if stages.list_ranker is not None else {}),
    })


def release_training_state(run: PreparedRun, stages: FittedStages) -> None:
    """Drops what only training needs (the models and their optimizer state, data sets, feature
    tables) once the model is exported: evaluation reads the export, and at 20M ratings the
    training side holds gigabytes. The stages keep their histories and timings."""
    for result in (stages.retrieval, stages.ranking, stages.list_ranker):
        if result is not None:
            result.model = None
    run.prepared = None
    gc.collect()


def evaluate(run: PreparedRun, stages: FittedStages, model_dir: ModelDir, log=print) -> dict:
    """Phase 4: metrics of the exported model on the test split, beside baselines; writes them and the model card."""
    log("[6/6] evaluation of the exported model on the test split")
    with run.phases("evaluation"):
        metrics = evaluate_export(model_dir, run.split.train, run.split.test, run.data.rating_scale, log=log)
    metrics["training"] = {
        "retrieval_seconds": stages.retrieval.seconds,
        "retrieval_examples_per_second": stages.retrieval.examples_per_second,
        "ranking_seconds": stages.ranking.seconds, "ranking_examples_per_second": stages.ranking.examples_per_second,
        "list_ranker_seconds": stages.list_ranker.seconds if stages.list_ranker is not None else 0.0,
        "devices": describe_devices(),
        "replicas": stages.replicas,
        # Seconds of each phase and the process's peak resident memory (MiB) when it ended.
        "phases": run.phases.record,
        "export_mib": model_dir.size_bytes(without_logs=True) / 2**20,
    }
    metrics["data"] = {"source": run.data.source, "ratings": int(len(run.data.interactions)),
                       "validation": run.data.report.to_dict()}
    metrics["split"] = vars(run.split.record)
    model_dir.write_metrics(metrics)
    model_dir.write_card(model_card(run.config, metrics, model_dir.published_path))
    return metrics


def run_training(config: PipelineConfig, out: str | Path, log=print) -> TrainedModel:
    """Trains both stages on ``config.data`` and publishes ``out/VERSION``; returns where, and what it measured.

    In a multi-worker run every worker trains (each on its shard of every batch) and exports,
    so that any collective step stays in lock step, but only the chief publishes into ``out``;
    the other workers write into a temporary folder that is removed at the end.
    """
    start = time.perf_counter()
    config.validate()
    policy = tf.keras.mixed_precision.global_policy()
    strategy = make_strategy(config.runtime)  # before anything else runs TensorFlow (multi-worker needs it)
    log("configuration:\n" + to_toml(config))
    log(describe_devices())
    scratch = None
    if not is_chief(strategy):
        resolver = strategy.cluster_resolver
        scratch = Path(tempfile.mkdtemp(prefix=f"tfrs-{resolver.task_type}-{resolver.task_id}-"))
        log(f"{resolver.task_type} {resolver.task_id}: not the chief, so this worker's export goes to {scratch} "
            f"and is removed at the end; the chief publishes into {out}")
        out = scratch
    staging = ModelDir.create(out)
    try:
        backup = _claim_backup(config, is_chief(strategy), log)
        run = load_and_prepare(config, log)
        stages = fit_stages(run, staging, log, strategy)
        export(run, stages, staging, log)
        release_training_state(run, stages)
        metrics = evaluate(run, stages, staging, log)
        _require_finite(metrics)
        staging.write_manifest()
        published = staging.publish()
        if backup is not None and is_chief(strategy):
            shutil.rmtree(backup, ignore_errors=True)  # published: nothing is left to resume
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


def format_metrics(metrics: dict) -> str:
    """The headline numbers beside most-popular (and matrix factorization for RMSE), then the top-10 ablation."""
    popular = metrics["baselines"]["most_popular"]
    mf = metrics["baselines"]["matrix_factorization"]["ranking"]
    rows = [("metric", "model", "most-popular")]
    for k, v in metrics["factorized_top_k"].items():
        rows.append((f"factorized {k} (seen kept)", f"{v:.4f}", f"{popular['factorized_top_k'][k]:.4f}"))
    for k in ("hit_rate_at_10", "hit_rate_at_100", "recall_at_10", "recall_at_100", "ndcg_at_10"):
        if k in metrics["excluding_seen"]:
            rows.append((f"retrieval {k} (seen excluded)", f"{metrics['excluding_seen'][k]:.4f}",
                         f"{popular['excluding_seen'][k]:.4f}"))
    for k in ("hit_rate_at_10", "recall_at_10", "ndcg_at_10"):
        if k in metrics["pipeline"]:
            rows.append((f"two-stage {k}", f"{metrics['pipeline'][k]:.4f}", f"{popular['pipeline'][k]:.4f}"))
    if "rmse" in metrics["ranking"]:
        rows.append(("ranking RMSE", f"{metrics['ranking']['rmse']:.4f}",
                     f"{popular['ranking']['rmse']:.4f} (movie mean); MF {mf['rmse']:.4f}"))
    width = max(len(r[0]) for r in rows)
    lines = [f"  {name:<{width}}  {a:>8}  {b}" for name, a, b in rows]
    if "note" in metrics["ranking"]:
        lines.append(f"  ranking: {metrics['ranking']['note']}")
    if "ablation" in metrics:
        lines.append(format_ablation(metrics["ablation"]))
    for name, numbers in metrics.get("cold_start", {}).items():
        what = "most popular" if name.startswith("most_popular") else "recommend_from_history"
        lines.append(f"  cold start, {what} from {name.rsplit('_', 1)[1]} training movies: "
                     f"hit rate@10 {numbers['hit_rate_at_10']:.4f}, recall@10 {numbers['recall_at_10']:.4f}, "
                     f"NDCG@10 {numbers['ndcg_at_10']:.4f}")
    return "\n".join(lines)


def format_phases(training: dict) -> str:
    """One line: each phase's seconds and the peak memory when it ended, and the export's size."""
    phases = training.get("phases", {})
    cells = [f"{name.replace('_', ' ')} {r['seconds']:.0f} s ({r['peak_rss_mib'] / 1024:.1f} GiB)"
             for name, r in phases.items()]
    return "phases (peak memory so far): " + ", ".join(cells) + f"; export {training.get('export_mib', 0):.1f} MiB"


def format_ablation(ablation: dict[str, dict[str, float]]) -> str:
    """One line per system: its top 10 with seen movies excluded."""
    width = max(len(name) for name in ablation)
    lines = ["", f"  top 10, seen movies excluded{'':>{max(0, width - 27)}}  hit rate@10  recall@10    NDCG@10"]
    for name, numbers in ablation.items():
        lines.append(f"  {name:<{max(width, 27)}}  {numbers['hit_rate_at_10']:>11.4f}  {numbers['recall_at_10']:>9.4f}"
                     f"  {numbers['ndcg_at_10']:>9.4f}")
    return "\n".join(lines)


def model_card(config: PipelineConfig, metrics: dict, path: Path) -> str:
    """A short README for the version folder: data, split, metrics, how to load."""
    split = metrics["split"]
    return f"""# Model card: {path.parent.name} version {path.name}

Two-stage movie recommender (tfrs-pipeline): two-tower retrieval over the whole catalog
(seen movies excluded), then a list ranker that orders {config.serving.num_candidates} candidates, each with
its predicted rating.

## Data and split
- data: `{metrics['data']['source']}` ({metrics['data']['ratings']:,} ratings; {metrics['data']['validation']['rows_dropped']:,} rows dropped by validation)
- split: {split['kind']} (test fraction {split['test_fraction']}, seed {split['seed']}), {split['train_ratings']:,} training / {split['test_ratings']:,} test ratings
- data fingerprint: `{split['data_fingerprint']}`; test-set fingerprint `{split['test_fingerprint']}`

## Test metrics (beside the most-popular baseline)
```
{format_metrics(metrics)}
```
Factorized top-K: TFRS `FactorizedTopK`, seen movies kept. Hit rate: share of test ratings
whose movie is in the user's top K; recall: per-user hits / the user's test movies, averaged
over users; both with the user's training movies excluded. Full numbers in `metrics.json`;
training curves in `history.json`; configuration in `config.toml`.

## Load and call (TensorFlow alone)
```python
import tensorflow as tf
model = tf.saved_model.load("{path}")
out = model.signatures["serving_default"](user_id=tf.constant(["1"]), k=tf.constant(10))
print(out["titles"], out["predicted_ratings"])
```
Signatures: `serving_default(user_id, k)`, `retrieve(user_id, k)`, `rank(user_id, movie_ids)`,
`similar_movies(movie_id, k)`, `explain(user_id, movie_id, k)`. Stages alone: `stages/query_tower`, `stages/candidate_tower`,
`stages/index`, `stages/ranking`. Serve over HTTP: `tfrs-pipeline serve --model {path.parent}`.
"""
