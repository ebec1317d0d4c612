"""Exported SavedModels: named signatures, any k after loading, same answers in a TensorFlow-only process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_tensorflow_only


def test_model_folder_has_tf_serving_layout_and_its_records(trained):
    path = trained.path
    assert path.name == "1" and (path / "saved_model.pb").is_file()
    for name in ("config.toml", "split.json", "metrics.json", "history.json", "README.md",
                 "vocabularies/user_ids.txt", "vocabularies/movie_ids.txt"):
        assert (path / name).is_file(), name
    # Each stage beside the version, a model base of its own in TensorFlow Serving's layout.
    for stage in ("query_tower", "candidate_tower", "index", "ranking"):
        assert (path.parent / "stages" / stage / "1" / "saved_model.pb").is_file(), stage
        assert (path.parent / "stages" / stage / "1" / "MANIFEST.sha256").is_file(), stage
    card = (path / "README.md").read_text()
    assert "tf.saved_model.load" in card and "recall_at_10" in card
    # What a server of the pipeline loads, and nothing else: the stages and the logs lie beside it.
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["saved_model.pb", "variables", "assets", "fingerprint.pb", "config.toml", "split.json", "vocabularies",
         "history.json", "metrics.json", "README.md", "MANIFEST.sha256"])
    assert (path.parent / "logs" / "1" / "retrieval").is_dir()
    assert sorted(p.name for p in path.parent.iterdir()) == ["1", "logs", "stages"]


def test_metrics_json_has_the_documented_shape(trained):
    metrics = json.loads((trained.path / "metrics.json").read_text())
    assert set(metrics["factorized_top_k"]) == {"top_1", "top_5", "top_10", "top_50", "top_100"}
    assert set(metrics["excluding_seen"]) == {f"{name}_at_{k}" for name in ("hit_rate", "recall", "capped_recall")
                                              for k in (10, 50, 100)} | {"ndcg_at_10"}
    assert set(metrics["pipeline"]) >= {"recall_at_10", "ndcg_at_10"} and "rmse" in metrics["ranking"]
    popular = metrics["baselines"]["most_popular"]
    assert set(popular["factorized_top_k"]) == set(metrics["factorized_top_k"]) and "rmse" in popular["ranking"]
    assert "rmse" in metrics["baselines"]["matrix_factorization"]["ranking"]
    assert set(metrics["cold_start"]) == {"history_5", "history_all", "most_popular_history_5"}
    assert set(metrics["cold_start"]["history_5"]) >= {"hit_rate_at_10", "recall_at_10", "ndcg_at_10"}
    values = [v for section in ("factorized_top_k", "excluding_seen", "pipeline") for v in metrics[section].values()]
    assert all(0.0 <= v <= 1e4 for v in values)


def test_stage_signatures_have_named_inputs_and_outputs(trained):
    index = tf.saved_model.load(str(trained.model_dir.stage("index"))).signatures["serving_default"]
    assert set(index.structured_input_signature[1]) == {"user_id", "k"}
    assert set(index.structured_outputs) == {"movie_ids", "scores", "known_user"}
    ranking = tf.saved_model.load(str(trained.model_dir.stage("ranking"))).signatures["serving_default"]
    assert set(ranking.structured_outputs) == {"predicted_rating", "known_user", "known_movie"}


def test_recommendation_signatures_take_the_inputs_the_server_sends(trained):
    # The server picks each request's inputs from signatures.RECOMMEND_INPUTS, not from the model.
    from tfrs_pipeline.signatures import RECOMMEND_INPUTS
    signatures = tf.saved_model.load(str(trained.path)).signatures
    for name, inputs in RECOMMEND_INPUTS.items():
        assert set(signatures[name].structured_input_signature[1]) == {*inputs, "k"}, name


@pytest.mark.slow
def test_stages_give_the_same_answers_in_a_tensorflow_only_process_for_any_k(trained):
    stage = trained.model_dir.stage
    code = f"""
import json
out = {{}}
index = tf.saved_model.load({str(stage('index'))!r}).signatures["serving_default"]
for k in (3, 17):
    r = index(user_id=tf.constant(["1", "2", "nobody"]), k=tf.constant(k))
    out[k] = [r["movie_ids"].numpy().astype(str).tolist(), r["scores"].numpy().round(5).tolist(), r["known_user"].numpy().tolist()]
q = tf.saved_model.load({str(stage('query_tower'))!r}).signatures["serving_default"]
out["query"] = q(user_id=tf.constant(["1"]))["embeddings"].numpy().round(5).tolist()
print(json.dumps(out))
"""
    loaded = json.loads(run_tensorflow_only(code).strip().splitlines()[-1])
    index = tf.saved_model.load(str(stage("index")))
    for k in (3, 17):
        r = index.signatures["serving_default"](user_id=tf.constant(["1", "2", "nobody"]), k=tf.constant(k))
        assert loaded[str(k)][0] == r["movie_ids"].numpy().astype(str).tolist()
        np.testing.assert_allclose(loaded[str(k)][1], r["scores"].numpy(), atol=1e-4)
        assert loaded[str(k)][2] == [True, True, False]
        assert len(loaded[str(k)][0][0]) == k


def test_vocabularies_are_assets_not_graph_constants(trained):
    from tensorflow.core.protobuf import saved_model_pb2

    users = (trained.path / "vocabularies" / "user_ids.txt").read_text().splitlines()
    for folder in [trained.path] + [trained.model_dir.stage(s) for s in ("query_tower", "index", "ranking")]:
        assert any(p.read_text().splitlines() == users for p in (folder / "assets").glob("*.txt")), folder
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((folder / "saved_model.pb").read_bytes())
        graph = proto.meta_graphs[0].graph_def
        nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
        longest = max((len(n.attr["value"].tensor.string_val) for n in nodes if n.op == "Const"), default=0)
        assert longest < len(users), f"{folder}: a string constant of {longest} values in the graph"


@pytest.mark.slow
def test_a_model_without_the_list_ranker_exports_and_orders_by_the_rating_blend(tmp_path):
    from conftest import TINY

    from tfrs_pipeline.config import PipelineConfig, apply_overrides
    from tfrs_pipeline.pipeline import run_training

    config = apply_overrides(PipelineConfig(), {**TINY, "ranker.enabled": False, "rating.epochs": 1})
    trained = run_training(config, tmp_path / "blend", log=lambda *_: None)
    ranking = tf.saved_model.load(str(trained.model_dir.stage("ranking")))
    assert set(ranking.signatures) == {"serving_default"}
    model = tf.saved_model.load(str(trained.path))
    out = model.signatures["serving_default"](user_id=tf.constant(["1"]), k=tf.constant(5))
    assert out["movie_ids"].shape == (1, 5)
    # Exclusions and new ratings take the same path as with the ranker.
    listed = out["movie_ids"].numpy()[0].astype(str)
    excluded = model.signatures["recommend_excluding"](user_id=tf.constant(["1"]), k=tf.constant(5),
                                                       exclude_movie_ids=tf.constant([listed[:2]]))
    assert not set(listed[:2]) & set(excluded["movie_ids"].numpy()[0].astype(str))
    phases = trained.metrics["training"]["phases"]
    # Without the list ranker there is no item-item model to fit.
    assert list(phases) == ["data", "retrieval", "rating", "list_ranker", "retrieval_refit", "whole_training_side",
                           "export", "evaluation"]
    assert trained.metrics["training"]["export_mib"] > 0
