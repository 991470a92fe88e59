"""Argument validation shared by layers, specs, builders, training and the search space."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    """Return `value` if it is an int >= 1, else raise a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


def kernel_sizes(name: str, value: Any) -> int | tuple[int, ...]:
    """Return `value` if it is one positive int, or as a tuple if it is a non-empty list or
    tuple of them (a kernel size per convolution), else raise naming `name`."""
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(f"`{name}` must be a positive integer or a non-empty tuple.")
        return tuple(positive_int(name, size) for size in value)
    return positive_int(name, value)


def non_negative_int(name: str, value: Any) -> int:
    """Return `value` if it is an int >= 0, else raise a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    return value


def finite(name: str, value: Any) -> float:
    """Return `value` as a float if it is a finite number (not NaN or infinity), else raise."""
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    return float(value)


def positive(name: str, value: Any) -> float:
    """Return `value` as a float if it is a finite number > 0, else raise."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")
    return float(value)


def non_negative(name: str, value: Any) -> float:
    """Return `value` as a float if it is a finite number >= 0, else raise."""
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
    return float(value)


def rate(name: str, value: Any, *, allow_one: bool = False) -> float:
    """Return `value` as a float in [0, 1) (or [0, 1] with `allow_one`), else raise."""
    upper = "1]" if allow_one else "1)"
    ok = _is_number(value) and (0.0 <= value <= 1.0 if allow_one else 0.0 <= value < 1.0)
    if not ok:
        raise ValueError(f"`{name}` must be a number in [0, {upper}, got {value!r}.")
    return float(value)


def flag(name: str, value: Any) -> bool:
    """Return `value` if it is a bool (or 0/1), else raise: `"yes"` is not a flag."""
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"`{name}` must be True or False, got {value!r}.")


def choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return `value` if it is one of `allowed`, else raise listing the allowed values.

    `True` and `1` are told apart: a flag is not a number and a number is not a flag.
    """
    allowed = tuple(allowed)
    same_kind = [a for a in allowed if isinstance(a, bool) == isinstance(value, bool)]
    try:
        known = value in same_kind
    except (TypeError, ValueError):  # arrays and the like are never a choice
        known = False
    if not known:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"`{name}` must be one of {listed}; got {value!r}.")
    return value


def input_shape(value: Any, *, downsamples: int = 0) -> tuple:
    """`(steps, channels)`, `(height, width, channels)` or `(depth, height, width,
    channels)`: sizes positive ints (all but the channels may be None), large enough for
    `downsamples` stride-2 steps; else raise naming `input_shape`."""
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    ok = shape is not None and 2 <= len(shape) <= 4
    if ok:
        *size, channels = shape
        ok = all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
                 for d in size)  # fmt: skip
        ok = ok and isinstance(channels, int) and not isinstance(channels, bool) and channels > 0
    if not ok:
        raise ValueError(
            "`input_shape` must be (steps, channels) for sequences, (height, width, "
            "channels) for images or (depth, height, width, channels) for volumes, with "
            f"positive integer sizes (all but the channels may be None), got {value!r}."
        )
    smallest = 2**downsamples
    if any(d is not None and d < smallest for d in shape[:-1]):
        what = "steps" if len(shape) == 2 else "pixels per side"
        raise ValueError(
            f"`input_shape` {shape} is too small: {downsamples} stride-2 steps need at "
            f"least {smallest} {what}."
        )
    return shape


def parse_duration(text: str | float | None, name: str = "time_budget") -> float | None:
    """Seconds from `90`, `90s`, `10m` or `1.5h`; None (or `"none"`: no budget) stays None.
    A malformed `text` is refused under the setting's `name`.

    Example:
    >>> parse_duration("10m"), parse_duration("1.5h"), parse_duration(45)
    (600.0, 5400.0, 45.0)
    """
    if text is None or str(text).strip().lower() == "none":
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    raw = str(text).strip().lower()
    scale = units.get(raw[-1:])
    try:
        seconds = float(raw[:-1] if scale else raw) * (scale or 1)
    except ValueError:
        raise ValueError(f"`{name}` must look like 90s, 10m or 1h; got {text!r}.") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"`{name}` must be positive and finite, got {text!r}.")
    return seconds
