"""``TestClock``: real time plus however far the test moved it forward."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from ..durations import parse_duration
from ..errors import InvalidArgumentError

__all__ = ["TestClock", "as_seconds"]


def as_seconds(duration: float | str | timedelta, *, what: str = "duration") -> float:
    """``duration`` in seconds: a number, a ``timedelta`` or text such as ``"30 days"``.

    Raises:
        InvalidArgumentError: Negative, not finite, or not a duration (a ``ValueError``).
    """
    if isinstance(duration, timedelta):
        duration = duration.total_seconds()
    return parse_duration(duration, what=what)


class TestClock:
    """A clock that runs with real time and jumps forward when the test (or time skipping)
    advances it; it never goes back.

    Installed with :func:`durable_celery.clock.install_clock` (the ``WorkflowEnvironment`` does
    it), it is what every store function reads: a timer due in 30 days is due once the clock has
    been advanced 30 days.

    Args:
        start: The time the clock shows now (default: the real time). Timezone-aware.

    Raises:
        InvalidArgumentError: ``start`` is a naive ``datetime``.
    """

    __test__ = False  # a helper, not a pytest test class

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.utcoffset() is None:
            raise InvalidArgumentError(
                f"TestClock(start=...) needs a timezone-aware datetime, got {start!r}; "
                f"e.g. datetime(2030, 1, 1, tzinfo=UTC)")
        self._lock = threading.Lock()
        self._offset = timedelta(0) if start is None else start - datetime.now(UTC)
        self._advanced = timedelta(0)

    def now(self) -> datetime:
        """The clock's time: timezone-aware, UTC."""
        return datetime.now(UTC) + self._offset

    @property
    def advanced(self) -> timedelta:
        """How far the clock was moved forward in all (real time not included)."""
        return self._advanced

    def advance(self, duration: float | str | timedelta) -> datetime:
        """Move the clock forward by ``duration`` (seconds, ``timedelta`` or ``"30 days"``).

        Returns:
            The new time.
        """
        step = timedelta(seconds=as_seconds(duration, what="clock advance"))
        with self._lock:
            self._offset += step
            self._advanced += step
        return self.now()

    def advance_to(self, moment: datetime) -> datetime:
        """Move the clock forward to ``moment`` (a moment already passed changes nothing).

        Returns:
            The new time.
        """
        with self._lock:
            gap = moment - self.now()
            if gap > timedelta(0):
                self._offset += gap
                self._advanced += gap
        return self.now()
