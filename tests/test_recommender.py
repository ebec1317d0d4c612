"""The Python API over an exported model: Recommender, from the package root, with TensorFlow alone."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import tfrs_pipeline
from tfrs_pipeline.errors import ModelError


@pytest.fixture(scope="module")
def model(trained):
    return tfrs_pipeline.Recommender.load(trained.path.parent)


def test_load_resolves_the_newest_version(model, trained):
    assert model.path == trained.path and model.version == 1 and model.name == trained.path.parent.name


def test_recommend_returns_decoded_titles_and_excludes_seen_movies(model, trained):
    out = model.recommend(["1", "stranger"], k=5, allow_unknown=True, arrays=True)
    assert out["movie_ids"].shape == (2, 5) and isinstance(out["titles"][0, 0], str)
    assert out["known_user"].tolist() == [True, False]
    seen = set(trained.split.train.loc[trained.split.train["user_id"] == "1", "movie_id"])
    assert not seen & set(out["movie_ids"][0])
    catalog = model.catalog.set_index("movie_id")["title"]
    assert [catalog[m] for m in out["movie_ids"][0]] == out["titles"][0].tolist()


def test_batched_calls_equal_one_call(model):
    users = [str(u) for u in range(1, 40)]
    whole = model.call("serving_default", 4096, user_id=users, k=4)
    pieces = model.call("serving_default", 7, user_id=users, k=4)
    assert whole["movie_ids"].tolist() == pieces["movie_ids"].tolist()
    np.testing.assert_allclose(whole["predicted_ratings"], pieces["predicted_ratings"], atol=1e-5)
    only_ids = model.call("serving_default", 7, user_id=users, k=4, keep=("movie_ids",))
    assert list(only_ids) == ["movie_ids"] and only_ids["movie_ids"].tolist() == whole["movie_ids"].tolist()


def test_predict_ratings_retrieve_and_similar_items(model):
    ranked = model.predict_ratings(["1"], [["1", "2", "no-such-movie"]], arrays=True)
    assert ranked["predicted_ratings"].shape == (1, 3) and ranked["known_movie"].tolist() == [[True, True, False]]
    assert model.retrieve(["1"], k=30, arrays=True)["movie_ids"].shape == (1, 30)
    similar = model.similar_items(["1"], k=3, arrays=True)
    assert "1" not in similar["movie_ids"][0].tolist() and similar["known_movie"].tolist() == [True]


def test_find_movie_by_id_title_or_unique_part(model):
    first = model.catalog.iloc[0]
    assert model.find_movie(first["movie_id"]) == first["movie_id"]
    assert model.find_movie(first["title"].upper()) == first["movie_id"]
    with pytest.raises(ModelError, match="no movie with id or title"):
        model.find_movie("zz-no-such-title-zz")
    with pytest.raises(ModelError, match=r"movies match '\('"):
        model.find_movie("(")  # every synthetic title has a year in brackets


def test_errors_name_the_signature_and_the_inputs(model):
    with pytest.raises(ModelError, match="no signature 'nope'; this model has .*explain"):
        model.call("nope", user_id=["1"])
    with pytest.raises(ModelError, match=r"missing \['k'\]"):
        model.call("retrieve", user_id=["1"])
    with pytest.raises(ModelError, match=r"signature 'retrieve' has outputs .*movie_ids.*, not \['scores'\]"):
        model.call("retrieve", user_id=["1"], k=3, keep=("movie_ids", "scores"))


def test_one_id_is_as_good_as_a_list_of_one(model):
    one, listed = model.recommend("42", k=10), model.recommend(["42"], k=10)
    assert len(one) == 10 and one.equals(listed)
    assert model.recommend(42, k=3).equals(model.recommend(["42"], k=3))
    assert len(model.similar_items("1", k=3)) == 3
    assert model.recommend_from_history(["1", "2"], k=3)["history_known"].tolist() == [2] * 3  # one visitor's list
    assert len(model.recommend("42", k=3, exclude=["1", "2"])) == 3  # one user's exclusions
    assert model.explain(b"42", ["1"]).equals(model.explain("42", ["1"]))
    assert model.predict_ratings("42", ["1", "2"]).equals(model.predict_ratings(["42"], [["1", "2"]]))


def test_results_are_tables_a_row_per_answer_with_the_arrays_behind_them(model):
    users = ["1", "stranger"]
    top, out = model.recommend(users, k=4, allow_unknown=True), model.recommend(users, k=4, allow_unknown=True, arrays=True)
    assert list(top.columns) == ["user_id", "rank", "movie_id", "title", "ranker_score", "predicted_rating",
                                 "retrieval_score", "known_user"]
    assert top["user_id"].tolist() == ["1"] * 4 + ["stranger"] * 4 and top["rank"].tolist() == [1, 2, 3, 4] * 2
    assert top["movie_id"].tolist() == out["movie_ids"].reshape(-1).tolist()
    assert top["title"].tolist() == out["titles"].reshape(-1).tolist()
    np.testing.assert_allclose(top["ranker_score"], out["scores"].reshape(-1))
    np.testing.assert_allclose(top["predicted_rating"], out["predicted_ratings"].reshape(-1))
    assert top["known_user"].tolist() == [True] * 4 + [False] * 4
    # best first within each user: the ranker's score orders the list
    assert all((group["ranker_score"].diff().dropna() <= 1e-6).all() for _, group in top.groupby("user_id"))

    similar = model.similar_items(["1", "2"], k=3)
    assert list(similar.columns) == ["of_movie_id", "rank", "movie_id", "title", "similarity", "known_movie"]
    assert similar["of_movie_id"].tolist() == ["1"] * 3 + ["2"] * 3 and similar["similarity"].between(-1, 1).all()

    ranked = model.predict_ratings("1", ["1", "2", "no-such-movie"])
    with pytest.warns(FutureWarning, match="rank is now Recommender.predict_ratings"):
        assert model.rank("1", ["1", "2", "no-such-movie"]).equals(ranked)  # the former name, for one release
    assert ranked["movie_id"].tolist() == ["1", "2", "no-such-movie"] and ranked["title"].iloc[2] == ""
    assert ranked["known_movie"].tolist() == [True, True, False]
    assert ranked["title"].iloc[0] == model.title_of("1")

    reasons = model.explain("1", top["movie_id"].iloc[:4], k=2)
    assert list(reasons.columns) == ["user_id", "movie_id", "rank", "because_movie_id", "because_title",
                                     "contribution", "share"]
    assert set(reasons["movie_id"]) <= set(top["movie_id"].iloc[:4]) and (reasons["because_movie_id"] != "").all()
    assert model.retrieve("1", k=20)["rank"].tolist() == list(range(1, 21))


def test_a_k_above_what_there_is_is_capped_with_a_warning_never_silently(model):
    with pytest.warns(tfrs_pipeline.CappedWarning, match=r"k=5000 is more than the \d+ candidates retrieval hands "
                                                         r"the ranker \(serving.num_candidates at training\)"):
        top = model.recommend("1", k=5000)
    assert 0 < top["rank"].max() < 5000
    with pytest.warns(tfrs_pipeline.CappedWarning, match=f"k=99999 is more than the {len(model.catalog) - 1:,} other "
                                                         "movies in the catalog"):
        model.similar_items("1", k=99999)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within what there is: no warning
        model.recommend("1", k=5)


def test_empty_slots_are_not_rows(model):
    out = model.recommend_from_history([["1"]], k=5, arrays=True)
    out["movie_ids"][0, 3:] = ""  # as the signature answers when fewer movies are left than k
    from tfrs_pipeline.recommender import _frame
    from tfrs_pipeline.signatures import RANKED_COLUMNS
    assert _frame(out, {"visitor": np.arange(1)}, RANKED_COLUMNS, ["history_known"])["rank"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("call,message", [
    (lambda m: m.recommend("42", k=0), "k must be a whole number from 1 to 2,147,483,647, got 0"),
    (lambda m: m.recommend("42", k=-1), "k must be a whole number from 1 to 2,147,483,647, got -1"),
    (lambda m: m.recommend("42", k=1.5), "k must be a whole number from 1 to 2,147,483,647, got 1.5"),
    (lambda m: m.recommend("42", k="10"), "k must be a whole number from 1 to 2,147,483,647, got '10'"),
    (lambda m: m.recommend("42", k=True), "k must be a whole number from 1 to 2,147,483,647, got True"),
    (lambda m: m.recommend(["1", "2"], k=3, exclude=[["5"]]), r"exclude must hold one list per user \(2\), got 1"),
    (lambda m: m.recommend([["1"]], k=3), r"user_ids must hold ids \(strings or whole numbers\), got \['1'\]"),
    (lambda m: m.recommend(None, k=3), "user_ids must be one id or a list of ids, got None"),
    (lambda m: m.predict_ratings(["1"], [["1"], ["2"]]), r"movie_ids must hold one list per user \(1\), got 2"),
    (lambda m: m.predict_ratings(["1", "2"], [["1"], ["2", "3"]]), "movie_ids must hold as many movies for every user"),
    (lambda m: m.explain(["1", "2"], ["3"]), "user_id must be one user id"),
    (lambda m: m.similar_items("1", k=2.0), "k must be a whole number from 1 to 2,147,483,647, got 2.0"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_bad_arguments_are_value_errors_naming_the_argument(model, call, message):
    with pytest.raises(ValueError, match=message):
        call(model)


@pytest.mark.slow
def test_the_client_and_the_server_import_no_tfrs_and_no_training_code(trained):
    code = f"""
