"""The two-stage pipeline SavedModel: signatures, exclusions, cold start, a TensorFlow-only process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_tensorflow_only

from tfrs_pipeline.data import load_data
from tfrs_pipeline.data.split import SplitRecord, reproduce_split


@pytest.fixture(scope="module")
def loaded(trained):
    return tf.saved_model.load(str(trained.path))


@pytest.fixture(scope="module")
def split(trained):
    return reproduce_split(load_data("synthetic:300x200x8000"), SplitRecord.load(trained.path / "split.json"))


def _call(model, name, **inputs):
    return {k: v.numpy() for k, v in model.signatures[name](**{n: tf.constant(x) for n, x in inputs.items()}).items()}


def test_serving_default_returns_k_unseen_movies_in_the_list_rankers_order_with_titles(loaded, split):
    out = _call(loaded, "serving_default", user_id=["1", "2"], k=7)
    assert set(out) == {"movie_ids", "titles", "scores", "predicted_ratings", "retrieval_scores", "known_user"}
    assert out["movie_ids"].shape == (2, 7) and out["known_user"].tolist() == [True, True]
    assert np.all(np.diff(out["scores"], axis=1) <= 1e-6)
    low, high = 0.5, 5.0
    assert np.all((out["predicted_ratings"] >= low) & (out["predicted_ratings"] <= high))
    seen = set(split.train.loc[split.train.user_id == "1", "movie_id"])
    assert not seen & set(out["movie_ids"][0].astype(str))
    data = load_data("synthetic:300x200x8000")
    titles = dict(zip(data.movies.movie_id, data.movies.title))
    assert [t.decode() for t in out["titles"][0]] == [titles[m.decode()] for m in out["movie_ids"][0]]


def test_including_seen_may_return_rated_movies(loaded, split):
    heavy = split.train.groupby("user_id", observed=True).size().idxmax()
    out = _call(loaded, "recommend_including_seen", user_id=[str(heavy)], k=100)
    seen = set(split.train.loc[split.train.user_id == heavy, "movie_id"])
    assert seen & set(out["movie_ids"][0].astype(str))


def test_unknown_user_gets_well_rated_popular_movies_and_a_flag(loaded, split):
    out = _call(loaded, "serving_default", user_id=["never-seen"], k=5)
    assert out["known_user"].tolist() == [False] and out["movie_ids"].shape == (1, 5)
    counts = split.train["movie_id"].value_counts()
    assert counts.reindex(out["movie_ids"][0].astype(str)).fillna(0).mean() > counts.mean()


def test_predict_ratings_and_similar_movies_signatures(loaded):
    ranked = _call(loaded, "predict_ratings", user_id=["1", "1"], movie_ids=[["1", "2", "x"], ["3", "4", "5"]])
    former = _call(loaded, "rank", user_id=["1", "1"], movie_ids=[["1", "2", "x"], ["3", "4", "5"]])
    np.testing.assert_array_equal(former["predicted_ratings"], ranked["predicted_ratings"])  # kept for one release
    assert ranked["predicted_ratings"].shape == (2, 3)
    assert ranked["known_movie"].tolist() == [[True, True, False], [True, True, True]]
    similar = _call(loaded, "similar_movies", movie_id=["1", "unknown-movie"], k=4)
    assert similar["movie_ids"].shape == (2, 4)
    assert b"1" not in similar["movie_ids"][0].tolist()  # never the movie itself
    assert similar["known_movie"].tolist() == [True, False]
    assert np.all(np.diff(similar["scores"][0]) <= 1e-6)


def test_retrieve_accepts_any_k_and_the_rating_blend_never_loses_retrieval_hit_rate_on_validation(loaded, trained):
    for k in (1, 33):
        assert _call(loaded, "retrieve", user_id=["1"], k=k)["movie_ids"].shape == (1, k)
    history = json.loads((trained.path / "history.json").read_text())
    by_weight = history["validation_hit_rate_by_rating_weight"]
    assert by_weight[str(history["rating_weight"])] >= by_weight["0.0"]


@pytest.mark.slow
def test_pipeline_answers_match_in_a_tensorflow_only_process(loaded, trained):
    code = f"""
