"""One setting's declaration: its range, choices and how each interface spells it, beside its default.

Examples:
    >>> parse_range("data.rating_scale", "0.5-5")
    [0.5, 5.0]
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tfrs_pipeline.errors import ConfigError

_RANGE = re.compile(r"^\s*\[?\s*(-?\d+(?:\.\d*)?|-?\.\d+)\s*(?:,|-|:|\.\.|to)\s*(-?\d+(?:\.\d*)?|-?\.\d+)\s*\]?\s*$")


def parse_range(name: str, value: Any) -> list[float]:
    """``"0-10"``, ``"0.5,5"``, ``"-10-10"``, ``"1..5"`` or ``[1, 5]`` -> ``[low, high]``; empty -> ``[]``."""
    if isinstance(value, str):
        if not value.strip():
            return []
        match = _RANGE.match(value)
        if not match:
            raise ConfigError(f"{name} must be LOW-HIGH (such as 0-10, 1-5, 0.5-5 or -10-10), got {value!r}")
        return [float(match.group(1)), float(match.group(2))]
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    raise ConfigError(f"{name} must be LOW-HIGH (such as 0-10) or [low, high], got {value!r}")



@dataclass(frozen=True)
class Setting:
    """What one setting allows and how each interface spells it: the metadata of its dataclass field,
    declared once beside its default (:func:`setting`). Validation, ``--set``, TOML, the command line's
    options and :func:`tfrs_pipeline.train`'s keywords all read it.

    Args:
        choices: the allowed values (empty: any value of the type).
        whole: a whole-number setting's (lowest, highest), both allowed; a list's every item.
        real: a real-number setting's interval, such as ``"(0, 1]"`` (NaN and infinities never).
        parse: reads a value with a syntax of its own (``"0-10"``): ``parse(dotted_key, value)``.
        cli: the command line's option (``--user-col``), if it has one.
        python: :func:`tfrs_pipeline.train`'s keyword (``user_col``), if it has one.
        help: the command line's help text.
        const: the value of the option given without one (``--verbose`` alone: 2).
        metavar: the option's placeholder in ``--help``.
    """

    choices: tuple = ()
    whole: tuple[int, int] | None = None
    real: str = ""
    parse: Callable[[str, Any], Any] | None = None
    cli: str = ""
    python: str = ""
    help: str = ""
    const: Any = None
    metavar: str = ""

    def interval(self) -> tuple[float, float, bool, bool]:
        """``real`` as (low, high, low allowed, high allowed)."""
        match = re.fullmatch(r"([\[(])\s*([-\d.e+]+)\s*,\s*([-\d.e+]+)\s*([\])])", self.real)
        return float(match.group(2)), float(match.group(3)), match.group(1) == "[", match.group(4) == "]"


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None, **allowed) -> Any:
    """A configuration field: its default (or ``factory`` for a list) and its :class:`Setting`."""
    metadata = {"setting": Setting(**allowed)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)
