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
from tfrs_pipeline.ranking.calibration import calibrate_base_scale, choose_item_weight, list_cross_entropy
from tfrs_pipeline.ranking.candidate_lists import candidate_lists, history_rows, short_history_lists, split_lists
from tfrs_pipeline.ranking.item_scores import DenseItemItemScores, ItemItemScores
from tfrs_pipeline.ranking.list_ranker import FEATURES, ListRanker, base_scores
from tfrs_pipeline.ranking.neighbours import ItemNeighbours, Sessions, build_item_table, session_pairs
from tfrs_pipeline.ranking.rating import RatingModel
from tfrs_pipeline.retrieval.index import SeenMovies


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
    # a: users {1, 2}; b: {1, 2}; c: {2, 3}; d: nobody. weights[source row, target row].
    weights = table.weights.toarray()
    assert weights[2, 1] == pytest.approx(2 / 2)  # b -> a
    assert weights[3, 1] == pytest.approx(1 / 2)  # c -> a
    assert not np.diag(weights).any() and not weights[4].any() and not weights[:, 4].any()  # d has no ratings
    assert not weights[0].any() and not weights[:, 0].any()  # row 0: the unknown movie


def ease_closed_form(ratings: pd.DataFrame, catalog, users=None, regularization: float = 200.0) -> np.ndarray:
    """EASE's B over ``catalog`` (an unrated movie's row and column stay zero), by a plain matrix inverse."""
    catalog = pd.Index(catalog)
    users = pd.Index(pd.unique(ratings["user_id"])) if users is None else users
    x = np.zeros((len(users), len(catalog)))
    x[users.get_indexer(ratings["user_id"]), catalog.get_indexer(ratings["movie_id"])] = 1.0
    rated = np.flatnonzero(x.sum(axis=0))
    p = np.linalg.inv(x[:, rated].T @ x[:, rated] + regularization * np.eye(len(rated)))
    b = np.zeros((len(catalog), len(catalog)))
    b[np.ix_(rated, rated)] = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_weights_are_the_closed_form_where_k_keeps_them_all():
    catalog = np.array(["a", "b", "c"])
    table = ItemNeighbours.build(RATINGS, catalog, k=2, kind="ease")
    np.testing.assert_allclose(table.weights.toarray()[1:, 1:], ease_closed_form(RATINGS, catalog), rtol=1e-4, atol=1e-8)
    assert table.kind == "ease" and table.kept == 6 and table.ease_kept == table.ease_weights == 6
    assert ItemNeighbours.build(RATINGS, catalog, k=2).kind == "ease"  # auto, small catalog


def test_ease_over_the_rated_movies_keeps_the_whole_catalog_weights_and_leaves_unrated_movies_empty():
    data = load_data("synthetic:120x60x2500")
    ratings = data.interactions[~data.interactions["movie_id"].isin(["1", "2", "3"])]  # three movies nobody rated
    catalog = np.array(sorted(data.movies["movie_id"].astype(str)) + ["never-rated"])
    table = ItemNeighbours.build(ratings, catalog, k=200, kind="ease")
    assert table.ease_movies == 57 and table.describe().startswith("EASE over the 57 rated movies; all 3,192 of")
    # The whole catalog's closed form: an unrated movie's row and column are lambda I, so B is unchanged.
    weights = table.weights.toarray()[1:, 1:]
    np.testing.assert_allclose(weights, ease_closed_form(ratings, catalog), rtol=2e-3, atol=1e-7)
    for movie in ("1", "2", "3", "never-rated"):
        row = list(catalog).index(movie)
        assert not weights[row].any() and not weights[:, row].any()


