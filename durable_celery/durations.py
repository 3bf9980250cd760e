"""Parsing of the durations users write: ``"30s"``, ``"5 minutes"``, ``"2h"``, ``"7d"``, numbers."""

from __future__ import annotations

import math
import re

from pytimeparse import parse as _parse_words

from .engine.context import check_timer_seconds
from .errors import InvalidArgumentError

__all__ = ["parse_duration", "parse_timeout"]

_MILLISECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:ms|msecs?|milliseconds?)\s*$", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")


def parse_duration(value: str | int | float, *, what: str = "duration") -> float:
    """Return ``value`` in seconds.

    Args:
        value: A number of seconds, or text such as ``"30s"``, ``"5 minutes"``, ``"1.5h"``,
            ``"250ms"``, ``"7d"``.
        what: Names the argument in the error message (e.g. ``"sleep_for duration"``).

    Raises:
        InvalidArgumentError: (a ``ValueError``) the value is negative, not finite, or not a
            duration we can read.
    """
    try:
        seconds = _seconds(value)
    except OverflowError:
        raise InvalidArgumentError(f"{what} is out of range: {value!r:.80}") from None
    if seconds is not None and seconds < 0:
        raise InvalidArgumentError(f"{what} cannot be negative, got {value!r:.80}")
    if seconds is None or not math.isfinite(seconds):
        raise InvalidArgumentError(
            f"malformed {what}: {value!r:.80}; use a number of seconds or text such as "
            f"'30s', '5 minutes', '2h', '7d', '250ms'"
        )
    return seconds


def _seconds(value: object) -> float | None:
    """``value`` as seconds, ``None`` if unreadable; ``OverflowError`` if too large for a float."""
    seconds: float | None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        millis = _MILLISECONDS.match(value)
        if millis:
            seconds = float(millis.group(1)) / 1000.0
        elif _BARE_NUMBER.match(value):
            seconds = float(value)
        else:
            parsed = _parse_words(value.strip())
            seconds = None if parsed is None else float(parsed)
    else:
        seconds = None
    return seconds


def parse_timeout(value: str | int | float | None, *, what: str) -> float | None:
    """Seconds of a time limit such as ``execution_timeout`` (``None`` stays ``None``).

    Raises:
        InvalidArgumentError: (a ``ValueError``) malformed, negative, zero, or longer than a
            durable timer can wait (100 years).
    """
    if value is None:
        return None
    seconds = parse_duration(value, what=what)
    if seconds <= 0:
        raise InvalidArgumentError(f"{what} must be more than 0 seconds, got {value!r}")
    return check_timer_seconds(seconds, what)
