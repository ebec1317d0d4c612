"""The ScaNN index option: close to brute force, exact exclusion, exported and loaded with ``import scann``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY, run_tensorflow_only

pytest.importorskip("scann", reason="ScaNN is an optional extra (pip install -e '.[scann]')")

from tfrs_pipeline.retrieval.index import ScannIndex, ScannParameters, SeenAwareBruteForce  # noqa: E402


@pytest.fixture(scope="module")
def indexes():
    rng = np.random.default_rng(0)
    # Clustered, like trained movie embeddings (uniform noise is the worst case for a partition tree).
    centers = rng.normal(size=(40, 16))
    candidates = tf.constant((centers[rng.integers(0, 40, 2000)] + 0.3 * rng.normal(size=(2000, 16))).astype(np.float32))
    ids = tf.constant([f"m{i}" for i in range(2000)])
    return rng, ScannIndex(candidates, ids), SeenAwareBruteForce(k=10).reindex(candidates, ids)


def test_scann_finds_most_of_the_exact_top_k(indexes):
    rng, scann_index, exact = indexes
    queries = tf.constant(rng.normal(size=(20, 16)).astype(np.float32))
    _, approximate = scann_index(queries, 10)
    _, truth = exact(queries, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approximate.numpy(), truth.numpy())])
    assert overlap >= 0.9


def test_scann_exclusion_never_returns_excluded_movies(indexes):
    rng, scann_index, exact = indexes
    queries = tf.constant(rng.normal(size=(3, 16)).astype(np.float32))
    _, best = exact(queries, 30)
    positions = [sorted(int(m.decode()[1:]) for m in row[:20]) for row in best.numpy()]
    _, ids = scann_index.query_excluding(queries, tf.ragged.constant(positions, dtype=tf.int64), 10)
    for row, excluded in zip(ids.numpy(), positions):
        assert len(row) == 10 and not {int(m.decode()[1:]) for m in row} & set(excluded)


@pytest.mark.slow
def test_pipeline_exported_with_scann_loads_with_import_scann(tmp_path):
    from tfrs_pipeline.config import PipelineConfig, apply_overrides
    from tfrs_pipeline.pipeline import run_training

    config = apply_overrides(PipelineConfig(), {**TINY, "retrieval.index": "scann", "rating.epochs": 1})
    trained = run_training(config, tmp_path / "scann", log=lambda *_: None)
    assert trained.metrics["excluding_seen"]["recall_at_100"] > 0
    code = f"""
import json, scann
m = tf.saved_model.load({str(trained.path)!r})
out = m.signatures["serving_default"](user_id=tf.constant(["1"]), k=tf.constant(4))
print(json.dumps(out["movie_ids"].numpy().astype(str).tolist()))
"""
    ids = json.loads(run_tensorflow_only(code).strip().splitlines()[-1])
    assert len(ids[0]) == 4


def test_scann_parameters_grow_with_the_catalog_and_search_a_shrinking_fraction():
    small, large = ScannParameters.for_catalog(10_000), ScannParameters.for_catalog(1_000_000)
    assert small.leaves < large.leaves and small.reorder <= large.reorder
    assert small.leaves_to_search / small.leaves > large.leaves_to_search / large.leaves >= 0.1
    assert ScannParameters.for_catalog(50) == ScannParameters(leaves=1, leaves_to_search=1, reorder=50)
    with pytest.raises(ValueError, match="at least one movie, got 0"):
        ScannParameters.for_catalog(0)


@pytest.mark.slow
def test_index_benchmark_prints_latency_recall_and_reloads_the_export(tmp_path, capsys):
    from tfrs_pipeline.cli import main

    out = tmp_path / "index.json"
    assert main(["benchmark", "index", "--catalog", "2000,6000", "--dim", "16", "--queries", "20",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "recall@100" in printed and "answered the same" in printed
    results = json.loads(out.read_text())
    large = results["catalogs"]["6000"]
    assert large["scann"]["recall_at_k"] >= 0.9
    assert large["scann"]["export"]["same_answers"] is True
    assert large["brute_force"]["batch_1"]["p50_ms"] > 0 and "export" not in results["catalogs"]["2000"]["scann"]
