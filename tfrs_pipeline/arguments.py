"""The Python API's arguments, checked before anything runs: ids, lists of ids, counts and flags.

Each check returns the value as the signatures take it, or raises an
:class:`~tfrs_pipeline.errors.ArgumentError` (a ``ValueError``) naming the argument, the value
and what is allowed.

Examples:
    >>> ids(["1", 50], "user_ids").tolist()
    ['1', '50']
    >>> count(1.5, "k")
    Traceback (most recent call last):
    ...
    tfrs_pipeline.errors.ArgumentError: k must be a whole number from 1 to 2,147,483,647, got 1.5
    >>> padded(id_lists([["1"], ["2", "3"]], "history")).tolist()
    [['1', ''], ['2', '3']]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfrs_pipeline.errors import ArgumentError


def is_id(value) -> bool:
    """Whether ``value`` is one id: a string, bytes or a whole number (a bool is not)."""
    return isinstance(value, (str, bytes, int, np.integer, np.str_, np.bytes_)) and not isinstance(value, bool)


def shown(value) -> str:
    """A value as an argument message shows it (its repr, cut at 80 characters)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def id_text(value, name: str) -> str:
    """One id as UTF-8 text; anything else is an ArgumentError naming ``name``."""
    if not is_id(value):
        raise ArgumentError(f"{name} must hold ids (strings or whole numbers), got {shown(value)}")
    try:
        text = value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)
        text.encode("utf-8")  # a lone surrogate (bytes a shell could not decode) is no id
    except UnicodeError:
        raise ArgumentError(f"{name} must hold ids of UTF-8 text, got {shown(value)}") from None
    return text


def ids(values, name: str) -> np.ndarray:
    """One id or a flat sequence of them, as a string array; anything else names ``name``."""
    if is_id(values):
        values = [values]
    elif isinstance(values, np.ndarray) and values.ndim != 1:
        raise ArgumentError(f"{name} must be one id or a flat list of ids, got an array of shape {values.shape}")
    elif not isinstance(values, (list, tuple, np.ndarray, pd.Series, pd.Index)):
        raise ArgumentError(f"{name} must be one id or a list of ids, got {shown(values)}")
    return np.array([id_text(value, name) for value in values], dtype=object)


def id_lists(values, name: str, rows: int | None = None, per: str = "row") -> list[list[str]]:
    """One list of ids per row (a flat list of ids is one row's); ``rows`` of them when given."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise ArgumentError(f"{name} must be a list of lists of ids, got {shown(values)}")
    if values and all(is_id(value) for value in values):
        values = [values]  # a flat list: one row's
    elif any(is_id(value) for value in values):
        raise ArgumentError(f"{name} must be one list of ids or one list per {per}, not a mix of ids and lists: "
                            f"got {shown(values)}")
    lists = [list(ids(row, name)) for row in values]
    if rows is not None and len(lists) != rows:
        raise ArgumentError(f"{name} must hold one list per {per} ({rows}), got {len(lists)}")
    return lists


def count(value, name: str) -> int:
    """A whole number from 1 up to int32's largest (``k``); a float, a bool or a string is refused, never rounded."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ArgumentError(f"{name} must be a whole number from 1 to {2**31 - 1:,}, got {shown(value)}")
    if not 1 <= int(value) <= 2**31 - 1:
        raise ArgumentError(f"{name} must be a whole number from 1 to {2**31 - 1:,}, got {value}")
    return int(value)


def flag(value, name: str) -> bool:
    """True or False, nothing else ("no" is not False)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"{name} must be True or False, got {shown(value)}")
    return bool(value)


def split_ids(text: str) -> list[str]:
    """Ids written as ``"1, 50,260"`` -> ``["1", "50", "260"]`` (empty parts dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def padded(lists: list[list[str]]) -> np.ndarray:
    """Lists of ids (strings already: :func:`id_lists`) as one [rows, longest] array, "" after each shorter list."""
    width = max((len(row) for row in lists), default=0)
    return np.array([row + [""] * (width - len(row)) for row in lists], dtype=object).reshape(len(lists), width)