def test_ease_keeps_its_k_per_movie_strongest_weights_of_the_whole_matrix():
    data = load_data("synthetic:120x60x2500")
    catalog = np.array(sorted(data.movies["movie_id"].astype(str)))
    table = ItemNeighbours.build(data.interactions, catalog, k=5, kind="ease", dense_cells=0)
    b = ease_closed_form(data.interactions, catalog)
    threshold = np.sort(np.abs(b).ravel())[-5 * 60]
    kept = table.weights.toarray()[1:, 1:]
    assert table.kept == 5 * 60 == table.ease_kept and table.ease_weights == 60 * 59
    # The strongest 300 of the matrix, whichever movies they point to: popular movies keep more.
    np.testing.assert_allclose(kept, np.where(np.abs(b) >= threshold, b, 0.0), rtol=2e-3, atol=1e-7)
    assert len(set(np.count_nonzero(kept, axis=0))) > 1
    assert "the strongest 300 of EASE's 3,540 weights (5 per movie on average) kept" in table.describe()
    # A cap on the weights in all lowers the count per movie to fit.
    capped = ItemNeighbours.build(data.interactions, catalog, k=5, kind="ease", max_weights=120, dense_cells=0)
    assert capped.per_movie == 2 and capped.kept == 120
    # A catalog whose rows x rows fit (DENSE_CELLS) keeps every weight, served as a dense matrix.
    whole = ItemNeighbours.build(data.interactions, catalog, k=5, kind="ease")
    assert whole.dense and whole.kept == 60 * 59 and "as a dense matrix" in whole.describe()
    np.testing.assert_allclose(whole.weights.toarray()[1:, 1:], b, rtol=2e-3, atol=1e-7)


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
    weights, ease_weights, cosine_weights = (t.weights.toarray() for t in (table, ease, cosine))
    for row, movie in enumerate(catalog, start=1):  # each movie's incoming weights, from one model or the other
        source = ease_weights if movie in set(counts.index[:20]) else cosine_weights
        np.testing.assert_allclose(weights[:, row], source[:, row], rtol=1e-5, atol=1e-8)


def test_user_scores_are_the_sums_of_the_kept_weights_from_the_rated_movies():
    data = load_data("synthetic:120x60x2500")
    catalog = np.array(sorted(data.movies["movie_id"].astype(str)))
    rated = np.random.default_rng(5).random((7, len(catalog) + 1)) < 0.2
    rated[:, 0] = False  # the unknown movie is never rated
    table = ItemNeighbours.build(data.interactions, catalog, k=5, kind="ease")
    scores = table.user_scores(sparse.csr_matrix(rated, dtype=np.float32))
    assert scores.shape == (7, len(catalog) + 1) and not scores[:, 0].any()
    np.testing.assert_allclose(scores, rated @ table.weights.toarray(), rtol=1e-5, atol=1e-6)


