"""Schedules seen from outside: checking what ``client.schedule`` is given, fire times, and
``ScheduleHandle``.

Fire times are UTC. ``cron=`` takes a five-field expression (minute hour day-of-month month
day-of-week, as croniter reads it) or one of the ``@hourly``-style aliases; ``every=`` takes a
whole number of seconds (at least 1, as a number or text such as ``"30s"`` / ``"1 hour"``) and
fires at the multiples of it since the Unix epoch, so ``every="1 hour"`` fires on the hour.
Each fire starts one run whose workflow id is ``f"{schedule_id}-{fire time:%Y%m%dT%H%M%SZ}"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .durations import parse_duration
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .handle import WorkflowHandle

__all__ = [
    "CRON_ALIASES",
    "DEFAULT_CATCHUP_WINDOW",
    "MAX_SECONDS",
    "MIN_CATCHUP_WINDOW",
    "OVERLAP_POLICIES",
    "ScheduleHandle",
    "ScheduleTiming",
    "check_schedule_id",
    "parse_catchup_window",
    "parse_overlap",
    "run_workflow_id",
]

#: Seconds within which missed fires are made up unless ``catchup_window=`` says otherwise.
DEFAULT_CATCHUP_WINDOW = 3600.0
#: The smallest catch-up window: a sweeper pass may be this late without a fire being lost.
MIN_CATCHUP_WINDOW = 10.0
#: The longest interval and catch-up window accepted (about ten years, in seconds).
MAX_SECONDS = 10 * 366 * 86400
#: What ``overlap=`` accepts (see :class:`~durable_celery.models.ScheduleOverlap`).
OVERLAP_POLICIES = ("skip", "buffer_one", "allow_all", "cancel_other")
#: The ``@`` names ``cron=`` accepts.
CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
#: ``schedule_id`` is at most this long, so that the run ids fit the workflow id column.
MAX_SCHEDULE_ID = 200
_ID_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


def run_workflow_id(schedule_id: str, fire_at: datetime) -> str:
    """The workflow id of the run a fire at ``fire_at`` starts."""
    return f"{schedule_id}-{fire_at.astimezone(UTC):{_ID_TIME_FORMAT}}"


def check_schedule_id(schedule_id: Any) -> str:
    """Return ``schedule_id`` when it can name a schedule.

    Raises:
        TypeError: It is not a string.
        ValueError: It is empty, blank-padded, longer than :data:`MAX_SCHEDULE_ID` or holds a
            NUL character.
    """
    if not isinstance(schedule_id, str):
        raise TypeError(f"schedule_id must be a str, got {schedule_id!r}")
    if not schedule_id or schedule_id != schedule_id.strip() or len(schedule_id) > MAX_SCHEDULE_ID:
        raise InvalidArgumentError(
            f"schedule_id must be 1 to {MAX_SCHEDULE_ID} characters without surrounding "
            f"spaces, got {len(schedule_id)} characters: {schedule_id!r:.60}")
    if "\x00" in schedule_id:
        raise InvalidArgumentError(f"schedule_id must not contain a NUL character, got "
                                   f"{schedule_id!r:.60}")
    return schedule_id


def parse_overlap(overlap: Any) -> str:
    """Return the overlap policy's name.

    Raises:
        ValueError: It is not one of :data:`OVERLAP_POLICIES`.
    """
    if overlap not in OVERLAP_POLICIES:
        raise InvalidArgumentError(
            f"overlap must be one of {', '.join(map(repr, OVERLAP_POLICIES))}, got {overlap!r}")
    return str(overlap)


def parse_catchup_window(value: str | float | None) -> float:
    """Seconds of the catch-up window (``None``: :data:`DEFAULT_CATCHUP_WINDOW`).

    Raises:
        ValueError: Malformed, or shorter than :data:`MIN_CATCHUP_WINDOW`.
    """
    if value is None:
        return DEFAULT_CATCHUP_WINDOW
    seconds = parse_duration(value, what="catchup_window")
    if not MIN_CATCHUP_WINDOW <= seconds <= MAX_SECONDS:
        raise InvalidArgumentError(
            f"catchup_window must be at least {MIN_CATCHUP_WINDOW:g} seconds (a sweeper pass may "
            f"be that late) and at most ten years, got {value!r}")
    return seconds


@dataclass(frozen=True)
class ScheduleTiming:
    """When a schedule fires: a cron expression or a whole number of seconds, in UTC.

    Build it with :meth:`parse`, which checks everything; the constructor trusts its input
    (values read back from the database).
    """

    cron: str = ""
    every: int | None = None

    @classmethod
    def parse(cls, cron: Any = None, every: Any = None) -> ScheduleTiming:
        """Check ``cron=`` / ``every=`` as given to ``client.schedule``.

        Raises:
            TypeError: ``cron`` is not a string.
            ValueError: Both or neither are given; the cron expression is malformed or never
                fires; the interval is malformed, under one second or not whole seconds.
        """
        if (cron is None) == (every is None):
            raise InvalidArgumentError(
                "a schedule needs exactly one of cron= (e.g. '0 3 * * *') or every= (e.g. '30s')")
        if cron is not None:
            return cls(cron=_check_cron(cron))
        seconds = parse_duration(every, what="schedule interval (every=)")
        if not 1 <= seconds <= MAX_SECONDS or seconds != math.floor(seconds):
            raise InvalidArgumentError(
                f"every= must be a whole number of seconds, at least 1 (each fire's run is named "
                f"after its fire time to the second) and at most ten years, got {every!r}")
        return cls(every=int(seconds))

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment``."""
        if self.every:
            step = self.every
            return datetime.fromtimestamp((math.floor(moment.timestamp() / step) + 1) * step,
                                          tz=UTC)
        from croniter import croniter

        return croniter(self.cron, moment.astimezone(UTC)).get_next(datetime).astimezone(UTC)

    def fires(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Fire times ``t`` with ``start <= t <= end``, at most ``limit`` of them, in order."""
        found: list[datetime] = []
        moment = self.next_after(start - timedelta(microseconds=1))
        while moment <= end and len(found) < limit:
            found.append(moment)
            moment = self.next_after(moment)
        return found

    def count_fires(self, start: datetime, end: datetime, cap: int = 10_000) -> int:
        """How many fire times lie in ``[start, end)`` (for cron, up to ``cap + 1``: more than
        ``cap`` means at least that many)."""
        if end <= start:
            return 0
        if self.every:
            first = math.ceil(start.timestamp() / self.every)
            last = math.ceil(end.timestamp() / self.every) - 1
            return max(0, last - first + 1)
        return len([t for t in self.fires(start, end, cap + 1) if t < end])

    def describe(self) -> str:
        """For people: ``"At 03:00 AM"`` (cron-descriptor, when installed) or
        ``"every 30 seconds"``."""
        if self.every:
            return f"every {_interval_text(self.every)}"
        try:
            from cron_descriptor import get_description
        except ImportError:
            return f"cron {self.cron} (UTC)"
        try:
            return f"{get_description(self.cron)} (UTC)"
        except Exception:  # a description is a courtesy; croniter decides what is valid
            return f"cron {self.cron} (UTC)"

    def text(self) -> str:
        """The timing as it was written: the cron expression or ``every <seconds>s``."""
        return self.cron or f"every {self.every}s"


def _interval_text(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _check_cron(cron: Any) -> str:
    if not isinstance(cron, str):
        raise TypeError(f"cron= must be a str such as '0 3 * * *', got {cron!r}")
    text = " ".join(cron.split())
    if text.startswith("@"):
        if text.lower() not in CRON_ALIASES:
            raise InvalidArgumentError(
                f"malformed cron {cron!r}: the aliases are {', '.join(CRON_ALIASES)}")
        text = text.lower()
    elif len(text.split()) != 5:
        raise InvalidArgumentError(
            f"malformed cron {cron!r}: it needs 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(text.split())}")
    from croniter import croniter

    try:
        croniter(text, datetime.now(UTC)).get_next(datetime)
    except (ValueError, KeyError, TypeError) as exc:  # CroniterError is a ValueError
        raise InvalidArgumentError(f"malformed cron {cron!r}: {exc}") from None
    return text


class ScheduleHandle:
    """Observe and operate the schedule ``schedule_id`` in ``namespace``.

    Methods that act take an optional ``user`` (who did it, recorded in the schedule's log).
    """

    def __init__(self, schedule_id: str, namespace: str) -> None:
        self.schedule_id = schedule_id
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"ScheduleHandle({self.schedule_id!r}, namespace={self.namespace!r})"

    def describe(self) -> dict[str, Any]:
        """What an operator needs: ``schedule_id``, ``workflow_name``, ``cron`` / ``every``,
        ``description``, ``overlap``, ``catchup_window``, ``paused``, ``note``, ``next_runs``
        (the next five fire times, UTC datetimes; empty while paused), ``recent`` (workflow ids
        of the latest runs, newest first), ``recent_runs`` (with fire time and status),
        ``log`` (fires, skips and operator actions, newest first), counters and timestamps.

        Raises:
            ScheduleNotFoundError: No such schedule.
        """
        from .store.schedule_ops import describe_schedule

        return describe_schedule(self.namespace, self.schedule_id)

    def pause(self, note: str | None = None, user: str | None = None) -> None:
        """Stop firing until :meth:`unpause` (fires meanwhile are not made up)."""
        from .store.schedule_ops import set_paused

        set_paused(self.namespace, self.schedule_id, True, user=user, note=note)

    def unpause(self, note: str | None = None, user: str | None = None) -> None:
        """Fire again from the next fire time after now."""
        from .store.schedule_ops import set_paused

        set_paused(self.namespace, self.schedule_id, False, user=user, note=note)

    def trigger(self, user: str | None = None) -> WorkflowHandle:
        """Start a run now, whatever the overlap policy (also while paused).

        The run's id carries the current second; a second trigger within the same second
        returns the same run.
        """
        from .handle import WorkflowHandle
        from .store.schedule_ops import trigger_schedule

        return WorkflowHandle(trigger_schedule(self.namespace, self.schedule_id, user=user),
                              self.namespace)

    def delete(self, user: str | None = None) -> None:
        """Delete the schedule; runs it started go on."""
        from .store.schedule_ops import delete_schedule

        delete_schedule(self.namespace, self.schedule_id, user=user)
