"""``tfrs-pipeline train``: data -> split -> both stages -> export -> evaluation, in named steps.

The version folder is written under a temporary name and renamed when complete, so
``saved_models/NAME``'s newest version is never a half-written model.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from tfrs_pipeline.config import PipelineConfig, RuntimeConfig, to_toml
from tfrs_pipeline.data import load_data
from tfrs_pipeline.evaluation import evaluate_export
from tfrs_pipeline.export import RankingExport, export_retrieval_stages, next_version, save
from tfrs_pipeline.features import prepare
from tfrs_pipeline.index import SeenMovies, serving_index
from tfrs_pipeline.pipeline import TwoStagePipeline, choose_rating_weight
from tfrs_pipeline.ranking import train_ranking
from tfrs_pipeline.retrieval import train_retrieval
from tfrs_pipeline.split import split_ratings


@dataclass
class TrainedModel:
    """Where a training run exported its model, and what it measured."""

    path: Path
    metrics: dict
    seconds: float


def make_strategy(runtime: RuntimeConfig) -> tf.distribute.Strategy:
    """The distribution strategy and precision policy for ``runtime`` (GPU used when present)."""
    if runtime.mixed_precision:
        policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
        tf.keras.mixed_precision.set_global_policy(policy)
    if runtime.strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def describe_devices() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"devices: {len(gpus)} GPU(s) {[g.name for g in gpus]}" if gpus else "devices: CPU only (no GPU found)"


def run_training(config: PipelineConfig, out: str | Path, log=print) -> TrainedModel:
    """Trains both stages on ``config.data`` and exports ``out/VERSION``; returns path and metrics."""
    policy = tf.keras.mixed_precision.global_policy()
    try:
        return _run_training(config, out, log)
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)  # --mixed-precision must not outlive the run


def _run_training(config: PipelineConfig, out: str | Path, log) -> TrainedModel:
    start = time.perf_counter()
    config.validate()
    log("configuration:\n" + to_toml(config))
    log(describe_devices())
    out = Path(out)
    version = next_version(out)
    final = out / str(version)
    staging = out / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    log(f"[1/6] data: {config.data.source}")
    data = load_data(config.data.source, config.data)
    log(data.report.format())
    log("[2/6] split")
    split = split_ratings(data, config.split)
    log(split.describe())
    prepared = prepare(data, split.train, config.split.validation_fraction, config.split.seed)
    strategy = make_strategy(config.runtime)

    log(f"[3/6] retrieval: {len(prepared.train):,} training and {len(prepared.validation):,} validation ratings")
    retrieval = train_retrieval(prepared, config.retrieval, seed=config.runtime.seed, log_dir=staging / "logs" / "retrieval",
                                verbose=config.runtime.verbose, strategy=strategy)
    log(f"retrieval: {retrieval.seconds:.1f} s, {retrieval.examples_per_second:,.0f} training examples/s, "
        f"best epoch {retrieval.best_epoch}")
    log("[4/6] ranking")
    ranking = train_ranking(prepared, config.ranking, seed=config.runtime.seed, log_dir=staging / "logs" / "ranking",
                            verbose=config.runtime.verbose, strategy=strategy)
    log(f"ranking: {ranking.seconds:.1f} s, {ranking.examples_per_second:,.0f} training examples/s, "
        f"best epoch {ranking.best_epoch}")

    log(f"[5/6] export to {final}")
    weight, weight_recall = choose_rating_weight(retrieval.model, ranking.model, prepared, config.serving.num_candidates,
                                                 k=config.serving.k)
    log(f"two-stage: rating weight {weight:g} (validation recall@{config.serving.k} by weight: "
        + ", ".join(f"{w:g}: {r:.4f}" for w, r in weight_recall.items()) + ")")
    seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, split.train)
    index = serving_index(retrieval.model, config.retrieval.index)
    pipeline = TwoStagePipeline(retrieval.model, ranking.model, prepared.movies, seen, config.serving.num_candidates,
                                rating_weight=weight, index=index)
    tf.saved_model.save(pipeline, str(staging), signatures=pipeline.signatures())
    export_retrieval_stages(retrieval.model, seen, staging / "stages", index=index)
    save(RankingExport(ranking.model), staging / "stages" / "ranking")
    (staging / "config.toml").write_text(to_toml(config), encoding="utf-8")
    split.record.save(staging / "split.json")
    prepared.vocab.save(staging / "vocabularies")
    history = {"retrieval": retrieval.history, "ranking": ranking.history,
               "rating_weight": weight, "validation_recall_by_rating_weight": {str(w): r for w, r in weight_recall.items()},
               "retrieval_best_epoch": retrieval.best_epoch, "ranking_best_epoch": ranking.best_epoch}
    (staging / "history.json").write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")

    log("[6/6] evaluation of the exported model on the test split")
    metrics = evaluate_export(staging, split.train, split.test, data.rating_scale, log=log)
    metrics["training"] = {
        "retrieval_seconds": retrieval.seconds, "retrieval_examples_per_second": retrieval.examples_per_second,
        "ranking_seconds": ranking.seconds, "ranking_examples_per_second": ranking.examples_per_second,
        "devices": describe_devices(),
    }
    metrics["data"] = {"source": data.source, "ratings": int(len(data.interactions)), "validation": data.report.to_dict()}
    metrics["split"] = vars(split.record)
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (staging / "README.md").write_text(model_card(config, metrics, final), encoding="utf-8")
    staging.rename(final)
    seconds = time.perf_counter() - start
    log(f"done in {seconds:.0f} s: {final}")
    return TrainedModel(final, metrics, seconds)


def format_metrics(metrics: dict) -> str:
    """The headline numbers beside most-popular (and matrix factorization for RMSE)."""
    popular = metrics["baselines"]["most_popular"]
    mf = metrics["baselines"]["matrix_factorization"]["ranking"]["rmse"]
    rows = [("metric", "model", "most-popular")]
    for k, v in metrics["factorized_top_k"].items():
        rows.append((f"factorized {k} (seen kept)", f"{v:.4f}", f"{popular['factorized_top_k'][k]:.4f}"))
    for k, v in metrics["excluding_seen"].items():
        rows.append((f"{k} (seen excluded)", f"{v:.4f}", f"{popular['excluding_seen'][k]:.4f}"))
    for k, v in metrics["pipeline"].items():
        if k == "rating_weight":
            continue
        rows.append((f"two-stage {k}", f"{v:.4f}", f"{popular['pipeline'][k]:.4f}"))
    rows.append(("ranking RMSE", f"{metrics['ranking']['rmse']:.4f}",
                 f"{popular['ranking']['rmse']:.4f} (movie mean); MF {mf:.4f}"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {name:<{width}}  {a:>8}  {b}" for name, a, b in rows)


def model_card(config: PipelineConfig, metrics: dict, path: Path) -> str:
    """A short README for the version folder: data, split, metrics, how to load."""
    split = metrics["split"]
    return f"""# Model card: {path.parent.name} version {path.name}

