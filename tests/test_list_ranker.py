"""The list ranker: candidate lists shaped like serving, item-item weights, the item-item score, its start."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from scipy import sparse

from tfrs_pipeline.config import RankerConfig, RatingConfig, SplitConfig
from tfrs_pipeline.data import load_data
from tfrs_pipeline.data.split import split_ratings
from tfrs_pipeline.features.dataset import prepare
from tfrs_pipeline.ranking.list_ranker import (
    FEATURES,
    ListRanker,
    base_scores,
    build_item_table,
    calibrate_base_scale,
    candidate_lists,
    choose_item_weight,
    list_cross_entropy,
    split_lists,
)
from tfrs_pipeline.ranking.neighbours import ItemNeighbours, Sessions, session_pairs
from tfrs_pipeline.ranking.rating import RatingModel


def test_candidate_lists_label_the_hold_out_movies_among_the_candidates():
    def retriever(user_id, k):
        users = user_id.numpy().astype(str)
        ids = np.array([["a", "b", "c"] if u == "u1" else ["c", "d", "e"] for u in users])
        return tf.constant(ids), tf.constant(np.tile([3.0, 2.0, 1.0], (len(users), 1)), tf.float32), tf.ones(len(users), bool)

    holdout = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "movie_id": ["c", "z", "d"]})
    lists = candidate_lists(retriever, holdout, num_candidates=3)
    assert lists.user_ids.tolist() == ["u1", "u2"]
    assert lists.labels.tolist() == [[0, 0, 1], [0, 1, 0]]
    assert lists.relevant.tolist() == [2, 1]  # u1's "z" was not retrieved but is still relevant
    train, stop = split_lists(lists, 0.5, seed=0)
    assert len(train) + len(stop) == 2 and len(stop) == 1


RATINGS = pd.DataFrame({"user_id": ["1", "1", "2", "2", "2", "3"], "movie_id": ["a", "b", "a", "b", "c", "c"]})


def test_cosine_neighbours_are_co_ratings_over_the_root_of_both_counts():
    table = ItemNeighbours.build(RATINGS, np.array(["a", "b", "c", "d"]), k=3, kind="cosine")
    # a: users {1, 2}; b: {1, 2}; c: {2, 3}; d: nobody.
    weights = {(int(row), int(n)): w for row in range(1, 5) for n, w in zip(table.neighbours[row], table.weights[row]) if n}
    assert weights[(1, 2)] == pytest.approx(2 / 2)  # a-b
    assert weights[(1, 3)] == pytest.approx(1 / 2)  # a-c
    assert (1, 1) not in weights and not any(row == 4 for row, _ in weights)  # never itself; d has no ratings
    assert table.neighbours[0].tolist() == [0, 0, 0]


def test_ease_neighbours_keep_the_closed_form_weights_pointing_to_each_movie():
    catalog = np.array(["a", "b", "c"])
    table = ItemNeighbours.build(RATINGS, catalog, k=2, kind="ease")
    x = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]], np.float64)
    p = np.linalg.inv(x.T @ x + 200.0 * np.eye(3))
    b = -p / np.diag(p)
    for row in range(1, 4):
        for neighbour, weight in zip(table.neighbours[row], table.weights[row]):
            assert neighbour != row and weight == pytest.approx(b[neighbour - 1, row - 1], rel=1e-4)
    assert table.kind == "ease"
    assert ItemNeighbours.build(RATINGS, catalog, k=2).kind == "ease"  # auto, small catalog


def test_ease_over_the_rated_movies_keeps_the_whole_catalog_weights_and_leaves_unrated_movies_empty():
    data = load_data("synthetic:120x60x2500")
    ratings = data.interactions[~data.interactions["movie_id"].isin(["1", "2", "3"])]  # three movies nobody rated
    catalog = np.array(sorted(data.movies["movie_id"].astype(str)) + ["never-rated"])
    table = ItemNeighbours.build(ratings, catalog, k=200, kind="ease")
    assert table.ease_movies == 57 and table.describe() == "EASE over the 57 rated movies"
    # The whole catalog's closed form: an unrated movie's row and column are lambda I, so B is unchanged.
    x = np.zeros((120, len(catalog)))
    x[pd.factorize(ratings["user_id"])[0], pd.Index(catalog).get_indexer(ratings["movie_id"])] = 1.0
    p = np.linalg.inv(x.T @ x + 200.0 * np.eye(len(catalog)))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    for row in range(1, len(catalog) + 1):
        kept = table.neighbours[row] > 0
        expected = b[:, row - 1]
        if catalog[row - 1] in ("1", "2", "3", "never-rated"):
            assert not kept.any()  # no weights to it, and none from it below
        else:
            assert set(table.neighbours[row][kept] - 1) == set(np.flatnonzero(np.abs(expected) > 1e-9))
            np.testing.assert_allclose(table.weights[row][kept], expected[table.neighbours[row][kept] - 1], rtol=2e-3,
                                       atol=1e-7)


def test_past_the_ease_limit_the_most_rated_movies_get_ease_and_the_rest_itemknn():
    data = load_data("synthetic:120x60x2500")
    catalog = np.array(sorted(data.movies["movie_id"].astype(str)))
    counts = data.interactions.drop_duplicates(["user_id", "movie_id"])["movie_id"].value_counts()
    table = ItemNeighbours.build(data.interactions, catalog, k=100, max_ease=20)
    assert (table.kind, table.ease_movies, table.cosine_movies) == ("ease+cosine", 20, 40)
    assert table.cutoff_ratings == counts.iloc[19]
    assert f"20 most-rated movies (those with at least {counts.iloc[19]} training ratings)" in table.describe()
    ease = ItemNeighbours.build(data.interactions[data.interactions["movie_id"].isin(counts.index[:20])], catalog,
                                k=100, kind="ease")
    cosine = ItemNeighbours.build(data.interactions, catalog, k=100, kind="cosine")
    for movie in catalog:
        row = int(np.flatnonzero(catalog == movie)[0]) + 1
        source = ease if movie in set(counts.index[:20]) else cosine
        np.testing.assert_array_equal(table.neighbours[row], source.neighbours[row])
        np.testing.assert_allclose(table.weights[row], source.weights[row], rtol=1e-5)


def test_user_scores_are_ease_own_scores_where_the_matrix_is_kept_and_the_kept_weights_sums_elsewhere():
    data = load_data("synthetic:120x60x2500")
    catalog = np.array(sorted(data.movies["movie_id"].astype(str)))
    rated = np.random.default_rng(5).random((7, len(catalog) + 1)) < 0.2
    rated[:, 0] = False  # the unknown movie is never rated
    history = sparse.csr_matrix(rated, dtype=np.float32)
    x = np.zeros((120, len(catalog)))
    x[pd.factorize(data.interactions["user_id"])[0], pd.Index(catalog).get_indexer(data.interactions["movie_id"])] = 1.0
    p = np.linalg.inv(x.T @ x + 200.0 * np.eye(len(catalog)))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    full = ItemNeighbours.build(data.interactions, catalog, k=5, kind="ease", keep_ease=True)
    scores = full.user_scores(history)
    assert scores.shape == (7, len(catalog) + 1) and not scores[:, 0].any()
    np.testing.assert_allclose(scores[:, 1:], history[:, 1:].toarray() @ b, rtol=1e-3, atol=1e-5)
    # Without the matrix: the sums of each movie's 5 kept weights, which are not the whole score.
    kept = ItemNeighbours.build(data.interactions, catalog, k=5, kind="ease")
    assert kept.ease_matrix is None
    expected = [[sum(w for n, w in zip(kept.neighbours[row], kept.weights[row]) if n and history[user, n])
                 for row in range(len(catalog) + 1)] for user in range(7)]
    np.testing.assert_allclose(kept.user_scores(history), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(kept.user_scores(history), scores, atol=1e-3)

@pytest.fixture(scope="module")
def ranker():
    data = load_data("synthetic:150x80x3000")
    split = split_ratings(data, SplitConfig(seed=4))
    prepared = prepare(data, split.train, 0.1, 4)
    rating_model = RatingModel(prepared, RatingConfig())
    embeddings = np.random.default_rng(0).normal(size=(len(prepared.movies.movie_ids), 8)).astype(np.float32)
    # Plain EASE: the tests below compare the ranker's item-item scores with EASE computed independently.
    config = RankerConfig(neighbours=16, sessions="off")
    return prepared, ListRanker(rating_model, prepared, embeddings, scale=5.0, config=config)


def test_item_item_score_is_the_sum_of_the_kept_weights_from_the_history(ranker):
    prepared, model = ranker
    user = prepared.vocab.user_ids[3]
    catalog = list(prepared.movies.movie_ids)
    history = set(prepared.train.loc[prepared.train["user_id"] == user, "movie_id"])
    candidates = [m for m in catalog if m not in history][:20]
    rows = np.array([catalog.index(m) + 1 for m in candidates])
    got = model.neighbour_scores(model.user_lookup(tf.constant([user])), tf.constant(rows[None, :]))[0].numpy()
    neighbours, weights = model.neighbours.numpy(), model.neighbour_weights.numpy()
    rated = {catalog.index(h) + 1 for h in history}
    expected = [sum(w for n, w in zip(neighbours[row], weights[row]) if n in rated) for row in rows]
    assert any(expected)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    history_rows, contributions = model.contributions(tf.constant([user] * 3), tf.constant(candidates[:3]))
    np.testing.assert_allclose(contributions.to_tensor().numpy().sum(axis=1), expected[:3], atol=1e-5)
    assert sorted(history_rows[0].numpy().tolist()) == sorted(catalog.index(h) + 1 for h in history)


def test_an_untrained_ranker_keeps_retrieval_order_and_never_ranks_empty_slots(ranker):
    prepared, model = ranker
    users = tf.constant(prepared.vocab.user_ids[:2])
    movie_ids = tf.constant([list(prepared.movies.movie_ids[:4])] * 2)
    retrieval = tf.constant([[0.9, 0.5, 0.2, -np.inf], [0.3, 0.8, 0.1, 0.0]], tf.float32)
    width = len(FEATURES)
    model.normalization.adapt(tf.zeros([4, width]) + tf.random.normal([4, width]))
    scores, predicted = model.score(users, movie_ids, retrieval)
    assert np.argsort(-scores.numpy()[0])[:3].tolist() == [0, 1, 2] and scores.numpy()[0, 3] == -np.inf
    assert np.argsort(-scores.numpy()[1]).tolist() == [1, 0, 2, 3]
    assert predicted.shape == (2, 4)


def test_the_ranker_starts_from_the_blend_of_its_two_sources_that_ranks_the_training_lists_best():
    column = FEATURES.index("item-item score as a z-score within the list")
    features = np.zeros((2, 4, len(FEATURES)), np.float32)
    features[:, :, 0] = [[4.0, 3.0, 2.0, 1.0]] * 2  # retrieval prefers the first movie
    features[:, :, column] = [[-1.0, -0.5, 0.5, 1.0]] * 2  # the item-item model the last
    valid = np.ones((2, 4), bool)
    relevant = np.ones(2, int)
    weight, found = choose_item_weight(features, valid, np.array([[0, 0, 0, 1.0]] * 2), relevant, k=1)
    # 4 is the smallest weight tried that puts it first (at 2 it ties with the third, which comes first).
    assert found[0.0] == 0.0 and found[weight] == 1.0 and weight == 4.0
    weight, found = choose_item_weight(features, valid, np.array([[1.0, 0, 0, 0]] * 2), relevant, k=1)
    assert weight == 0.0 and found[0.0] == 1.0


def test_the_start_is_scaled_to_the_softmax_temperature_that_fits_the_training_lists_best():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 12)).astype(np.float32)
    valid = np.ones(base.shape, bool)
    valid[:, -2:] = False  # empty slots take no share
    labels = np.zeros(base.shape, np.float32)
    labels[np.arange(40), np.argmax(base + rng.normal(scale=1.5, size=base.shape) - 9 * ~valid, axis=1)] = 1.0
    scale = calibrate_base_scale(base, valid, labels)
    best = list_cross_entropy(scale * base, valid, labels)
    assert best < list_cross_entropy(0.8 * scale * base, valid, labels)
    assert best < list_cross_entropy(1.25 * scale * base, valid, labels)
    # An overconfident start (the same order, ten times sharper) is scaled down ten times more.
    assert calibrate_base_scale(10 * base, valid, labels) == pytest.approx(scale / 10, rel=0.01)


def test_a_ranker_scores_its_scaled_start_until_trained(ranker):
    prepared, model = ranker
    column = FEATURES.index("item-item score as a z-score within the list")
    features = np.random.default_rng(1).normal(size=(3, 5, len(FEATURES))).astype(np.float32)
    valid = np.ones((3, 5), bool)
    model.normalization.adapt(features.reshape(-1, len(FEATURES)))
    model.item_weight.assign(2.0)
    model.base_scale.assign(0.25)
    try:
        scores = model.score_features(tf.constant(features), tf.constant(valid)).numpy()
    finally:  # the module's other tests share the fixture's untrained ranker
        model.item_weight.assign(0.0)
        model.base_scale.assign(1.0)
    np.testing.assert_allclose(scores, 0.25 * (features[..., 0] + 2.0 * features[..., column]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores, 0.25 * base_scores(features, 2.0), rtol=1e-5, atol=1e-5)


def test_both_lookups_of_the_item_item_score_agree(ranker, monkeypatch):
    import tfrs_pipeline.ranking.list_ranker as list_ranking

    prepared, model = ranker
    users = model.user_lookup(tf.constant(prepared.vocab.user_ids[:6]))
    rows = tf.constant(np.arange(1, 31).reshape(6, 5))
    dense = model.neighbour_scores(users, rows).numpy()
    monkeypatch.setattr(list_ranking, "_DENSE_LOOKUP_LIMIT", 0)
    np.testing.assert_array_equal(model.neighbour_scores(users, rows).numpy(), dense)
    assert np.abs(dense).sum() > 0


def ease_scores(prepared, ratings: pd.DataFrame, histories: pd.DataFrame) -> np.ndarray:
    """EASE (lambda 200) fitted on ``ratings``: x_u B of each user's ``histories`` [user rows, catalog rows],
    nothing for unknown users (row 0) and movies (column 0)."""
    users, catalog = pd.Index(prepared.vocab.user_ids), pd.Index(prepared.movies.movie_ids)

    def matrix(frame):
        x = np.zeros((len(users) + 1, len(catalog) + 1))
        x[users.get_indexer(frame["user_id"]) + 1, catalog.get_indexer(frame["movie_id"]) + 1] = 1.0
        return x

    x = matrix(ratings)
    rated = np.flatnonzero(x.sum(axis=0))
    p = np.linalg.inv(x[:, rated].T @ x[:, rated] + 200.0 * np.eye(len(rated)))
    b = np.zeros((len(catalog) + 1, len(catalog) + 1))
    b[np.ix_(rated, rated)] = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return matrix(histories) @ b


def test_stored_item_item_scores_are_ease_own_scores_of_each_users_history(ranker):
    prepared, model = ranker
    users = len(prepared.vocab.user_ids) + 1  # row 0: unknown users
    catalog = len(prepared.movies.movie_ids) + 1
    rng = np.random.default_rng(3)
    user_rows = rng.integers(0, users, 40)
    movie_rows = rng.integers(0, catalog, (40, 25))
    computed = model.neighbour_scores(tf.constant(user_rows), tf.constant(movie_rows)).numpy()  # 16 kept weights
    expected = ease_scores(prepared, prepared.train, prepared.train)[user_rows[:, None], movie_rows]
    try:
        assert not model.materialize_neighbour_scores(limit=users * catalog - 1)  # over the limit: nothing stored
        assert tf.shape(model.neighbour_table).numpy().tolist() == [0, 0]
        assert model.materialize_neighbour_scores(limit=users * catalog)
        assert tf.shape(model.neighbour_table).numpy().tolist() == [users, catalog]
        stored = model.neighbour_scores(tf.constant(user_rows), tf.constant(movie_rows)).numpy()
        np.testing.assert_allclose(stored, expected, rtol=1e-3, atol=1e-5)
        assert np.abs(stored).sum() > 0 and not np.allclose(stored, computed, atol=1e-3)
        # New histories make the stored scores stale: use_tables drops them.
        model.use_tables(prepared.movies, prepared.users)
        assert tf.shape(model.neighbour_table).numpy().tolist() == [0, 0]
    finally:
        model.use_tables(prepared.movies, prepared.users)


def test_refitting_the_item_item_model_on_more_ratings_stores_the_new_models_scores(ranker):
    prepared, model = ranker
    whole = pd.concat([prepared.train, prepared.validation], ignore_index=True)  # as the export's training side
    try:
        model.refit_item_item(whole)
        assert not model.scores_stored and model.materialize_neighbour_scores()
        # The fitting part's histories, scored by the model of every rating: the new weights, not the old.
        np.testing.assert_allclose(model.neighbour_table.numpy(), ease_scores(prepared, whole, prepared.train),
                                   rtol=1e-3, atol=1e-5)
        assert not np.allclose(model.neighbour_table.numpy(), ease_scores(prepared, prepared.train, prepared.train),
                               atol=1e-3)
    finally:
        model.refit_item_item(prepared.train)
        model.use_tables(prepared.movies, prepared.users)


def test_item_item_candidates_are_the_best_scored_movies_neither_listed_nor_seen():
    data = load_data("synthetic:150x80x3000")
    prepared = prepare(data, split_ratings(data, SplitConfig(seed=4)).train, 0.1, 4)
    catalog = np.asarray(prepared.movies.movie_ids).astype(str)
    vectors = np.random.default_rng(1).normal(size=(len(catalog), 8)).astype(np.float32)
    model = ListRanker(RatingModel(prepared, RatingConfig()), prepared, vectors, scale=5.0,
                       config=RankerConfig(neighbours=16, item_candidates=5), candidate_vectors=vectors)
    assert model.item_candidates == 5 and model.materialize_neighbour_scores()
    user = prepared.vocab.user_ids[3]
    seen = np.flatnonzero(np.isin(catalog, prepared.train.loc[prepared.train["user_id"] == user, "movie_id"]))
    listed = [m for m in catalog if m not in set(catalog[seen])][:3]
    queries = np.random.default_rng(2).normal(size=(2, 8)).astype(np.float32)
    exclude = tf.ragged.constant([seen.tolist(), []], dtype=tf.int64)
    ids, scores, retrieved = (t.numpy() for t in model.add_item_item_candidates(
        tf.constant([user, "stranger"]), tf.constant(queries), tf.constant([listed, listed]),
        tf.constant([[3.0, 2.0, 1.0]] * 2), exclude))
    assert ids.shape == (2, 8) and retrieved.tolist() == [[True] * 3 + [False] * 5] * 2
    item_item = model.neighbour_table.numpy()[prepared.vocab.user_ids.index(user) + 1, 1:]
    allowed = np.ones(len(catalog), bool)
    allowed[seen] = False
    allowed[np.isin(catalog, listed)] = False
    best = np.argsort(-np.where(allowed, item_item, -np.inf), kind="stable")[:5]
    assert set(ids[0, 3:].astype(str)) == set(catalog[best])
    for movie, score in zip(ids[0, 3:].astype(str), scores[0, 3:]):
        position = int(np.flatnonzero(catalog == movie)[0])
        # The retrieval score (query . candidate) where the item-item score is positive, else an empty slot.
        expected = queries[0] @ vectors[position] if item_item[position] > 0 else -np.inf
        assert score == pytest.approx(expected, rel=1e-5)
    assert np.isneginf(scores[1, 3:]).all()  # an unknown user has no history: nothing is added


def test_a_ranker_taking_a_refitted_retrieval_models_embeddings_equals_one_built_on_them():
    data = load_data("synthetic:150x80x3000")
    prepared = prepare(data, split_ratings(data, SplitConfig(seed=4)).train, 0.1, 4)
    rng = np.random.default_rng(3)
    first, second = (rng.normal(size=(len(prepared.movies.movie_ids), 8)).astype(np.float32) for _ in range(2))
    config = RankerConfig(neighbours=16, item_candidates=5)
    swapped = ListRanker(RatingModel(prepared, RatingConfig()), prepared, first[:, :4], scale=5.0, config=config,
                         candidate_vectors=first)
    swapped.use_retrieval(second[:, :4], second)
    swapped.use_tables(prepared.full_movies, prepared.full_users)
    built = ListRanker(RatingModel(prepared, RatingConfig()), prepared, second[:, :4], scale=5.0, config=config,
                       candidate_vectors=second)
    built.use_tables(prepared.full_movies, prepared.full_users)
    # The cosine features' directions, the user profiles on the tables in use, the candidates' vectors.
    for name in ("embeddings", "embedding_profile", "candidate_vectors", "history_rows"):
        np.testing.assert_allclose(getattr(swapped, name).numpy(), getattr(built, name).numpy(), atol=1e-6)
    assert not np.allclose(swapped.embedding_profile.numpy(), ListRanker(
        RatingModel(prepared, RatingConfig()), prepared, first[:, :4], scale=5.0, config=config,
        candidate_vectors=first).embedding_profile.numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="8 dimensions, the ranker's are 4"):
        swapped.use_retrieval(second, second)


def test_a_ranker_given_the_item_item_model_built_before_training_scores_as_one_that_builds_it():
    data = load_data("synthetic:150x80x3000")
    prepared = prepare(data, split_ratings(data, SplitConfig(seed=4)).train, 0.1, 4)
    vectors = np.random.default_rng(4).normal(size=(len(prepared.movies.movie_ids), 8)).astype(np.float32)
    config = RankerConfig(neighbours=16)
    table = build_item_table(prepared, config)  # what a training run does before the towers exist
    given = ListRanker(RatingModel(prepared, RatingConfig()), prepared, vectors, scale=5.0, config=config, item_table=table)
    own = ListRanker(RatingModel(prepared, RatingConfig()), prepared, vectors, scale=5.0, config=config)
    assert given._item_table is table and table.ease_matrix is not None  # kept: every user's scores fit
    assert given.materialize_neighbour_scores() and own.materialize_neighbour_scores()
    np.testing.assert_array_equal(given.neighbour_table.numpy(), own.neighbour_table.numpy())
    np.testing.assert_array_equal(given.neighbours.numpy(), own.neighbours.numpy())


def test_with_cross_fitted_lists_training_never_serves_a_ranker_worse_on_the_early_stopping_lists_than_its_start(
        ranker, monkeypatch):
    import tfrs_pipeline.ranking.list_ranker as list_ranking
    from tfrs_pipeline.ranking.cross_fit import CrossFitLists
    from tfrs_pipeline.ranking.list_ranker import CandidateLists, _ListValidation, train_list_ranker

    # The start is retrieval's own order (item-item weight 0), which ranks every hold-out list perfectly.
    monkeypatch.setattr(list_ranking, "choose_item_weight", lambda *args, **kwargs: (0.0, {0.0: 0.0}))
    # At its own scale: fitted to these lists, which it ranks perfectly, the start would be too sharp to move.
    monkeypatch.setattr(list_ranking, "calibrate_base_scale", lambda *args, **kwargs: 1.0)
    prepared = ranker[0]
    catalog = np.asarray(prepared.movies.movie_ids)
    users = np.asarray(prepared.vocab.user_ids)[:60]
    seen = prepared.train.groupby("user_id", observed=True)["movie_id"].agg(set)
    movies = np.array([[m for m in catalog if m not in seen.get(u, set())][:10] for u in users])
    scores = np.tile(np.arange(10, 0, -1, dtype=np.float32), (len(users), 1))
    first, last = np.zeros(movies.shape, np.float32), np.zeros(movies.shape, np.float32)
    first[:, 0], last[:, 9] = 1.0, 1.0
    holdout = CandidateLists(users, movies, scores, first, np.ones(len(users), int))  # users rated retrieval's first
    embeddings = np.random.default_rng(0).normal(size=(len(catalog), 8)).astype(np.float32)
    config = RankerConfig(neighbours=16, epochs=4, patience=4, learning_rate=0.1, item_candidates=0)

    def trained(cross_fitted):
        model = ListRanker(ranker[1].rating_model, prepared, embeddings, scale=5.0, config=config)
        if cross_fitted:  # the folds' lists say the opposite: their users rated retrieval's last movie
            features, valid = model.list_features(holdout)
            cross_fitted = CrossFitLists(np.tile(features, (3, 1, 1)), np.tile(valid, (3, 1)), np.tile(last, (3, 1)),
                                         {}, 0.0)
        result = train_list_ranker(model.rating_model, prepared, embeddings, holdout, 5.0, config, seed=7, model=model,
                                   cross_fitted=cross_fitted or None)
        stop = split_lists(holdout, 0.2, 7)[1]  # the lists train_list_ranker (seed 7) early-stops on
        return result, _ListValidation(stop, *model.list_features(stop)).ndcg(model)

    result, served = trained(cross_fitted=True)
    assert min(result.history["val_ndcg_at_10"]) < 1.0  # learning from the folds' lists made the hold-out's worse...
    assert result.best_epoch == 0 and served == 1.0  # ...so the start, which ranks them all perfectly, is served
    result, served = trained(cross_fitted=False)
    assert result.best_epoch >= 1  # without cross-fitted lists the start is not a candidate


def test_the_session_kernel_weights_each_users_pairs_of_ratings_by_how_far_apart_in_time_they_were():
    catalog = pd.Index(["a", "b", "c", "d"])
    ratings = pd.DataFrame({"user_id": ["1", "1", "1", "1", "2", "2"],
                            "movie_id": ["a", "b", "c", "a", "a", "b"],
                            # user 1: b a minute after a, c ten hours later, a again (counts at its first time)
                            "timestamp": [0, 60, 36_000, 36_060, 100, 400]})
    pairs = session_pairs(ratings, catalog, np.array([0, 1, 2]), minutes=5.0).toarray()
    expected_ab = np.exp(-60 / 300) + np.exp(-300 / 300)  # user 1, then user 2
    np.testing.assert_allclose(pairs, [[0, expected_ab, 0], [expected_ab, 0, 0], [0, 0, 0]], rtol=1e-6)


def test_with_the_session_kernel_a_movie_rated_in_the_same_sitting_is_the_nearer_neighbour():
    # Every user rated x, y and z; y minutes after x, z a year later.
    users = [str(u) for u in range(30)]
    ratings = pd.DataFrame({"user_id": np.repeat(users, 3), "movie_id": ["x", "y", "z"] * 30,
                            "timestamp": np.tile([0, 120, 31_536_000], 30) + np.repeat(np.arange(30) * 10**8, 3)})
    catalog = np.array(["x", "y", "z"])
    plain = ItemNeighbours.build(ratings, catalog, k=2, kind="ease")
    timed = ItemNeighbours.build(ratings, catalog, k=2, kind="ease", sessions=Sessions())

    def weight(table, source, target):
        row = list(catalog).index(target) + 1
        return dict(zip(table.neighbours[row], table.weights[row]))[list(catalog).index(source) + 1]

    assert weight(plain, "x", "y") == pytest.approx(weight(plain, "x", "z"))  # plain EASE cannot tell them apart
    assert weight(timed, "x", "y") > 2 * weight(timed, "x", "z")
    assert "session kernel 5 min" in timed.describe() and "session" not in plain.describe()
    np.testing.assert_allclose(ItemNeighbours.build(ratings, catalog, k=2, kind="ease", sessions=Sessions(weight=0.0,
                               regularization=200.0)).weights, plain.weights, rtol=1e-5)


def test_the_item_item_model_keeps_the_session_kernel_only_where_the_hold_out_ranks_better_with_it():
    data = load_data("synthetic:150x80x3000")
    prepared = prepare(data, split_ratings(data, SplitConfig(seed=4)).train, 0.1, 4)
    table = build_item_table(prepared, RankerConfig(neighbours=16), log=lambda line: None)
    choice = table.session_choice
    assert set(choice) == {"plain", "sessions"} and choice["plain"] > 0
    assert (table.sessions is not None) == (choice["sessions"] > choice["plain"])
    assert build_item_table(prepared, RankerConfig(neighbours=16, sessions="off")).sessions is None
    assert build_item_table(prepared, RankerConfig(neighbours=16, sessions="on")).sessions == Sessions()
    # Without timestamps there are no sittings to count: plain EASE, fitted once.
    untimed = dataclasses.replace(prepared, train=prepared.train.assign(timestamp=0))
    said = []
    table = build_item_table(untimed, RankerConfig(neighbours=16, sessions="on"), log=said.append)
    assert table.sessions is None and not table.session_choice and "every training timestamp is the same" in said[0]