def test_the_exported_item_item_scores_are_the_kept_weights_sums_of_any_history_batch():
    data = load_data("synthetic:120x60x2500")
    catalog = np.array(sorted(data.movies["movie_id"].astype(str)))
    table = ItemNeighbours.build(data.interactions, catalog, k=5, kind="ease", dense_cells=0)
    rng = np.random.default_rng(6)
    histories = [sorted(rng.choice(np.arange(1, 61), rng.integers(0, 12), replace=False).tolist()) for _ in range(70)]
    rated = np.zeros((70, 61), np.float32)
    for user, rows in enumerate(histories):
        rated[user, rows] = 1.0
    ragged = tf.ragged.constant(histories, dtype=tf.int64, ragged_rank=1)
    movies = rng.integers(1, 61, 70)
    # The sparse form (70 histories: three steps of USERS_PER_STEP, and one empty history or more) and
    # the dense one, which small catalogs are served with (a product of dense rows from 8 histories
    # in a call, a sparse product below: both are checked).
    for scorer in (ItemItemScores(table.weights), DenseItemItemScores(table.weights)):
        np.testing.assert_allclose(scorer(ragged).numpy(), table.user_scores(rated), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(scorer(ragged[:3]).numpy(), table.user_scores(rated[:3]), rtol=1e-5, atol=1e-6)
        terms = scorer.contributions(ragged, tf.constant(movies))
        np.testing.assert_allclose(terms.to_tensor().numpy().sum(axis=1),
                                   table.user_scores(rated)[np.arange(70), movies], rtol=1e-5, atol=1e-6)
        assert terms.row_lengths().numpy().tolist() == [len(h) for h in histories]


@pytest.fixture(scope="module")
def ranker():
    data = load_data("synthetic:150x80x3000")
    split = split_ratings(data, SplitConfig(seed=4))
    prepared = prepare(data, split.train, 0.1, 4)
    rating_model = RatingModel(prepared, RatingConfig())
    embeddings = np.random.default_rng(0).normal(size=(len(prepared.movies.movie_ids), 8)).astype(np.float32)
    # Plain EASE: the tests below compare the ranker's item-item scores with EASE computed independently.
    config = RankerConfig(neighbours=16, sessions="off")
    return prepared, ListRanker(rating_model, prepared, embeddings, scale=5.0, config=config,
                                item_table=build_item_table(prepared, config))


def history_of(prepared, users) -> tf.RaggedTensor:
    """The users' fitting-part movies as catalog rows."""
    return history_rows(SeenMovies(prepared.vocab, prepared.movies.movie_ids, prepared.fitting), np.asarray(users))


def test_item_item_score_is_the_sum_of_the_kept_weights_from_the_history(ranker):
    prepared, model = ranker
    user = prepared.vocab.user_ids[3]
    catalog = list(prepared.movies.movie_ids)
    history = set(prepared.fitting.loc[prepared.fitting["user_id"] == user, "movie_id"])
    rows = history_of(prepared, [user])
    assert sorted(rows[0].numpy().tolist()) == sorted(catalog.index(h) + 1 for h in history)
    weights = model.item_table.weights.toarray()
    expected = weights[sorted(catalog.index(h) + 1 for h in history)].sum(axis=0)
    assert np.abs(expected).sum() > 0
    np.testing.assert_allclose(model.item_scores(rows)[0].numpy(), expected, atol=1e-5)
    candidates = [m for m in catalog if m not in history][:3]
    terms = model.contributions(tf.concat([rows] * 3, axis=0), tf.constant(candidates))
    np.testing.assert_allclose(terms.to_tensor().numpy().sum(axis=1), expected[[catalog.index(m) + 1 for m in candidates]],
                               atol=1e-5)


def test_an_untrained_ranker_keeps_retrieval_order_and_never_ranks_empty_slots(ranker):
    prepared, model = ranker
    history = history_of(prepared, prepared.vocab.user_ids[:2])
    movie_ids = tf.constant([list(prepared.movies.movie_ids[:4])] * 2)
    retrieval = tf.constant([[0.9, 0.5, 0.2, -np.inf], [0.3, 0.8, 0.1, 0.0]], tf.float32)
    width = len(FEATURES)
    model.head.normalization.adapt(tf.zeros([4, width]) + tf.random.normal([4, width]))
    scores = model.score(history, movie_ids, retrieval).numpy()
    assert np.argsort(-scores[0])[:3].tolist() == [0, 1, 2] and scores[0, 3] == -np.inf
    assert np.argsort(-scores[1]).tolist() == [1, 0, 2, 3]


def test_the_ranker_scores_a_history_whoever_brings_it(ranker):
    prepared, model = ranker
    users = prepared.vocab.user_ids[:3]
    history = history_of(prepared, users)
    movie_ids = tf.constant([list(prepared.movies.movie_ids[:6])] * 3)
    retrieval = tf.constant(np.random.default_rng(2).normal(size=(3, 6)), tf.float32)
    features, _ = model.features(history, movie_ids, retrieval)
    # The same rows in another order and with other user ids behind them: the same features, per row.
    again, _ = model.features(tf.gather(history, [2, 0, 1]), tf.gather(movie_ids, [2, 0, 1]), tf.gather(retrieval, [2, 0, 1]))
    np.testing.assert_allclose(again.numpy(), features.numpy()[[2, 0, 1]], rtol=1e-5, atol=1e-5)
    longer = tf.concat([history[0], [int(history[1][0])]], axis=0)[None, :]
    changed, _ = model.features(tf.RaggedTensor.from_tensor(longer), movie_ids[:1], retrieval[:1])
    assert not np.allclose(changed.numpy(), features.numpy()[:1])  # one more rated movie changes them


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
    head = model.head
    head.normalization.adapt(features.reshape(-1, len(FEATURES)))
    head.item_weight.assign(2.0)
    head.base_scale.assign(0.25)
    try:
        scores = head.score_features(tf.constant(features), tf.constant(valid)).numpy()
    finally:  # the module's other tests share the fixture's untrained ranker
        head.item_weight.assign(0.0)
        head.base_scale.assign(1.0)
    np.testing.assert_allclose(scores, 0.25 * (features[..., 0] + 2.0 * features[..., column]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores, 0.25 * base_scores(features, 2.0), rtol=1e-5, atol=1e-5)


def test_refitting_the_item_item_model_on_more_ratings_scores_with_the_new_models_weights(ranker):
    prepared, model = ranker
    whole = pd.concat([prepared.fitting, prepared.validation], ignore_index=True)  # as the export's training side
    history = history_of(prepared, prepared.vocab.user_ids[:5])
    before = model.item_scores(history).numpy()
    try:
        model.refit_item_item(whole)
        expected = ItemNeighbours.build(whole, prepared.movies.movie_ids, k=16, kind="auto", sessions=None)
        assert expected.dense == model.item_table.dense
        np.testing.assert_allclose(model.item_table.weights.toarray(), expected.weights.toarray(), rtol=1e-5, atol=1e-7)
        after = model.item_scores(history).numpy()
        assert not np.allclose(after, before, atol=1e-4)
    finally:
        model.refit_item_item(prepared.fitting)
    np.testing.assert_allclose(model.item_scores(history).numpy(), before, rtol=1e-5, atol=1e-6)


def test_item_item_candidates_are_the_best_scored_movies_neither_listed_nor_seen():
    data = load_data("synthetic:150x80x3000")
    prepared = prepare(data, split_ratings(data, SplitConfig(seed=4)).train, 0.1, 4)
    catalog = np.asarray(prepared.movies.movie_ids).astype(str)
    vectors = np.random.default_rng(1).normal(size=(len(catalog), 8)).astype(np.float32)
    config = RankerConfig(neighbours=16, item_candidates=5)
    model = ListRanker(RatingModel(prepared, RatingConfig()), prepared, vectors, scale=5.0, config=config,
                       candidate_vectors=vectors, item_table=build_item_table(prepared, config))
    assert model.item_candidates == 5
    user = prepared.vocab.user_ids[3]
    seen = np.flatnonzero(np.isin(catalog, prepared.fitting.loc[prepared.fitting["user_id"] == user, "movie_id"]))
    listed = [m for m in catalog if m not in set(catalog[seen])][:3]
    queries = np.random.default_rng(2).normal(size=(2, 8)).astype(np.float32)
    history = tf.ragged.constant([(seen + 1).tolist(), []], dtype=tf.int64)  # a user, and a visitor with nothing
    item_scores = model.item_scores(history)
    ids, scores, retrieved = (t.numpy() for t in model.add_item_item_candidates(
        item_scores, tf.constant(queries), tf.constant([listed, listed]), tf.constant([[3.0, 2.0, 1.0]] * 2),
        tf.ragged.constant([seen.tolist(), []], dtype=tf.int64)))
    assert ids.shape == (2, 8) and retrieved.tolist() == [[True] * 3 + [False] * 5] * 2
    item_item = item_scores.numpy()[0, 1:]
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
    assert np.isneginf(scores[1, 3:]).all()  # an empty history scores nothing: nothing is added


def test_a_ranker_taking_a_refitted_retrieval_models_embeddings_equals_one_built_on_them():
    data = load_data("synthetic:150x80x3000")
    prepared = prepare(data, split_ratings(data, SplitConfig(seed=4)).train, 0.1, 4)
    rng = np.random.default_rng(3)
    first, second = (rng.normal(size=(len(prepared.movies.movie_ids), 8)).astype(np.float32) for _ in range(2))
    config = RankerConfig(neighbours=16, item_candidates=5)
    rating_model = RatingModel(prepared, RatingConfig())
    table = build_item_table(prepared, config)
    swapped = ListRanker(rating_model, prepared, first[:, :4], scale=5.0, config=config, candidate_vectors=first,
                         item_table=table)
    swapped.use_retrieval(second[:, :4], second)
    swapped.use_tables(prepared.whole_movies)
    built = ListRanker(rating_model, prepared, second[:, :4], scale=5.0, config=config, candidate_vectors=second,
                       item_table=table)
    built.use_tables(prepared.whole_movies)
    for name in ("embeddings", "candidate_vectors", "popularity", "mean_rating"):
        np.testing.assert_allclose(getattr(swapped, name).numpy(), getattr(built, name).numpy(), atol=1e-6)
    history = history_of(prepared, prepared.vocab.user_ids[:4])
    movie_ids = tf.constant([list(prepared.movies.movie_ids[:6])] * 4)
    retrieval = tf.constant(rng.normal(size=(4, 6)), tf.float32)
    np.testing.assert_allclose(swapped.features(history, movie_ids, retrieval)[0].numpy(),
                               built.features(history, movie_ids, retrieval)[0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="8 dimensions, the ranker's are 4"):
        swapped.use_retrieval(second, second)


@pytest.mark.slow
def test_with_cross_fitted_lists_training_never_serves_a_ranker_worse_on_the_early_stopping_lists_than_its_start(
        ranker, monkeypatch):
    import tfrs_pipeline.ranking.ranker_training as list_ranking
    from tfrs_pipeline.ranking.candidate_lists import CandidateLists
    from tfrs_pipeline.ranking.cross_fit import CrossFitLists
    from tfrs_pipeline.ranking.ranker_training import _ListValidation, list_features, train_list_ranker

    # The start is retrieval's own order (item-item weight 0), which ranks every hold-out list perfectly.
    monkeypatch.setattr(list_ranking, "choose_item_weight", lambda *args, **kwargs: (0.0, {0.0: 0.0}))
    # At its own scale: fitted to these lists, which it ranks perfectly, the start would be too sharp to move.
    monkeypatch.setattr(list_ranking, "calibrate_base_scale", lambda *args, **kwargs: 1.0)
    prepared = ranker[0]
    catalog = np.asarray(prepared.movies.movie_ids)
    users = np.asarray(prepared.vocab.user_ids)[:60]
    seen = prepared.fitting.groupby("user_id", observed=True)["movie_id"].agg(set)
    movies = np.array([[m for m in catalog if m not in seen.get(u, set())][:10] for u in users])
    scores = np.tile(np.arange(10, 0, -1, dtype=np.float32), (len(users), 1))
    first, last = np.zeros(movies.shape, np.float32), np.zeros(movies.shape, np.float32)
    first[:, 0], last[:, 9] = 1.0, 1.0
    holdout = CandidateLists(users, movies, scores, first, np.ones(len(users), int))  # users rated retrieval's first
    embeddings = np.random.default_rng(0).normal(size=(len(catalog), 8)).astype(np.float32)
    config = RankerConfig(neighbours=16, epochs=4, patience=4, learning_rate=0.1, item_candidates=0)
    histories = SeenMovies(prepared.vocab, catalog, prepared.fitting)

    def trained(cross_fitted):
        model = ListRanker(ranker[1].rating_model, prepared, embeddings, scale=5.0, config=config,
                           item_table=ranker[1].item_table)
        if cross_fitted:  # the folds' lists say the opposite: their users rated retrieval's last movie
            features, valid = list_features(model, holdout, histories)
            cross_fitted = CrossFitLists(np.tile(features, (3, 1, 1)), np.tile(valid, (3, 1)), np.tile(last, (3, 1)),
                                         {}, 0.0)
        result = train_list_ranker(model, holdout, histories, config, seed=7, cross_fitted=cross_fitted or None)
        stop = split_lists(holdout, 0.2, 7)[1]  # the lists train_list_ranker (seed 7) early-stops on
        return result, _ListValidation(stop.labels, stop.relevant, *list_features(model, stop, histories)).ndcg(model)

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
        return table.weights[list(catalog).index(source) + 1, list(catalog).index(target) + 1]

    assert weight(plain, "x", "y") == pytest.approx(weight(plain, "x", "z"))  # plain EASE cannot tell them apart
    assert weight(timed, "x", "y") > 2 * weight(timed, "x", "z")
    assert "session kernel 5 min" in timed.describe() and "session" not in plain.describe()
    np.testing.assert_allclose(ItemNeighbours.build(ratings, catalog, k=2, kind="ease", sessions=Sessions(weight=0.0,
                               regularization=200.0)).weights.toarray(), plain.weights.toarray(), rtol=1e-5)


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
    untimed = dataclasses.replace(prepared, fitting=prepared.fitting.assign(timestamp=0))
    said = []
    table = build_item_table(untimed, RankerConfig(neighbours=16, sessions="on"), log=said.append)
    assert table.sessions is None and not table.session_choice and "every training timestamp is the same" in said[0]


def test_short_history_lists_are_made_from_a_few_of_each_users_movies_alone(ranker):
    prepared, model = ranker
    catalog = np.asarray(prepared.movies.movie_ids).astype(str)

    class Retriever:  # the first k catalog movies outside the history, best first
        def from_history(self, user_id, history, k):
            rows = []
            for positions in history.to_list():
                rows.append([m for i, m in enumerate(catalog) if i not in set(positions)][: int(k)])
            scores = np.tile(-np.arange(len(rows[0]), dtype=np.float32), (len(rows), 1))
            return tf.constant(rows), tf.constant(scores), tf.zeros([len(rows), 8])

    lists = short_history_lists(model, Retriever(), prepared, movies=3, num_candidates=20, draws=2)
    holdout_users = sorted(set(prepared.validation["user_id"].astype(str)))
    assert sorted(set(lists.user_ids)) == holdout_users and len(lists) <= 2 * len(holdout_users)
    first = {}
    for user, history, movies, labels in zip(lists.user_ids, lists.histories, lists.movie_ids, lists.labels):
        rated = prepared.fitting[prepared.fitting["user_id"].astype(str) == user].sort_values("timestamp", kind="stable")
        given = set(catalog[history - 1])  # catalog rows
        assert len(given) == min(3, rated["movie_id"].nunique()) and given <= set(rated["movie_id"].astype(str))
        first.setdefault(user, given)
        assert not given & set(movies[movies != ""])  # only those are excluded...
        held = set(prepared.validation.loc[prepared.validation["user_id"].astype(str) == user, "movie_id"].astype(str))
        assert [m in held for m in movies] == [bool(x) for x in labels]  # ...and the hold-out says what is relevant
    for user, given in first.items():  # each user's first list: their most recent movies
        rated = prepared.fitting[prepared.fitting["user_id"].astype(str) == user].sort_values("timestamp", kind="stable")
        assert given == set(rated["movie_id"].astype(str).tail(3))


def test_a_short_history_is_scored_by_the_short_history_head_a_long_one_by_the_other(ranker):
    prepared, model = ranker
    users = prepared.fitting["user_id"].astype(str).value_counts()
    long_user = users.index[0]
    history = history_of(prepared, [long_user])
    short = tf.RaggedTensor.from_tensor(history.to_tensor()[:, :3])
    movie_ids = tf.constant([list(prepared.movies.movie_ids[:6])])
    retrieval = tf.constant([[0.6, 0.5, 0.4, 0.3, 0.2, 0.1]], tf.float32)
    width = len(FEATURES)
    for head in (model.head, model.short_head):
        head.normalization.adapt(tf.random.normal([8, width]))
    model.short_head.base_scale.assign(3.0)  # tells the heads apart
    try:
        model.short_limit.assign(10.0)
        for rows, head in ((short, model.short_head), (history, model.head)):
            features, valid = model.features(rows, movie_ids, retrieval)
            np.testing.assert_allclose(model.score_features(features, valid).numpy(),
                                       head.score_features(features, valid).numpy(), rtol=1e-6)
        model.short_limit.assign(0.0)  # no short-history head trained: every history gets the other
        features, valid = model.features(short, movie_ids, retrieval)
        np.testing.assert_allclose(model.score_features(features, valid).numpy(),
                                   model.head.score_features(features, valid).numpy(), rtol=1e-6)
    finally:
        model.short_head.base_scale.assign(1.0)
        model.short_limit.assign(0.0)
