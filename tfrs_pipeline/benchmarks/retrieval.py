"""Retrieval benchmarks: the TFRS basic-retrieval tutorial configuration against ours.

``benchmark_retrieval`` trains the tutorial configuration (id embeddings of 32, Adagrad 0.1,
batch 8192, 3 epochs, factorized metrics computed on every training batch) and this
project's retrieval model on the same split in one process; prints both throughputs
(training examples per second) and both metric sets beside most-popular (and, with
``with_ease``, the closed-form EASE item-item model).

    tfrs-pipeline benchmark retrieval --data movielens:ml-latest-small   # after tfrs-pipeline data download ml-latest-small
"""

from __future__ import annotations

import time
from pathlib import Path

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_pipeline.baselines import ease_recommender, index_recommender, most_popular_recommender
from tfrs_pipeline.benchmarks.output import write_results
from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.features.dataset import make_dataset
from tfrs_pipeline.metrics import top_k_report
from tfrs_pipeline.pipeline import load_and_prepare
from tfrs_pipeline.retrieval.index import SeenAwareBruteForce, SeenMovies
from tfrs_pipeline.retrieval.model import RetrievalModel, train_retrieval
from tfrs_pipeline.training.loop import Progress
from tfrs_pipeline.training.optimizers import make_optimizer


class TutorialModel(tfrs.Model):
    """The model of the TFRS basic-retrieval tutorial, on movie ids."""

    def __init__(self, user_ids: list[str], movie_ids: list[str], catalog: tf.data.Dataset, dim: int = 32) -> None:
        super().__init__()
        self.user_model = tf.keras.Sequential([tf.keras.layers.StringLookup(vocabulary=user_ids, mask_token=None),
                                               tf.keras.layers.Embedding(len(user_ids) + 1, dim)])
        self.movie_model = tf.keras.Sequential([tf.keras.layers.StringLookup(vocabulary=movie_ids, mask_token=None),
                                                tf.keras.layers.Embedding(len(movie_ids) + 1, dim)])
        self.task = tfrs.tasks.Retrieval(metrics=tfrs.metrics.FactorizedTopK(candidates=catalog.batch(128).map(self.movie_model)))

    def compute_loss(self, features, training=False):
        # As in the tutorial: metrics on every batch, training included.
        return self.task(self.user_model(features["user_id"]), self.movie_model(features["movie_id"]))


def _timed_fit(model, dataset, epochs: int, examples: int) -> tuple[float, list[float]]:
    """Seconds of ``fit`` and of each epoch (timed as our own stages are, by :class:`Progress`)."""
    progress = Progress("tutorial", examples, (), verbose=0)
    start = time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[progress])
    return time.perf_counter() - start, progress.seconds


def _after_first_epoch(examples: int, epoch_seconds: list[float]) -> float | None:
    """Examples per second of the epochs after the first (the first also traces the training step)."""
    return examples * (len(epoch_seconds) - 1) / sum(epoch_seconds[1:]) if len(epoch_seconds) > 1 else None


