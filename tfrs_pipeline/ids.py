"""Ids as every stage handles them: strings exactly as written, looked up without a string per row.

Users and movies keep their ids as strings (``0068646`` stays ``0068646``); pandas
categorical columns are looked up once per distinct id, which at 20M ratings saves
gigabytes of Python strings. Scoring a whole catalog is done in blocks whose scores stay
under a fixed budget.

Examples:
    >>> import pandas as pd
    >>> id_positions(pd.Index(["7", "42"]), pd.Series([42, 7, 3])).tolist()
    [1, 0, -1]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Most scores (float32) one block of queries against a whole catalog may hold: 1 GiB.
SCORES_PER_BLOCK = 2**28


def rows_per_block(catalog_size: int, preferred: int) -> int:
    """Queries per block when each query scores ``catalog_size`` movies: ``preferred``, fewer when
    the block's scores would pass :data:`SCORES_PER_BLOCK` (a million-movie catalog), at least 1.

    >>> rows_per_block(27_278, 8192), rows_per_block(1_000_000, 8192)
    (8192, 268)
    """
    return max(1, min(preferred, SCORES_PER_BLOCK // max(int(catalog_size), 1)))


def as_str(values) -> np.ndarray:
    """Ids and titles as Python strings (TensorFlow returns ``bytes``), same shape."""
    values = np.asarray(values)
    return np.asarray([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.ravel(values)],
                      dtype=object).reshape(np.shape(values))


def id_positions(index: pd.Index, column: pd.Series) -> np.ndarray:
    """``index.get_indexer`` of each value of an id column as a string (-1: not in ``index``).

    A categorical column is looked up once per distinct id, without one Python string per
    row (at 20M ratings those strings alone take gigabytes).
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        per_id = np.append(index.get_indexer(column.cat.categories.astype(str)), -1)  # code -1 (missing) -> -1
        return per_id[column.cat.codes.to_numpy()]
    return index.get_indexer(column.astype(str))


def distinct_ids(column: pd.Series) -> pd.Index:
    """The distinct values of an id column as strings, in no particular order.

    A categorical column gives the categories it uses, without one Python string per row.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        distinct = column.cat.categories[np.unique(codes[codes >= 0])]
    else:
        distinct = pd.Index(column.unique())
    return distinct.astype(str).unique()  # 1 and "1" are one id, as when every value was a string


def users_of(frame: pd.DataFrame) -> np.ndarray:
    """The distinct users of a split side, sorted (the order every ranked-list evaluation uses)."""
    return np.asarray(sorted(set(distinct_ids(frame["user_id"]))), dtype=object)


def catalog_positions(ids, catalog: pd.Index) -> np.ndarray:
    """Positions (int32) of movie ids (``bytes`` or ``str``) in ``catalog``, same shape; -1 where absent.

    Ranked lists kept this way take 4 bytes a movie instead of a Python string (13.8M of them
    for 138k users' top 100).
    """
    ids = np.asarray(ids)
    return catalog.get_indexer(as_str(ids).ravel()).astype(np.int32).reshape(ids.shape)


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (not so: a lone surrogate, as a shell leaves undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
