"""Splits: disjoint sides, the promised shapes, cold-start counts, reproducible records."""

from __future__ import annotations

import pytest

from tfrs_pipeline.config import SplitConfig
from tfrs_pipeline.data import load_data
from tfrs_pipeline.data.split import SplitRecord, hold_out, reproduce_split, split_ratings
from tfrs_pipeline.errors import DataError


@pytest.fixture(scope="module")
def data():
    return load_data("synthetic:300x150x6000")


def _pairs(frame):
    return set(zip(frame["user_id"], frame["movie_id"]))


@pytest.mark.parametrize("kind", ["random", "temporal", "leave-last-out"])
def test_no_rating_is_on_both_sides(data, kind):
    split = split_ratings(data, SplitConfig(kind=kind, test_fraction=0.25, leave_last=2))
    assert len(split.train) + len(split.test) == len(data.interactions)
    assert not _pairs(split.train) & _pairs(split.test)


def test_random_split_has_the_test_fraction_and_depends_on_seed(data):
    a = split_ratings(data, SplitConfig(kind="random", test_fraction=0.2, seed=1))
    b = split_ratings(data, SplitConfig(kind="random", test_fraction=0.2, seed=2))
    assert len(a.test) == 1200
    assert _pairs(a.test) != _pairs(b.test)


def test_temporal_split_puts_every_test_rating_after_every_training_rating(data):
    split = split_ratings(data, SplitConfig(kind="temporal", test_fraction=0.2))
    assert split.train["timestamp"].max() < split.test["timestamp"].min()
    assert 0.15 < len(split.test) / len(data.interactions) < 0.25


def test_leave_last_out_holds_out_each_users_latest_ratings(data):
    split = split_ratings(data, SplitConfig(kind="leave-last-out", leave_last=2))
    assert (split.test.groupby("user_id", observed=True).size() == 2).all()
    last_train = split.train.groupby("user_id", observed=True)["timestamp"].max()
    first_test = split.test.groupby("user_id", observed=True)["timestamp"].min()
    assert (last_train.reindex(first_test.index) <= first_test).all()


def test_describe_reports_cold_start_users_and_movies(data):
    split = split_ratings(data, SplitConfig(kind="temporal", test_fraction=0.3))
    text = split.describe()
    assert f"{split.cold_users:,} of" in text and "cold start" in text
    assert split.cold_users == len(set(split.test["user_id"]) - set(split.train["user_id"]))


def test_recorded_split_is_rebuilt_exactly_and_other_data_is_refused(data, tmp_path):
    split = split_ratings(data, SplitConfig(kind="random", seed=5))
    split.record.save(tmp_path / "split.json")
    record = SplitRecord.load(tmp_path / "split.json")
    again = reproduce_split(data, record)
    assert _pairs(again.test) == _pairs(split.test)
    with pytest.raises(DataError, match="not the data the model was trained on"):
        reproduce_split(load_data("synthetic:300x150x6000,seed=9"), record)


def test_temporal_split_without_timestamps_is_refused(tmp_path):
    (tmp_path / "r.csv").write_text("user_id,item_id,rating\na,1,4\nb,1,3\na,2,5\n")
    data = load_data(f"csv:{tmp_path / 'r.csv'}")
    with pytest.raises(DataError, match="needs timestamps"):
        split_ratings(data, SplitConfig(kind="temporal"))


def test_hold_out_is_disjoint_and_sized(data):
    kept, held = hold_out(data.interactions, 0.1, seed=3)
    assert len(held) == 600 and not _pairs(kept) & _pairs(held)