def benchmark_retrieval(source: str, *, config: PipelineConfig | None = None, with_ease: bool = False,
                        tutorial_epochs: int = 3, out: str | Path | None = None) -> dict:
    """Trains the tutorial configuration and ours on one split; prints and returns both."""
    config = apply_overrides(config or PipelineConfig(), {"data.source": source}).validate()
    run = load_and_prepare(config)
    split, prepared = run.split, run.prepared
    seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, split.train)
    catalog_ids = prepared.movies.movie_ids.astype(str)
    results: dict = {"data": source, "split": vars(split.record), "train_ratings": len(split.train)}

    print(f"tutorial configuration: {tutorial_epochs} epochs, batch 8192, Adagrad 0.1, metrics on every batch")
    tf.keras.utils.set_random_seed(config.runtime.seed)
    tutorial = TutorialModel(prepared.vocab.user_ids, prepared.vocab.movie_ids,
                             tf.data.Dataset.from_tensor_slices(catalog_ids))
    tutorial.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    tutorial_data = make_dataset(split.train, 8192, shuffle=True, seed=config.runtime.seed)
    seconds, epoch_seconds = _timed_fit(tutorial, tutorial_data, tutorial_epochs, len(split.train))
    tutorial_index = SeenAwareBruteForce(k=100).reindex(tutorial.movie_model(tf.constant(catalog_ids)), tf.constant(catalog_ids))
    results["tutorial"] = {"seconds": seconds, "examples_per_second": tutorial_epochs * len(split.train) / seconds,
                           "examples_per_second_after_first_epoch": _after_first_epoch(len(split.train), epoch_seconds),
                           **top_k_report(index_recommender(tutorial.user_model, tutorial_index, seen), split.test)}

    print("this project's retrieval model (configuration as given; early stopping on validation recall)")
    ours = train_retrieval(prepared, config.retrieval, seed=config.runtime.seed, verbose=config.runtime.verbose)
    results["ours"] = {"seconds": ours.seconds, "examples_per_second": ours.examples_per_second,
                       "examples_per_second_after_first_epoch": _after_first_epoch(
                           len(prepared.fitting), ours.history.get("epoch_seconds", [])),
                       "epochs": len(ours.history.get("loss", [])), "best_epoch": ours.best_epoch,
                       **top_k_report(index_recommender(ours.model.query_tower.serve, ours.model.index, seen), split.test)}
    results["most_popular"] = top_k_report(
        most_popular_recommender(prepared.whole_movies.movie_ids, prepared.whole_movies.train_count[1:], seen), split.test)
    if with_ease:
        print("EASE (closed form, lambda 200)")
        results["ease"] = top_k_report(ease_recommender(split.train, catalog_ids, seen), split.test)

    print(format_retrieval_benchmark(results))
    write_results(results, out)
    return results


def format_retrieval_benchmark(results: dict) -> str:
    columns = [name for name in ("tutorial", "ours", "most_popular", "ease") if name in results]
    lines = ["", f"{'':34}" + "".join(f"{name:>14}" for name in columns)]
    for section, keys in (("factorized_top_k", ("top_1", "top_5", "top_10", "top_50", "top_100")),
                          ("excluding_seen", ("hit_rate_at_10", "hit_rate_at_50", "hit_rate_at_100", "recall_at_10",
                                              "recall_at_100", "ndcg_at_10"))):
        for key in keys:
            label = f"{key} ({'seen kept' if section == 'factorized_top_k' else 'seen excluded'})"
            lines.append(f"{label:34}" + "".join(f"{results[c][section][key]:>14.4f}" for c in columns))
    lines.append(f"{'training examples/s':34}" + "".join(
        f"{results[c]['examples_per_second']:>14,.0f}" if "examples_per_second" in results[c] else f"{'':>14}"
        for c in columns))
    lines.append(f"{'  epochs after the first':34}" + "".join(
        f"{results[c]['examples_per_second_after_first_epoch']:>14,.0f}"
        if results[c].get("examples_per_second_after_first_epoch") else f"{'':>14}" for c in columns))
    lines.append(f"{'training seconds':34}" + "".join(
        f"{results[c]['seconds']:>14.1f}" if "seconds" in results[c] else f"{'':>14}" for c in columns))
    ratio = results["ours"]["examples_per_second"] / results["tutorial"]["examples_per_second"]
    lines.append(f"throughput, ours / tutorial: {ratio:.1f}x (same process, same data)")
    steady = [results[c].get("examples_per_second_after_first_epoch") for c in ("ours", "tutorial")]
    if all(steady):
        lines.append(f"  in the epochs after the first (each model's first epoch also traces its step): "
                     f"{steady[0] / steady[1]:.1f}x")
    return "\n".join(lines)


def compare_retrieval_variants(source: str, variants: dict[str, dict], *, epochs: int = 20,
                               config: PipelineConfig | None = None):
    """Trains each retrieval variant (configuration overrides) on one split; a table beside most-popular."""
    import pandas as pd

    config = apply_overrides(config or PipelineConfig(), {"data.source": source}).validate()
    run = load_and_prepare(config)
    split, prepared = run.split, run.prepared
    seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, split.train)
    rows = {}
    for name, overrides in variants.items():
        variant = apply_overrides(config, {"retrieval.epochs": epochs, **overrides}).validate()
        result = train_retrieval(prepared, variant.retrieval, seed=config.runtime.seed, verbose=0)
        report = top_k_report(index_recommender(result.model.query_tower.serve, result.model.index, seen), split.test)
        rows[name] = {**_flatten(report), "training examples/s": result.examples_per_second,
                      "best epoch": result.best_epoch}
        print(f"{name}: recall@100 {rows[name]['recall_at_100']:.4f}, best epoch {result.best_epoch}")
    rows["most popular"] = _flatten(top_k_report(
        most_popular_recommender(prepared.whole_movies.movie_ids, prepared.whole_movies.train_count[1:], seen), split.test))
    return pd.DataFrame.from_dict(rows, orient="index")