import sys
from tfrs_pipeline.server import make_server
import json, urllib.request
server = make_server({str(trained.path.parent)!r}, port=0)
server.start()
with urllib.request.urlopen(server.url + "/recommend?user_id=1&k=3", timeout=60) as response:
    out = json.loads(response.read())
server.stop()
assert len(out["movies"]) == 3
loaded = sorted(m for m in sys.modules if m.startswith(("tensorflow_recommenders", "tfrs_pipeline")))
print(loaded)
forbidden = [m for m in loaded if m.startswith("tensorflow_recommenders") or m.split(".")[-1] in
             ("train", "retrieval", "ranking", "towers", "layers", "features", "export", "evaluation", "baselines")]
assert not forbidden, forbidden
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_per_call_exclusions_and_recommendations_from_a_history(model, trained):
    plain = model.recommend(["1", "2"], k=4, arrays=True)["movie_ids"]
    excluded = model.recommend(["1", "2"], k=4, exclude=[plain[0][:2], []], arrays=True)["movie_ids"]
    assert not set(plain[0][:2]) & set(excluded[0]) and excluded.shape == (2, 4) and all(excluded[0])
    assert list(excluded[1]) == list(plain[1])  # an empty list excludes nothing
    rated = trained.split.train.loc[trained.split.train["user_id"].astype(str) == "1", "movie_id"].astype(str).tolist()
    out = model.recommend_from_history([rated[:5], ["nope"]], k=6, arrays=True)
    assert list(out["history_known"]) == [5, 0] and not set(rated[:5]) & set(out["movie_ids"][0])
    assert all(title for title in out["titles"][0])
    with pytest.raises(ValueError, match="exclude= works with exclude_seen=True"):
        model.recommend(["1"], k=3, exclude_seen=False, exclude=[["1"]])