Two-stage movie recommender (tfrs-pipeline): two-tower retrieval over the whole catalog
(brute-force index, seen movies excluded), then a ranking model that sorts
{config.serving.num_candidates} candidates by predicted rating.

## Data and split
- data: `{metrics['data']['source']}` ({metrics['data']['ratings']:,} ratings; {metrics['data']['validation']['rows_dropped']:,} rows dropped by validation)
- split: {split['kind']} (test fraction {split['test_fraction']}, seed {split['seed']}), {split['train_ratings']:,} training / {split['test_ratings']:,} test ratings
- data fingerprint: `{split['data_fingerprint']}`; test-set fingerprint `{split['test_fingerprint']}`

## Test metrics (beside the most-popular baseline)
```
{format_metrics(metrics)}
```
Factorized top-K: TFRS `FactorizedTopK`, seen movies kept. Recall: share of test ratings
whose movie is in the user's top K, the user's training movies excluded. Full numbers
in `metrics.json`; training curves in `history.json`; configuration in `config.toml`.

## Load and call (TensorFlow alone)
```python
import tensorflow as tf
model = tf.saved_model.load("{path}")
out = model.signatures["serving_default"](user_id=tf.constant(["1"]), k=tf.constant(10))
print(out["titles"], out["predicted_ratings"])
```
Signatures: `serving_default(user_id, k)`, `retrieve(user_id, k)`, `rank(user_id, movie_ids)`,
`similar_movies(movie_id, k)`. Stages alone: `stages/query_tower`, `stages/candidate_tower`,
`stages/index`, `stages/ranking`. Serve over HTTP: `tfrs-pipeline serve --model {path.parent}`.
"""