def _flatten(report: dict) -> dict:
    flat = {f"factorized {k}": v for k, v in report["factorized_top_k"].items()}
    flat.update(report["excluding_seen"])
    return flat


def profile_retrieval_step(source: str, *, config: PipelineConfig | None = None, steps: int = 20) -> dict:
    """Milliseconds per training step of our retrieval model, part by part, beside the tutorial's step.

    Each part is a traced function timed over ``steps`` batches after two warm-up calls:
    the query tower, the candidate tower, the loss, the loss with gradients, the loss with
    gradients and the optimizer update (what ``fit`` runs per step), and the tutorial
    configuration's whole step (batch 8192, factorized metrics over the catalog every step).
    """
    config = apply_overrides(config or PipelineConfig(), {"data.source": source}).validate()
    run = load_and_prepare(config)
    split, prepared = run.split, run.prepared
    tf.keras.utils.set_random_seed(config.runtime.seed)
    model = RetrievalModel(prepared, config.retrieval)
    model.refresh_index()
    optimizer = make_optimizer(config.retrieval.optimizer, config.retrieval.learning_rate)
    batch_size = config.retrieval.batch_size
    batches = list(make_dataset(prepared.fitting, batch_size, shuffle=True, seed=config.runtime.seed).repeat().take(steps + 2))

    def timed(function, data) -> float:
        function(data[0])
        function(data[1])
        start = time.perf_counter()
        for batch in data[2:]:
            function(batch)
        return (time.perf_counter() - start) / max(len(data) - 2, 1) * 1000.0

    def loss(batch):
        return model.compute_loss(batch, training=True)

    def gradients(batch):
        with tf.GradientTape() as tape:
            value = loss(batch)
        return tape.gradient(value, model.trainable_variables)

    def step(batch):
        optimizer.apply_gradients(zip(gradients(batch), model.trainable_variables))

    parts = {
        "query tower": lambda b: model.query_tower(b["user_id"], leave_out_movie_id=b["movie_id"], training=True),
        "candidate tower": lambda b: model.candidate_tower(b["movie_id"]),
        "loss (towers + in-batch softmax)": loss,
        "loss + gradients": gradients,
        "loss + gradients + optimizer (a training step)": step,
    }
    results = {"batch_size": batch_size, "catalog": len(prepared.movies.movie_ids), "ms_per_step": {}}
    for name, function in parts.items():
        results["ms_per_step"][name] = timed(tf.function(function), batches)
    tutorial = TutorialModel(prepared.vocab.user_ids, prepared.vocab.movie_ids,
                             tf.data.Dataset.from_tensor_slices(prepared.movies.movie_ids.astype(str)))
    tutorial.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    tutorial_batches = list(make_dataset(split.train, 8192, shuffle=True, seed=config.runtime.seed).repeat().take(6))
    results["tutorial_ms_per_step"] = timed(tf.function(tutorial.train_step), tutorial_batches)
    ours = results["ms_per_step"]["loss + gradients + optimizer (a training step)"]
    results["examples_per_second"] = {"ours": batch_size / ours * 1000.0,
                                      "tutorial": 8192 / results["tutorial_ms_per_step"] * 1000.0}
    print(f"training step profile on {source} ({results['catalog']:,} movies), batch {batch_size} "
          f"(tutorial: 8192), ms per step over {steps} steps:")
    for name, ms in results["ms_per_step"].items():
        print(f"  {name:48} {ms:8.2f}")
    print(f"  {'tutorial configuration, whole step':48} {results['tutorial_ms_per_step']:8.2f}")
    rates = results["examples_per_second"]
    print(f"  examples/s: ours {rates['ours']:,.0f}, tutorial {rates['tutorial']:,.0f} "
          f"({rates['ours'] / rates['tutorial']:.1f}x; fit's own loop and callbacks not included)")
    return results
