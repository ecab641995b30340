"""Value checks for config fields: each takes a value and returns what is wrong with it, or None.

They stand beside the fields they check, in the schema dataclasses::

    lr: float = checked(MISSING, positive)
    pooling: str = checked("cls", one_of("cls", "last_mean"))
"""

from __future__ import annotations

from typing import Any, Callable, Optional

Check = Callable[[Any], Optional[str]]  # value -> what is wrong with it, or None


def positive(value: Any) -> str | None:
    return None if value is None or value > 0 else f"must be greater than zero, got {value!r}."


def non_negative(value: Any) -> str | None:
    return None if value is None or value >= 0 else f"must be zero or more, got {value!r}."


def fraction(value: Any) -> str | None:
    return None if value is None or 0 <= value <= 1 else f"is a fraction (0..1), got {value!r}."


def open_fraction(value: Any) -> str | None:
    return None if value is None or 0 < value < 1 else f"must be between 0 and 1 (exclusive), got {value!r}."


def percentage(value: Any) -> str | None:
    return None if value is None or 0 <= value <= 100 else f"is a percentage (0..100), got {value!r}."


def port_number(value: Any) -> str | None:
    return None if value is None or 0 <= value <= 65535 else f"is a TCP port (0..65535; 0 = any free one), got {value!r}."


def auto_or_number(value: Any) -> str | None:
    if (isinstance(value, str) and value.strip().lower() == "auto") or (
        isinstance(value, (int, float)) and not isinstance(value, bool)
    ):
        return None
    return f"is {value!r}; use auto or a number."


def below_one(value: Any) -> str | None:
    return None if value is None or 0 <= value < 1 else f"is a fraction in [0, 1), got {value!r}."


def at_least_one(value: Any) -> str | None:
    return None if value is None or value >= 1 else f"must be 1 or more, got {value!r}."


def holdout_size(value: Any) -> str | None:
    if value is None:
        return None
    if not value > 0 or (value >= 1 and value != int(value)):
        return f"is a fraction below 1 or a whole number of examples, got {value!r}."
    return None


def thread_count(value: Any) -> str | None:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return f"is {value!r}; use auto (the cores this process may use) or a whole number >= 1."


def one_of(*allowed: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value is None or value in allowed else f"is {value!r}; allowed values are {', '.join(allowed)}."

    return check


def each(check: Check) -> Check:
    """A check of every item of a list: ``hits_at: list[int] = checked(MISSING, each(positive))``."""

    def check_items(values: Any) -> str | None:
        return next((f"item {i}: {problem}" for i, v in enumerate(values or []) if (problem := check(v))), None)

    return check_items


def band_thresholds(value: Any) -> str | None:
    """``diagnose.bands``: each band's threshold is a score in 0..1 or the name of a picked threshold."""
    for name, ref in (value or {}).items():
        if ref in ("target_tpr", "max_fpr"):
            continue
        if isinstance(ref, bool) or not isinstance(ref, (int, float)) or not 0 <= ref <= 1:
            return f"band {name!r} is {ref!r}; use a score in 0..1, target_tpr or max_fpr."
    return None


def score_range(value: Any) -> str | None:
    """A [low, high] pair of scores, low < high."""
    if value is None:
        return None
    if len(value) != 2 or not 0 <= value[0] < value[1] <= 1:
        return f"is {list(value)!r}; give [low, high] with 0 <= low < high <= 1."
    return None
