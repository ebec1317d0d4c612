"""The two-tower retrieval model: learns, leaves the target out of its history, handles unknown users."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrs_pipeline.baselines import index_recommender, most_popular_recommender
from tfrs_pipeline.config import RetrievalConfig, SplitConfig
from tfrs_pipeline.data import load_data
from tfrs_pipeline.features.dataset import make_dataset, prepare
from tfrs_pipeline.features.layers import HistoryPooling
from tfrs_pipeline.metrics import top_k_report
from tfrs_pipeline.retrieval.index import SeenMovies
from tfrs_pipeline.retrieval.model import RetrievalModel, refit_retrieval, train_retrieval


@pytest.fixture(scope="module")
def learned():
    data = load_data("synthetic:600x300x30000")
    from tfrs_pipeline.data.split import split_ratings

    split = split_ratings(data, SplitConfig(seed=1))
    prepared = prepare(data, split.train, 0.05, 1)
    result = train_retrieval(prepared, RetrievalConfig(epochs=6, batch_size=1024, patience=2), verbose=0)
    return data, split, prepared, result


@pytest.mark.slow
def test_retrieval_beats_most_popular_on_data_with_taste_signal(learned):
    data, split, prepared, result = learned
    seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, split.train)
    model = top_k_report(index_recommender(result.model.query_tower.serve, result.model.index, seen), split.test)
    popular = top_k_report(most_popular_recommender(prepared.whole_movies.movie_ids, prepared.whole_movies.train_count[1:], seen),
                             split.test)
    assert model["excluding_seen"]["recall_at_50"] > popular["excluding_seen"]["recall_at_10"]
    assert model["excluding_seen"]["ndcg_at_10"] > popular["excluding_seen"]["ndcg_at_10"]


@pytest.mark.slow
def test_factorized_metrics_are_computed_in_evaluation_only(learned):
    _, split, _, result = learned
    history = result.history
    assert "val_factorized_top_k/top_100_categorical_accuracy" in history
    assert history["factorized_top_k/top_100_categorical_accuracy"][-1] == 0.0  # not computed while training
    metrics = result.model.evaluate(make_dataset(split.test, 4096), return_dict=True, verbose=0)
    assert 0.0 < metrics["factorized_top_k/top_100_categorical_accuracy"] <= 1.0
    assert result.examples_per_second > 0 and "val_hit_rate_at_100" in history


@pytest.mark.slow
def test_refitting_trains_the_chosen_epochs_on_every_training_rating_the_hold_out_included(learned):
    _, split, prepared, result = learned
    refit = refit_retrieval(prepared, split.train, RetrievalConfig(epochs=6, batch_size=1024, patience=2),
                            result.best_epoch, verbose=0)
    assert len(refit.history["loss"]) == result.best_epoch and not any(k.startswith("val_") for k in refit.history)
    # The hold-out's ratings are training data now: with the same (fitting part's) histories as
    # queries, the refitted model finds the hold-out's movies more often than the model that never
    # trained on them (0.272 against 0.239 when written). The query is pooled from the history, not a
    # user's own embedding, so it cannot simply memorize each user's pairs.
    refit.model.query_tower.use_history(prepared.users)
    seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, prepared.fitting)

    def hold_out_recall(model):
        return top_k_report(index_recommender(model.query_tower, model.index, seen),
                              prepared.validation)["excluding_seen"]["recall_at_10"]

    assert hold_out_recall(refit.model) > 1.05 * hold_out_recall(result.model)


@pytest.mark.slow
def test_our_top_k_accuracy_matches_tfrs_factorized_top_k(learned):
    _, split, prepared, result = learned
    seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, split.train)
    ours = top_k_report(index_recommender(result.model.query_tower, result.model.index, seen), split.test)
    tfrs_metrics = result.model.evaluate(make_dataset(split.test, 4096), return_dict=True, verbose=0)
    for k in (10, 50, 100):
        assert ours["factorized_top_k"][f"top_{k}"] == pytest.approx(
            tfrs_metrics[f"factorized_top_k/top_{k}_categorical_accuracy"], abs=2e-3)


@pytest.mark.slow
def test_unknown_users_get_the_mean_user_query_and_are_flagged(learned):
    _, _, _, result = learned
    tower = result.model.query_tower
    ids = tf.constant(["1", "no-such-user"])
    assert tower.known(ids).numpy().tolist() == [True, False]
    served = tower.serve(ids).numpy()
    np.testing.assert_allclose(served[1], tower.fallback.numpy(), atol=1e-6)
    dim = tower.dim
    assert np.linalg.norm(served[1][:dim]) == pytest.approx(1.0, abs=1e-4)  # a direction, like every query
    assert served[1][dim:].tolist() == [1.0]  # the column that meets the movie bias


def test_history_pooling_leaves_the_target_out_only_when_it_is_in_the_history():
    from tfrs_pipeline.features.tables import UserTable

    users = UserTable(np.zeros(2, np.int32), np.zeros(2, np.int32), np.zeros(2, np.int32),
                      history_splits=np.array([0, 0, 3]), history_values=np.array([1, 2, 3]))
    pooling = HistoryPooling(users, num_movies=5, dim=4)
    table = pooling.embedding(tf.range(5)).numpy()
    full = pooling(tf.constant([1]))[0].numpy()
    np.testing.assert_allclose(full, table[[1, 2, 3]].mean(axis=0), atol=1e-6)
    left_out = pooling(tf.constant([1]), tf.constant([2]))[0].numpy()
    np.testing.assert_allclose(left_out, table[[1, 3]].mean(axis=0), atol=1e-6)
    not_member = pooling(tf.constant([1]), tf.constant([4]))[0].numpy()
    np.testing.assert_allclose(not_member, full, atol=1e-6)
    np.testing.assert_allclose(pooling(tf.constant([0]))[0].numpy(), np.zeros(4), atol=1e-6)  # no history


def test_history_dropout_never_brings_the_left_out_movie_back():
    import itertools

    from tfrs_pipeline.features.tables import UserTable

    users = UserTable(np.zeros(2, np.int32), np.zeros(2, np.int32), np.zeros(2, np.int32),
                      history_splits=np.array([0, 0, 4]), history_values=np.array([1, 2, 3, 4]))
    pooling = HistoryPooling(users, num_movies=6, dim=3, dropout=0.5)
    table = pooling.embedding(tf.range(6)).numpy()
    others = [1, 3, 4]
    means = [np.zeros(3)] + [table[list(c)].mean(axis=0) for r in (1, 2, 3) for c in itertools.combinations(others, r)]
    tf.random.set_seed(0)
    for _ in range(20):
        got = pooling(tf.constant([1, 1]), tf.constant([2, 2]), training=True).numpy()
        for row in got:
            assert any(np.allclose(row, m, atol=1e-5) for m in means)
    np.testing.assert_allclose(pooling(tf.constant([1]), tf.constant([2]))[0].numpy(), table[others].mean(axis=0), atol=1e-6)


def test_sampled_history_pools_short_histories_exactly_and_long_ones_without_bias_or_the_left_out_movie():
    from tfrs_pipeline.features.tables import UserTable

    # User 1 rated 3 movies (under the sample of 4), user 2 rated 12; user 0 none.
    users = UserTable(np.zeros(3, np.int32), np.zeros(3, np.int32), np.zeros(3, np.int32),
                      history_splits=np.array([0, 0, 3, 15]), history_values=np.r_[[1, 2, 3], np.arange(1, 13)])
    pooling = HistoryPooling(users, num_movies=13, dim=4, sample=4)
    table = pooling.embedding(tf.range(13)).numpy()
    tf.random.set_seed(0)
    short = pooling(tf.constant([1]), tf.constant([2]), training=True)[0].numpy()
    np.testing.assert_allclose(short, table[[1, 3]].mean(axis=0), atol=1e-6)
    # A long history's draws differ step to step; their average is the whole history's mean, the
    # left-out movie excepted; evaluation pools every movie.
    target = 5
    # One draw per call (a batch pools each distinct user once), traced as training runs it.
    draw = tf.function(lambda users, left_out: pooling(users, left_out, training=True))
    draws = np.concatenate([draw(tf.constant([2]), tf.constant([target])).numpy() for _ in range(300)])
    assert np.unique(draws.round(6), axis=0).shape[0] > 100
    others = [m for m in range(1, 13) if m != target]
    np.testing.assert_allclose(draws.mean(axis=0), table[others].mean(axis=0), atol=0.01)
    np.testing.assert_allclose(pooling(tf.constant([2]), tf.constant([target]))[0].numpy(), table[others].mean(axis=0),
                               atol=1e-6)
    # Every draw is a mean of movies other than the target: with the target's vector huge, any copy shows.
    pooling.embedding.embeddings.assign(tf.tensor_scatter_nd_update(pooling.embedding.embeddings, [[target]], [[1e4] * 4]))
    for _ in range(50):
        assert np.abs(draw(tf.constant([2, 1, 2]), tf.constant([target, 1, target])).numpy()).max() < 1.0
    np.testing.assert_allclose(pooling(tf.constant([0, 0]), tf.constant([1, 3]), training=True).numpy(), 0.0)


def test_history_pooling_of_users_without_history_is_zero_even_with_a_left_out_movie():
    from tfrs_pipeline.features.tables import UserTable

    users = UserTable(np.zeros(3, np.int32), np.zeros(3, np.int32), np.zeros(3, np.int32),
                      history_splits=np.array([0, 0, 2, 2]), history_values=np.array([1, 2]))
    pooling = HistoryPooling(users, num_movies=4, dim=3, dropout=0.5)
    for training in (False, True):
        only_empty = pooling(tf.constant([0, 2]), tf.constant([1, 3]), training=training).numpy()
        np.testing.assert_allclose(only_empty, np.zeros((2, 3)), atol=1e-7)
        mixed = pooling(tf.constant([0, 1]), tf.constant([1, 1]), training=training).numpy()
        assert np.isfinite(mixed).all()


def test_histories_cut_short_in_training_pool_one_to_short_movies_of_their_own_movies():
    from tfrs_pipeline.features.tables import UserTable

    # User 1 rated movies 1..40 (a long history), user 2 rated 3 of them.
    users = UserTable(np.zeros(3, np.int32), np.zeros(3, np.int32), np.zeros(3, np.int32),
                      history_splits=np.array([0, 0, 40, 43]), history_values=np.r_[np.arange(1, 41), [1, 2, 3]])
    pooling = HistoryPooling(users, num_movies=41, dim=4, dropout=0.5, short_movies=5)
    tf.random.set_seed(0)
    counts = np.concatenate([pooling(tf.constant([1, 2]), training=True, with_counts=True, cut=True)[1].numpy()[None]
                             for _ in range(200)])
    assert counts[:, 0].max() <= 12 and counts[:, 0].mean() < 4.5  # about 1 to 5 of 40, not half of them
    assert counts[:, 1].max() <= 3
    # Uncut, training drops about half; evaluation and serving pool every movie.
    assert pooling(tf.constant([1]), training=True, with_counts=True)[1].numpy()[0] > 10
    assert pooling(tf.constant([1]), with_counts=True, cut=True)[1].numpy().tolist() == [40.0]


def test_short_histories_get_their_own_query_and_a_visitor_with_a_known_users_history_gets_the_same():
    from tfrs_pipeline.retrieval.towers import QueryTower

    data = load_data("synthetic:60x40x700")
    prepared = prepare(data, data.interactions, 0.0, 1)
    splits, values = prepared.users.history_splits, prepared.users.history_values
    lengths = np.diff(splits)[1:]  # vocabulary row 0 is the unknown user
    limit = int(lengths.min())  # the shortest histories are short ones
    tower = QueryTower(prepared.vocab, prepared.users, 8, user_features=False, bias_column=True, short_history=limit,
                       user_embedding=False)
    tower.short_bias.assign(3.0)
    user_ids = np.asarray(prepared.vocab.user_ids)
    short, long = user_ids[np.flatnonzero(lengths <= limit)[0]], user_ids[np.flatnonzero(lengths > limit)[0]]
    for user in (short, long):
        row = prepared.vocab.user_ids.index(user) + 1
        history = tf.ragged.constant([values[splits[row] : splits[row + 1]].tolist()], dtype=tf.int64)
        known = tower(tf.constant([user])).numpy()
        np.testing.assert_allclose(tower.query(tf.constant([""]), history).numpy(), known, atol=1e-6)
        # The popularity bias's weight: the short-history query's own (3 here), 1 for a longer history.
        assert known[0, -1] == pytest.approx(3.0 if user == short else 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("negatives", ["in-batch", "catalog"])
@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_the_short_history_query_learns_from_cut_histories(negatives, weight):
    from tfrs_pipeline.data.split import split_ratings

    # Every user rated 50 movies and none is dropped: only a history cut short is a short one.
    data = load_data("synthetic:100x100x5000")
    prepared = prepare(data, split_ratings(data, SplitConfig(seed=1)).train, 0.05, 1)
    config = RetrievalConfig(epochs=2, batch_size=512, short_history=10, short_history_weight=weight,
                             history_dropout=0.0, negatives=negatives, refit=False)
    tower = train_retrieval(prepared, config, verbose=0).model.query_tower
    # Only a query from a short history reads this weight: it moves when the cut histories' loss counts.
    assert (abs(float(tower.short_bias.numpy()) - 1.0) > 1e-4) == (weight > 0)


@pytest.mark.parametrize("temperature", [None, 0.2])
@pytest.mark.parametrize("remove_accidental_hits", [True, False])
@pytest.mark.parametrize("logq", [True, False])
def test_in_batch_loss_over_distinct_movies_equals_the_tfrs_task_loss_and_gradients(temperature, remove_accidental_hits,
                                                                                     logq):
    import tensorflow_recommenders as tfrs

    from tfrs_pipeline.retrieval.model import Retrieval

    rng = np.random.default_rng(0)
    movies = tf.constant(rng.integers(0, 20, 64))  # 64 ratings of at most 20 movies: many repeats
    table = tf.constant(rng.normal(size=(20, 8)), tf.float32)
    query = tf.constant(rng.normal(size=(64, 8)), tf.float32)
    probability = tf.constant(rng.uniform(1e-3, 0.2, 20), tf.float32)
    reference = tfrs.tasks.Retrieval(temperature=temperature, remove_accidental_hits=remove_accidental_hits)
    ours = Retrieval(temperature=temperature, remove_accidental_hits=remove_accidental_hits)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([query, table])
        extra = {"candidate_ids": movies} if remove_accidental_hits else {}
        if logq:
            extra["candidate_sampling_probability"] = tf.gather(probability, movies)
        expected = reference(query, tf.gather(table, movies), compute_metrics=False, **extra)
        distinct, positive = tf.unique(movies)
        got = ours.in_batch_loss(query, tf.gather(table, distinct), positive,
                                 tf.gather(probability, distinct) if logq else None)
    assert int(tf.size(distinct)) < 64
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5)
    for a, b in zip(tape.gradient(got, [query, table]), tape.gradient(expected, [query, table])):
        np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy(), atol=1e-4)


def test_training_history_pooling_hands_the_optimizer_one_gradient_row_per_distinct_movie():
    from tfrs_pipeline.features.tables import UserTable

    # Three users whose histories share movies; no sampling, no dropout: the mean is exact.
    histories = [[1, 2, 3], [2, 3, 4, 5], [1, 5]]
    users = UserTable(np.zeros(4, np.int32), np.zeros(4, np.int32), np.zeros(4, np.int32),
                      history_splits=np.r_[0, 0, np.cumsum([len(h) for h in histories])],
                      history_values=np.concatenate(histories))
    pooling = HistoryPooling(users, num_movies=6, dim=3)
    user_rows = tf.constant([1, 2, 2, 3, 1])
    weights = tf.constant(np.random.default_rng(0).normal(size=(5, 3)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(pooling(user_rows, training=True) * weights)
    gradient = tape.gradient(loss, pooling.embedding.embeddings)
    assert isinstance(gradient, tf.IndexedSlices)
    rows = gradient.indices.numpy()
    assert len(rows) == len(set(rows))  # nothing left for the optimizer to de-duplicate
    # The gradient of a mean: each user's output weight, shared by the movies of their history.
    expected = np.zeros((6, 3))
    for row, weight in zip(user_rows.numpy(), weights.numpy()):
        for movie in histories[row - 1]:
            expected[movie] += weight / len(histories[row - 1])
    np.testing.assert_allclose(tf.convert_to_tensor(gradient).numpy(), expected, atol=1e-5)


@pytest.mark.slow
def test_several_steps_per_call_train_the_same_model_from_one_trace_of_the_step(monkeypatch):
    data = load_data("synthetic:200x100x6000")
    from tfrs_pipeline.data.split import split_ratings

    split = split_ratings(data, SplitConfig(seed=1))
    prepared = prepare(data, split.train, 0.05, 1)
    traced = []
    loss = RetrievalModel._in_batch_loss

    def counted(self, *args):
        traced.append(1)  # Python runs only while TensorFlow traces the training step
        return loss(self, *args)

    monkeypatch.setattr(RetrievalModel, "_in_batch_loss", counted)
    runs, traces = {}, {}
    for steps in (1, 16):
        traced.clear()
        config = RetrievalConfig(epochs=3, batch_size=64, patience=3, steps_per_execution=steps)
        runs[steps] = train_retrieval(prepared, config, verbose=0)
        traces[steps] = len(traced)
    # 72 batches an epoch, 216 planned: enough for the multi-step loop to pay, so it is used
    assert int(runs[16].model._steps_per_execution.numpy()) == 16
    assert int(runs[1].model._steps_per_execution.numpy()) == 1
    # Keras's loop runs its body twice while tracing; the step inside is traced no more than alone
    assert traces[16] == traces[1] >= 1
    np.testing.assert_allclose(runs[16].history["loss"], runs[1].history["loss"], rtol=1e-4)
    np.testing.assert_allclose(runs[16].history["val_hit_rate_at_100"], runs[1].history["val_hit_rate_at_100"], atol=1e-6)
