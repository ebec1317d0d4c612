"""Train/test splits without leakage, recorded so a later evaluation reuses the same test set.

Examples:
    >>> from tfrs_pipeline.data import load_data
    >>> data = load_data("synthetic:200x100x4000")
    >>> split = split_ratings(data, SplitConfig(kind="random", test_fraction=0.2, seed=42))
    >>> len(split.train) + len(split.test) == len(data.interactions)
    True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tfrs_pipeline.config import SplitConfig
from tfrs_pipeline.data.schema import RatingsData
from tfrs_pipeline.errors import DataError


@dataclass
class SplitRecord:
    """What is needed to rebuild a split exactly, and to check it was rebuilt exactly."""

    kind: str
    test_fraction: float
    cutoff_timestamp: int
    leave_last: int
    seed: int
    data_source: str
    data_fingerprint: str
    test_fingerprint: str
    train_ratings: int
    test_ratings: int

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> SplitRecord:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))

    def config(self) -> SplitConfig:
        return SplitConfig(kind=self.kind, test_fraction=self.test_fraction, cutoff_timestamp=self.cutoff_timestamp,
                           leave_last=self.leave_last, seed=self.seed)


@dataclass
class Split:
    """Training and test ratings (disjoint), what is cold in the test side, and the record."""

    train: pd.DataFrame
    test: pd.DataFrame
    record: SplitRecord

    @property
    def cold_users(self) -> int:
        """Test users with no training rating."""
        return len(set(self.test["user_id"]) - set(self.train["user_id"]))

    @property
    def cold_movies(self) -> int:
        """Test movies with no training rating."""
        return int(len(set(self.test["movie_id"]) - set(self.train["movie_id"])))

    def describe(self) -> str:
        test_users = self.test["user_id"].nunique()
        test_movies = self.test["movie_id"].nunique()
        return (
            f"split {self.record.kind}: {len(self.train):,} training and {len(self.test):,} test ratings; "
            f"{self.cold_users:,} of {test_users:,} test users and {self.cold_movies:,} of {test_movies:,} "
            "test movies are unseen in training (cold start)"
        )


def _test_mask(frame: pd.DataFrame, config: SplitConfig) -> np.ndarray:
    n = len(frame)
    if config.kind == "random":
        rng = np.random.default_rng(config.seed)
        mask = np.zeros(n, dtype=bool)
        mask[rng.permutation(n)[: int(round(n * config.test_fraction))]] = True
        return mask
    if config.kind == "temporal":
        timestamps = frame["timestamp"].to_numpy()
        if timestamps.min() == timestamps.max():
            raise DataError("temporal split needs timestamps, but every rating has the same timestamp")
        cutoff = config.cutoff_timestamp or int(np.quantile(timestamps, 1.0 - config.test_fraction))
        mask = timestamps >= cutoff
        if mask.all() or not mask.any():
            raise DataError(f"temporal cut-off {cutoff} leaves one side empty")
        return mask
    if config.kind == "leave-last-out":
        order = np.lexsort((np.arange(n), frame["timestamp"].to_numpy(), frame["user_id"].astype(str).to_numpy()))
        users = frame["user_id"].astype(str).to_numpy()[order]
        position_from_end = np.empty(n, dtype=np.int64)
        _, starts, counts = np.unique(users, return_index=True, return_counts=True)
        ends = np.repeat(starts + counts, counts)
        position_from_end[order] = ends - np.arange(n)  # 1 for each user's last rating
        user_counts = np.empty(n, dtype=np.int64)
        user_counts[order] = np.repeat(counts, counts)
        # A user keeps at least one training rating.
        return (position_from_end <= config.leave_last) & (user_counts > config.leave_last)
    raise DataError(f"unknown split kind {config.kind!r}; expected random, temporal or leave-last-out")


def _hash_rows(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame[["user_id", "movie_id", "rating", "timestamp"]], index=False)
    return hashlib.sha256(np.sort(hashed.to_numpy()).tobytes()).hexdigest()[:16]


def split_ratings(data: RatingsData, config: SplitConfig) -> Split:
    """Splits ``data.interactions`` into disjoint training and test ratings.

    Kinds: ``random`` (``test_fraction`` of ratings, by ``seed``), ``temporal`` (ratings at
    or after a global cut-off are test) and ``leave-last-out`` (each user's last
    ``leave_last`` ratings by time are test; users with no more ratings than that stay in
    training).

    Args:
        data: the validated ratings (:func:`~tfrs_pipeline.data.load_data`).
        config: the kind of split, its fraction or cut-off, and its seed.

    Returns:
        The training and test ratings and the record (``split.json``) that reproduces them.

    Examples:
        >>> from tfrs_pipeline.config import SplitConfig
        >>> from tfrs_pipeline.data import load_data
        >>> split = split_ratings(load_data("synthetic:50x40x600"), SplitConfig(test_fraction=0.25))
        >>> len(split.train), len(split.test)
        (450, 150)
    """
    frame = data.interactions
    mask = _test_mask(frame, config)
    train = frame[~mask].reset_index(drop=True)
    test = frame[mask].reset_index(drop=True)
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"split {config.kind} of {len(frame):,} ratings leaves an empty side")
    record = SplitRecord(
        kind=config.kind,
        test_fraction=config.test_fraction,
        cutoff_timestamp=config.cutoff_timestamp,
        leave_last=config.leave_last,
        seed=config.seed,
        data_source=data.source,
        data_fingerprint=data.fingerprint(),
        test_fingerprint=_hash_rows(test),
        train_ratings=len(train),
        test_ratings=len(test),
    )
    return Split(train, test, record)


def reproduce_split(data: RatingsData, record: SplitRecord) -> Split:
    """Rebuilds a recorded split and checks it is exactly the recorded one.

    Raises:
        DataError: the data or the test set differ from those recorded.
    """
    fingerprint = data.fingerprint()
    if fingerprint != record.data_fingerprint:
        raise DataError(
            f"data {data.source} (fingerprint {fingerprint}) is not the data the model was trained on "
            f"({record.data_source}, fingerprint {record.data_fingerprint})"
        )
    split = split_ratings(data, record.config())
    if split.record.test_fingerprint != record.test_fingerprint:
        raise DataError("the rebuilt test set differs from the recorded one; the split code or data changed")
    return split


def hold_out(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Randomly holds ``fraction`` of ``frame`` out (for early stopping); returns (kept, held out)."""
    if fraction <= 0:
        return frame, frame.iloc[:0]
    rng = np.random.default_rng(seed + 1)
    held = np.zeros(len(frame), dtype=bool)
    held[rng.permutation(len(frame))[: max(1, int(len(frame) * fraction))]] = True
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
