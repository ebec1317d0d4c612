"""The rating model and the matrix-factorization baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrs_pipeline.baselines import BiasedMatrixFactorization, movie_mean
from tfrs_pipeline.config import RatingConfig, SplitConfig
from tfrs_pipeline.data import load_data
from tfrs_pipeline.data.split import split_ratings
from tfrs_pipeline.features.dataset import prepare
from tfrs_pipeline.metrics import rmse
from tfrs_pipeline.ranking.rating import predict_ratings, train_rating_model


@pytest.fixture(scope="module")
def data_split():
    data = load_data("synthetic:500x300x25000")
    return data, split_ratings(data, SplitConfig(seed=3))


@pytest.mark.slow
@pytest.mark.parametrize("cross", [False, True])
def test_the_rating_model_beats_the_global_mean_and_stays_on_the_scale(data_split, cross):
    data, split = data_split
    prepared = prepare(data, split.train, 0.05, 3)
    result = train_rating_model(prepared, RatingConfig(epochs=8, cross_layer=cross, batch_size=512), verbose=0)
    predicted = predict_ratings(result.model, split.test["user_id"], split.test["movie_id"])
    assert predicted.min() >= 1.0 and predicted.max() <= 5.0
    global_mean = rmse(np.full(len(split.test), split.train["rating"].mean()), split.test["rating"])
    assert rmse(predicted, split.test["rating"]) < global_mean - 0.05
    assert "val_root_mean_squared_error" in result.history


@pytest.mark.slow
def test_unknown_users_and_movies_get_a_prediction_not_an_error(data_split):
    data, split = data_split
    prepared = prepare(data, split.train, 0.05, 3)
    model = train_rating_model(prepared, RatingConfig(epochs=1), verbose=0).model
    predicted = predict_ratings(model, ["nobody", "1"], ["1", "no-such-movie"])
    assert np.isfinite(predicted).all() and ((predicted >= 1) & (predicted <= 5)).all()


def test_matrix_factorization_beats_movie_means(data_split):
    _, split = data_split
    mf = BiasedMatrixFactorization(factors=8, regularization=10.0, rating_scale=(1, 5)).fit(split.train)
    mf_rmse = rmse(mf.predict(split.test["user_id"], split.test["movie_id"]), split.test["rating"])
    assert mf_rmse < rmse(movie_mean(split.train, split.test["movie_id"]), split.test["rating"])
    assert np.isfinite(mf.predict(["nobody"], ["no-such-movie"])).all()


def test_the_rating_models_loss_is_the_mean_squared_error_of_its_predictions(data_split):
    import tensorflow as tf

    from tfrs_pipeline.features.dataset import make_dataset
    from tfrs_pipeline.ranking.rating import RatingModel

    data, split = data_split
    prepared = prepare(data, split.train, 0.05, 3)
    model = RatingModel(prepared, RatingConfig(dropout=0.0))
    batch = next(iter(make_dataset(split.test, 256)))
    predictions = model(batch, training=True).numpy()
    expected = np.mean((predictions - batch["user_rating"].numpy()) ** 2)
    assert float(model.compute_loss(batch, training=True)) == pytest.approx(expected, rel=1e-4)
    assert tf.shape(predictions)[0] == 256


def test_movie_means_are_shrunk_towards_the_global_mean_and_are_the_mean_for_unrated_movies():
    train = pd.DataFrame({"movie_id": pd.Categorical(["a", "a", "b"], categories=["a", "b", "c"]),
                          "rating": [4.0, 5.0, 1.0]})
    mean = 10.0 / 3.0
    expected = [(9.0 + 10 * mean) / 12, (1.0 + 10 * mean) / 11, mean, mean]  # c: a category nobody rated
    assert movie_mean(train, ["a", "b", "c", "x"]) == pytest.approx(expected)
    assert movie_mean(train.assign(movie_id=train["movie_id"].astype(str)), ["a", "b", "c", "x"]) == pytest.approx(expected)


def test_matrix_factorization_predicts_the_same_in_small_batches_and_keeps_biases_for_unknown_ids(data_split):
    _, split = data_split
    mf = BiasedMatrixFactorization(factors=4, iterations=2).fit(split.train)
    users = np.append(split.test["user_id"].astype(str).to_numpy()[:500], ["nobody", "nobody"])
    movies = np.append(split.test["movie_id"].astype(str).to_numpy()[:500], [str(split.train["movie_id"].iloc[0]), "nothing"])
    whole = mf.predict(users, movies)
    assert np.array_equal(mf.predict(users, movies, batch_size=7), whole)
    # An unknown user gets the global mean plus the movie's bias; unknown user and movie, the global mean.
    known_movie = mf.movies_.get_loc(movies[-2])
    assert whole[-2] == pytest.approx(np.clip(mf.mean_ + mf.q_[known_movie, -1], *mf.rating_scale))
    assert whole[-1] == pytest.approx(mf.mean_)
    assert len(mf.predict([], [])) == 0


@pytest.mark.slow
def test_the_stacked_factorization_is_served_exactly_and_lowers_the_hold_out_rmse(data_split):
    from tfrs_pipeline.ranking.rating import stack_matrix_factorization

    data, split = data_split
    prepared = prepare(data, split.train, 0.1, 3)
    config = RatingConfig(epochs=3, batch_size=512, mf_factors=8)
    model = train_rating_model(prepared, config, verbose=0).model
    users, movies = ["1", "2", "nobody", "3"], ["1", "no-such-movie", "5", "7"]
    network = predict_ratings(model, users, movies)
    # With weights (0, 1, 0) the model serves the factorization's prediction, unknown ids included.
    mf = BiasedMatrixFactorization(factors=8, regularization=15.0, rating_scale=(1, 5)).fit(prepared.fitting)
    model.use_matrix_factorization(mf, prepared.vocab, [0.0, 1.0, 0.0])
    np.testing.assert_allclose(predict_ratings(model, users, movies), mf.predict(users, movies), atol=1e-4)
    model.use_matrix_factorization(mf, prepared.vocab, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(predict_ratings(model, users, movies), network)

    record = stack_matrix_factorization(model, prepared, config)
    held = record["validation_rmse"]
    assert record["stacked"] and held["stacked"] < min(held["network"], held["matrix_factorization"])
    holdout = prepared.validation
    served = predict_ratings(model, holdout["user_id"], holdout["movie_id"])
    assert rmse(served, holdout["rating"]) == pytest.approx(held["stacked"], abs=1e-4)
    assert served.min() >= 1.0 and served.max() <= 5.0


@pytest.mark.slow
def test_nothing_is_stacked_without_ratings_or_a_hold_out(data_split):
    from tfrs_pipeline.ranking.rating import stack_matrix_factorization

    data, split = data_split
    prepared = prepare(data, split.train, 0.0, 3)
    model = train_rating_model(prepared, RatingConfig(epochs=1), verbose=0).model
    assert stack_matrix_factorization(model, prepared, RatingConfig()) is None
    assert model.stack_weights.numpy().tolist() == [1.0, 0.0, 0.0]
