"""``workflow.sleep_for``: durable sleep on a stored timer."""

from __future__ import annotations

from ..durations import parse_duration
from ..engine import DurableCall, current_context

__all__ = ["sleep_for"]


def sleep_for(duration: str | int | float) -> DurableCall:
    """Sleep durably for ``duration``; the awaitable returns the seconds slept.

    First run: a timer row is stored with its due time and the workflow suspends; a sweeper wakes
    it when the timer is due, whatever happened to the workers meanwhile. Replay: returns at once.

    Args:
        duration: Seconds, or text such as ``"30s"``, ``"5 minutes"``, ``"2h"``, ``"7d"``.

    ``await asyncio.sleep(seconds)`` inside a workflow is the same durable timer.

    Raises:
        InvalidArgumentError: ``duration`` is malformed, negative or longer than 100 years
            (a ``ValueError``).
    """
    return current_context().sleep(parse_duration(duration, what="sleep_for duration"))