def test_a_users_ratings_since_training_change_their_list_and_a_visitor_with_the_same_history_gets_it(model, trained):
    train = trained.split.train
    rated = train.loc[train["user_id"].astype(str) == "2", "movie_id"].astype(str).tolist()
    before = model.recommend("2", k=5)
    new = before["movie_id"].iloc[0]
    after = model.recommend("2", k=5, history=[[new]])
    assert new not in set(after["movie_id"]) and after["known_user"].all() and len(after) == 5
    visitor = model.recommend_from_history([rated + [new]], k=5)
    assert visitor["movie_id"].tolist() == after["movie_id"].tolist()
    assert np.allclose(visitor["ranker_score"], after["ranker_score"], atol=1e-5)
    # The user's own predicted ratings (their id counts there), the visitor's an average rater's.
    assert after["predicted_rating"].between(0.5, 5).all()
    with pytest.raises(ValueError, match="history= works with exclude_seen=True"):
        model.recommend("2", k=3, exclude_seen=False, history=[["1"]])
    with pytest.raises(ValueError, match="history must hold one list per user"):
        model.recommend(["2", "3"], k=3, history=[["1"]])


def test_an_unknown_user_is_an_error_naming_the_way_to_the_fallback_and_a_visitor_warns(model):
    with pytest.raises(tfrs_pipeline.ArgumentError, match=r"'stranger' not in the model's training data.*allow_unknown=True"):
        model.recommend(["1", "stranger"], k=3)
    assert len(model.recommend("stranger", k=3, history=[["1"]])) == 3  # a history makes them a visitor
    with pytest.warns(tfrs_pipeline.UnknownMoviesWarning, match="visitor 1: '0068646'"):
        top = model.recommend_from_history([["1"], ["0068646"]], k=3)
    assert top.groupby("visitor")["history_known"].first().tolist() == [1, 0]


def test_rated_movies_are_the_users_highest_rated_training_movies_best_first(model, trained):
    train = trained.split.train
    mine = train[train["user_id"] == "42"]  # the most recent first among equal ratings, then data order
    mine = mine.sort_values("timestamp", ascending=False, kind="stable").sort_values("rating", ascending=False,
                                                                                   kind="stable").head(10)
    rated = model.rated_movies("42", k=10)
    assert rated["movie_id"].tolist() == mine["movie_id"].tolist()
    assert rated["rating"].tolist() == mine["rating"].tolist()
    assert model.rated_movies(["stranger"]).empty and len(model.rated_movies("42", k=3)) == 3
