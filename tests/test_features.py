"""Vocabularies, feature tables and tf.data input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrs_pipeline.config import SplitConfig
from tfrs_pipeline.data import load_data
from tfrs_pipeline.data.split import split_ratings
from tfrs_pipeline.features.dataset import CORE_FEATURES, SIDE_FEATURES, make_dataset, shuffled_row_batches
from tfrs_pipeline.features.tables import MovieTable, UserTable
from tfrs_pipeline.features.vocabulary import Vocabularies
from tfrs_pipeline.model_dir import ModelDir


@pytest.fixture(scope="module")
def prepared():
    data = load_data("synthetic:200x120x4000")
    split = split_ratings(data, SplitConfig(kind="temporal", test_fraction=0.3))
    vocab = Vocabularies.from_training(split.train, data)
    return data, split, vocab


def test_vocabularies_come_from_training_data_only(prepared, tmp_path):
    data, split, vocab = prepared
    assert set(vocab.user_ids) == set(split.train["user_id"])
    assert set(vocab.movie_ids) == set(split.train["movie_id"])
    assert "Drama" in vocab.genres
    model_dir = ModelDir.create(tmp_path)
    model_dir.write_vocabularies(vars(vocab))
    assert Vocabularies(**{name: model_dir.read_vocabulary(name) for name in vars(vocab)}) == vocab


def test_movie_table_covers_cold_movies_with_features(prepared):
    data, split, vocab = prepared
    movies = MovieTable.build(data, split.train, vocab)
    assert len(movies.movie_ids) == len(data.movies) and movies.genres.shape[0] == len(data.movies) + 1
    cold = set(data.movies["movie_id"]) - set(vocab.movie_ids)
    row = list(movies.movie_ids).index(sorted(cold)[0]) + 1 if cold else 1
    assert movies.genres[row].sum() >= 1 and movies.year_bucket[row] > 0
    assert movies.train_count[row] == (0 if cold else movies.train_count[row])


def test_user_history_lists_each_users_training_movies(prepared):
    data, split, vocab = prepared
    users = UserTable.build(data, split.train, vocab)
    history = users.history()
    user = vocab.user_ids[0]
    expected = {vocab.movie_ids.index(m) + 1 for m in split.train.loc[split.train.user_id == user, "movie_id"]}
    assert set(history[1].numpy().tolist()) == expected
    assert users.age_bucket[1:].min() >= 1


def test_dataset_batches_have_fixed_feature_names_and_cover_every_rating(prepared):
    data, split, vocab = prepared
    movies = MovieTable.build(data, split.train, vocab)
    users = UserTable.build(data, split.train, vocab)
    batches = list(make_dataset(split.train, 512, shuffle=True, seed=1, movies=movies, users=users, vocab=vocab))
    assert set(batches[0]) == set(CORE_FEATURES) | set(SIDE_FEATURES)
    occupations = dict(zip(data.users.user_id, data.users.occupation))
    first_user = batches[0]["user_id"].numpy()[0].decode()
    assert vocab.occupations[int(batches[0]["user_occupation"].numpy()[0]) - 1] == occupations[first_user]
    seen = {(u, m) for b in batches for u, m in zip(b["user_id"].numpy(), b["movie_id"].numpy())}
    assert len(seen) == len(split.train)
    titles = dict(zip(data.movies["movie_id"], data.movies["title"]))
    first = batches[0]
    assert first["movie_title"].numpy()[0].decode() == titles[first["movie_id"].numpy()[0].decode()]


def test_shuffling_changes_order_between_epochs_but_not_between_runs(prepared):
    _, split, _ = prepared
    dataset = make_dataset(split.train, 256, shuffle=True, seed=3)
    epoch_1 = next(iter(dataset))["movie_id"].numpy()
    epoch_2 = next(iter(dataset))["movie_id"].numpy()
    again = next(iter(make_dataset(split.train, 256, shuffle=True, seed=3)))["movie_id"].numpy()
    assert not np.array_equal(epoch_1, epoch_2) or len(split.train) <= 256
    assert np.array_equal(epoch_1, again)


def test_every_shuffled_epoch_is_a_fresh_permutation_of_all_rows():
    dataset = shuffled_row_batches(1_001, 64, seed=5)
    assert int(dataset.cardinality()) == 16  # known ahead: progress bars and distribution need it
    epochs = [np.concatenate(list(dataset.as_numpy_iterator())) for _ in range(3)]
    for order in epochs:
        assert np.array_equal(np.sort(order), np.arange(1_001))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    # Well mixed: the first batch draws from the whole range, not from a neighbourhood of rows.
    assert np.ptp(epochs[0][:64]) > 800
    other_seed = np.concatenate(list(shuffled_row_batches(1_001, 64, seed=6).as_numpy_iterator()))
    assert not np.array_equal(other_seed, epochs[0])
    assert np.array_equal(np.concatenate(list(shuffled_row_batches(1_001, 64, seed=5).as_numpy_iterator())), epochs[0])
    assert [b.tolist() for b in shuffled_row_batches(1, 64, seed=5).as_numpy_iterator()] == [[0]]
    assert list(shuffled_row_batches(0, 64, seed=5).as_numpy_iterator()) == []


def test_histories_seen_in_training_and_validation_never_hold_a_validation_movie():
    from tfrs_pipeline.features.dataset import prepare

    data = load_data("synthetic:200x120x4000")
    split = split_ratings(data, SplitConfig(seed=5))
    prepared = prepare(data, split.train, 0.2, 5)
    users, movies = pd.Index(prepared.vocab.user_ids), pd.Index(prepared.vocab.movie_ids)

    def history(table, user):
        row = users.get_loc(user) + 1
        return set(table.history_values[table.history_splits[row] : table.history_splits[row + 1]])

    assert len(prepared.validation) > 0
    for user, movie in prepared.validation[["user_id", "movie_id"]].itertuples(index=False):
        row = movies.get_loc(movie) + 1
        assert row not in history(prepared.users, user)  # what training and validation see
        assert row in history(prepared.whole_users, user)  # what the exported model serves with
    counts = prepared.validation["movie_id"].value_counts()
    movie = counts.index[0]
    row = list(prepared.movies.movie_ids).index(movie) + 1
    assert prepared.whole_movies.train_count[row] - prepared.movies.train_count[row] == counts.iloc[0]


def test_id_positions_match_string_lookup_for_categorical_and_plain_columns():
    import numpy as np
    import pandas as pd

    from tfrs_pipeline.ids import id_positions

    index = pd.Index(["10", "2", "7"])
    plain = pd.Series([7, 2, 99, 10, 7])
    categorical = plain.astype("category")
    expected = index.get_indexer(plain.astype(str))
    assert expected.tolist() == [2, 1, -1, 0, 2]
    np.testing.assert_array_equal(id_positions(index, plain), expected)
    np.testing.assert_array_equal(id_positions(index, categorical), expected)
    assert id_positions(index, pd.Series(["2", None], dtype="category")).tolist() == [1, -1]
