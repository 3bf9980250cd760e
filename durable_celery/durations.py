"""Parsing of the durations users write: ``"30s"``, ``"5 minutes"``, ``"2h"``, ``"7d"``, numbers."""

from __future__ import annotations

import math
import re

from pytimeparse import parse as _parse_words

from .errors import InvalidArgumentError

__all__ = ["parse_duration"]

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
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgumentError(
            f"malformed {what}: {value!r}; use a number of seconds or text such as "
            f"'30s', '5 minutes', '2h', '7d', '250ms'"
        )
    return seconds
