"""Retrieval benchmarks: the TFRS basic-retrieval tutorial configuration against ours.

``benchmark_retrieval`` trains the tutorial configuration (id embeddings of 32, Adagrad 0.1,
batch 8192, 3 epochs, factorized metrics computed on every training batch) and this
project's retrieval model on the same split in one process; prints both throughputs
(training examples per second) and both metric sets beside most-popular (and, with
``with_ease``, the closed-form EASE item-item model).

    tfrs-pipeline benchmark retrieval --data movielens:../shared/datasets/ml-latest-small
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_pipeline.baselines import ease_recommender, index_recommender, most_popular_recommender
from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.data import load_data
from tfrs_pipeline.features import make_dataset, prepare
from tfrs_pipeline.index import SeenAwareBruteForce, SeenMovies
from tfrs_pipeline.metrics import ranking_report
from tfrs_pipeline.retrieval import train_retrieval
from tfrs_pipeline.split import split_ratings


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


def _timed_fit(model, dataset, epochs: int) -> float:
    start = time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0)
    return time.perf_counter() - start


def benchmark_retrieval(source: str, *, config: PipelineConfig | None = None, with_ease: bool = False,
                        tutorial_epochs: int = 3, out: str | Path | None = None) -> dict:
    """Trains the tutorial configuration and ours on one split; prints and returns both."""
    config = (config or PipelineConfig()).validate()
    data = load_data(source, config.data)
    split = split_ratings(data, config.split)
    print(split.describe())
    prepared = prepare(data, split.train, config.split.validation_fraction, config.split.seed)
    seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, split.train)
    catalog_ids = prepared.movies.movie_ids.astype(str)
    results: dict = {"data": source, "split": vars(split.record), "train_ratings": len(split.train)}

    print(f"tutorial configuration: {tutorial_epochs} epochs, batch 8192, Adagrad 0.1, metrics on every batch")
    tf.keras.utils.set_random_seed(config.runtime.seed)
    tutorial = TutorialModel(prepared.vocab.user_ids, prepared.vocab.movie_ids,
                             tf.data.Dataset.from_tensor_slices(catalog_ids))
    tutorial.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    tutorial_data = make_dataset(split.train, 8192, shuffle=True, seed=config.runtime.seed)
    seconds = _timed_fit(tutorial, tutorial_data, tutorial_epochs)
    tutorial_index = SeenAwareBruteForce(k=100).reindex(tutorial.movie_model(tf.constant(catalog_ids)), tf.constant(catalog_ids))
    results["tutorial"] = {"seconds": seconds, "examples_per_second": tutorial_epochs * len(split.train) / seconds,
                           **ranking_report(index_recommender(tutorial.user_model, tutorial_index, seen), split.test)}

    print("this project's retrieval model (configuration as given; early stopping on validation recall)")
    ours = train_retrieval(prepared, config.retrieval, seed=config.runtime.seed, verbose=config.runtime.verbose)
    results["ours"] = {"seconds": ours.seconds, "examples_per_second": ours.examples_per_second,
                       "epochs": len(ours.history.get("loss", [])), "best_epoch": ours.best_epoch,
                       **ranking_report(index_recommender(ours.model.query_tower.serve, ours.model.index, seen), split.test)}
    results["most_popular"] = ranking_report(
        most_popular_recommender(prepared.full_movies.movie_ids, prepared.full_movies.train_count[1:], seen), split.test)
    if with_ease:
        print("EASE (closed form, lambda 200)")
        results["ease"] = ranking_report(ease_recommender(split.train, catalog_ids, seen), split.test)

    print(format_retrieval_benchmark(results))
    if out:
        Path(out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"written: {out}")
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
    lines.append(f"{'training seconds':34}" + "".join(
        f"{results[c]['seconds']:>14.1f}" if "seconds" in results[c] else f"{'':>14}" for c in columns))
    ratio = results["ours"]["examples_per_second"] / results["tutorial"]["examples_per_second"]
    lines.append(f"throughput, ours / tutorial: {ratio:.1f}x (same process, same data)")
    return "\n".join(lines)


def compare_retrieval_variants(source: str, variants: dict[str, dict], *, epochs: int = 20,
                               config: PipelineConfig | None = None):
    """Trains each retrieval variant (configuration overrides) on one split; a table beside most-popular."""
    import pandas as pd

    config = (config or PipelineConfig()).validate()
    data = load_data(source, config.data)
    split = split_ratings(data, config.split)
    prepared = prepare(data, split.train, config.split.validation_fraction, config.split.seed)
    seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, split.train)
    rows = {}
    for name, overrides in variants.items():
        variant = apply_overrides(config, {"retrieval.epochs": epochs, **overrides}).validate()
        result = train_retrieval(prepared, variant.retrieval, seed=config.runtime.seed, verbose=0)
        report = ranking_report(index_recommender(result.model.query_tower.serve, result.model.index, seen), split.test)
        rows[name] = {**_flatten(report), "training examples/s": result.examples_per_second,
                      "best epoch": result.best_epoch}
        print(f"{name}: recall@100 {rows[name]['recall_at_100']:.4f}, best epoch {result.best_epoch}")
    rows["most popular"] = _flatten(ranking_report(
        most_popular_recommender(prepared.full_movies.movie_ids, prepared.full_movies.train_count[1:], seen), split.test))
    return pd.DataFrame.from_dict(rows, orient="index")


def _flatten(report: dict) -> dict:
    flat = {f"factorized {k}": v for k, v in report["factorized_top_k"].items()}
    flat.update(report["excluding_seen"])
    return flat
