"""Argument validation shared by layers, builders and the search space."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def positive_int(name: str, value: Any) -> int:
    """Return `value` if it is an int >= 1, else raise a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


def non_negative_int(name: str, value: Any) -> int:
    """Return `value` if it is an int >= 0, else raise a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    return value


def rate(name: str, value: Any, *, allow_one: bool = False) -> float:
    """Return `value` as a float in [0, 1) (or [0, 1] with `allow_one`), else raise."""
    upper = "1]" if allow_one else "1)"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = 0.0 <= value <= 1.0 if allow_one else 0.0 <= value < 1.0
    if not ok:
        raise ValueError(f"`{name}` must be a number in [0, {upper}, got {value!r}.")
    return float(value)


def choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return `value` if it is one of `allowed`, else raise listing the allowed values."""
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"`{name}` must be one of {listed}; got {value!r}.")
    return value