import json
m = tf.saved_model.load({str(trained.path)!r})
a = m.signatures["serving_default"](user_id=tf.constant(["1", "nobody"]), k=tf.constant(5))
s = m.signatures["similar_movies"](movie_id=tf.constant(["3"]), k=tf.constant(3))
print(json.dumps([a["movie_ids"].numpy().astype(str).tolist(), a["predicted_ratings"].numpy().round(4).tolist(),
                  a["known_user"].numpy().tolist(), s["movie_ids"].numpy().astype(str).tolist()]))
"""
    ids, ratings, known, similar = json.loads(run_tensorflow_only(code).strip().splitlines()[-1])
    here = _call(loaded, "serving_default", user_id=["1", "nobody"], k=5)
    assert ids == here["movie_ids"].astype(str).tolist() and known == [True, False]
    np.testing.assert_allclose(ratings, here["predicted_ratings"], atol=1e-3)
    assert similar == _call(loaded, "similar_movies", movie_id=["3"], k=3)["movie_ids"].astype(str).tolist()


def test_served_movies_are_retrieved_or_added_by_the_item_item_model_and_scored_as_retrieval_would(loaded, trained, split):
    served = _call(loaded, "serving_default", user_id=["3"], k=100)
    retrieved = _call(loaded, "retrieve", user_id=["3"], k=100)
    assert served["movie_ids"].shape == (1, 100) and len(set(served["movie_ids"][0])) == 100
    assert not set(served["movie_ids"][0].astype(str)) & set(split.train.loc[split.train.user_id == "3", "movie_id"])
    assert trained.metrics["training"]["list_ranker_candidates"]["item_item_added"] > 0
    # The served two-tower model is the one trained again on every training rating, for validation's best epochs.
    refit = trained.metrics["training"]["retrieval_refit"]
    history = json.loads((trained.path / "history.json").read_text())
    assert refit["ratings"] == len(split.train) and refit["epochs"] == history["retrieval_best_epoch"]
    assert len(history["retrieval_refit"]["loss"]) == refit["epochs"]
    # The item-item model is fitted before the towers, while the process holds little more than the data.
    assert list(trained.metrics["training"]["phases"])[:3] == ["data", "item_item", "retrieval"]
    by_retrieval = dict(zip(retrieved["movie_ids"][0], retrieved["retrieval_scores"][0]))
    added = [(m, s) for m, s in zip(served["movie_ids"][0], served["retrieval_scores"][0]) if m not in by_retrieval]
    assert added  # the item-item model's candidates reach the served list
    # A movie retrieval did not return scores no higher than its 100th candidate (query . candidate, as the index).
    assert max(s for _, s in added) <= min(by_retrieval.values()) + 1e-5
    for movie, score in zip(served["movie_ids"][0], served["retrieval_scores"][0]):
        if movie in by_retrieval:
            assert score == pytest.approx(by_retrieval[movie], abs=1e-5)


def test_explain_names_rated_movies_and_their_shares(loaded, split):
    served = _call(loaded, "serving_default", user_id=["4"], k=5)
    out = _call(loaded, "explain", user_id=["4"] * 5, movie_id=served["movie_ids"][0].astype(str), k=3)
    rated = set(split.train.loc[split.train.user_id == "4", "movie_id"])
    named = [m for row in out["movie_ids"].astype(str) for m in row if m]
    assert named and set(named) <= rated
    assert np.all(out["shares"] >= 0) and np.all(out["shares"].sum(axis=1) <= 1 + 1e-5)
    assert np.all(np.diff(out["contributions"], axis=1) <= 1e-6)
    assert out["known_user"].all() and out["known_movie"].all()
    unknown = _call(loaded, "explain", user_id=["nobody"], movie_id=["1"], k=3)
    assert unknown["known_user"].tolist() == [False] and not any(unknown["movie_ids"].astype(str)[0])


def _training_movies(split, user: str) -> list[str]:
    return split.train.loc[split.train.user_id == user, "movie_id"].astype(str).tolist()


def test_a_visitor_who_sends_a_users_training_history_gets_that_users_list(loaded, split):
    users = ["1", "2", "3", "4", "5"]
    known = _call(loaded, "serving_default", user_id=users, k=10)
    histories = [_training_movies(split, user) for user in users]
    width = max(len(h) for h in histories)
    padded = [h + [""] * (width - len(h)) for h in histories]
    visitors = _call(loaded, "recommend_from_history", movie_ids=padded, k=10)
    np.testing.assert_array_equal(visitors["movie_ids"], known["movie_ids"])
    np.testing.assert_allclose(visitors["scores"], known["scores"], rtol=1e-5, atol=1e-5)
    assert visitors["history_known"].tolist() == [len(set(h)) for h in histories]


def test_a_movie_rated_after_training_joins_the_users_history_without_retraining(loaded, split):
    before = _call(loaded, "serving_default", user_id=["6"], k=10)
    rated = before["movie_ids"][0, 0].decode()  # the user goes on to rate the first recommendation
    after = _call(loaded, "recommend_with_history", user_id=["6"], movie_ids=[[rated]], exclude_movie_ids=[[""]], k=10)
    assert rated not in after["movie_ids"][0].astype(str)
    assert after["history_known"].tolist() == [len(set(_training_movies(split, "6"))) + 1]
    # The list changes beyond losing that movie: the new rating counts in every movie's score.
    scores_before = dict(zip(before["movie_ids"][0].astype(str), before["scores"][0]))
    common = [(scores_before[m], s) for m, s in zip(after["movie_ids"][0].astype(str), after["scores"][0])
              if m in scores_before]
    assert common and all(abs(a - b) > 1e-6 for a, b in common)
    # Exactly as a visitor with the training history and the new movie.
    visitor = _call(loaded, "recommend_from_history", movie_ids=[_training_movies(split, "6") + [rated]], k=10)
    np.testing.assert_array_equal(visitor["movie_ids"], after["movie_ids"])


def test_excluding_movies_removes_them_and_keeps_the_others_order(loaded):
    plain = _call(loaded, "serving_default", user_id=["7", "8"], k=12)
    dropped = [plain["movie_ids"][0, 1].decode(), plain["movie_ids"][0, 4].decode()]
    out = _call(loaded, "recommend_excluding", user_id=["7", "8"], exclude_movie_ids=[dropped, ["", ""]], k=10)
    kept = [m for m in plain["movie_ids"][0].astype(str) if m not in dropped]
    assert out["movie_ids"][0].astype(str).tolist() == kept[:10]
    assert out["movie_ids"][1].astype(str).tolist() == plain["movie_ids"][1, :10].astype(str).tolist()


def test_past_the_movies_left_the_slots_are_empty_never_a_seen_or_excluded_movie(loaded, split):
    heavy = split.train.groupby("user_id", observed=True).size().idxmax()
    seen = set(_training_movies(split, str(heavy)))
    out = _call(loaded, "serving_default", user_id=[str(heavy)], k=100_000)
    movies = out["movie_ids"][0].astype(str)
    filled = movies[movies != ""]
    assert not seen & set(filled) and len(set(filled)) == len(filled)
    assert np.isneginf(out["scores"][0][movies == ""]).all() and (out["titles"][0][movies == ""] == b"").all()


@pytest.mark.slow
def test_a_catalog_served_with_sparse_item_item_weights_gives_a_visitor_the_users_list(tmp_path, monkeypatch):
    from conftest import TINY

    import tfrs_pipeline.ranking.neighbours as neighbours
    from tfrs_pipeline.config import PipelineConfig, apply_overrides
    from tfrs_pipeline.pipeline import run_training

    monkeypatch.setattr(neighbours, "DENSE_CELLS", 0)  # as on a catalog too big for a dense matrix
    config = apply_overrides(PipelineConfig(), {**TINY, "ranker.neighbours": 8})
    trained = run_training(config, tmp_path / "sparse", log=lambda *_: None)
    assert "the strongest" in trained.metrics["training"]["item_item"]["model"]  # pruned: sparse
    model = tf.saved_model.load(str(trained.path))
    split = trained.split
    users = ["1", "2", "3"]
    known = _call(model, "serving_default", user_id=users, k=10)
    histories = [_training_movies(split, user) for user in users]
    width = max(len(h) for h in histories)
    visitors = _call(model, "recommend_from_history", movie_ids=[h + [""] * (width - len(h)) for h in histories], k=10)
    np.testing.assert_array_equal(visitors["movie_ids"], known["movie_ids"])
    assert trained.metrics["pipeline"]["ndcg_at_10"] == trained.metrics["cold_start"]["history_all"]["ndcg_at_10"]
