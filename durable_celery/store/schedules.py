"""The sweeper's schedule duty: claim each due fire exactly once and start its run.

A fire is claimed by moving the schedule's ``next_fire_at`` forward with a conditional update
(``WHERE next_fire_at = <the value read>``) in the transaction that creates the run, after
locking the row with ``SKIP LOCKED`` on PostgreSQL (SQLite serialises writers). However many
workers sweep, a fire time starts at most one run; its workflow id carries the fire time, so
a run that exists already is never started twice either.

What a fire does while a run of the same schedule is still running is the schedule's
``overlap`` policy; fires older than ``catchup_window`` when a worker comes back are counted
as missed and not started. Every fire, skip and miss is recorded in the schedule's ``log``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from django.db import DatabaseError, transaction

from .. import clock
from ..errors import DuplicateWorkflowError
from ..models import Schedule, ScheduleOverlap, WorkflowExecution
from ..schedules import ScheduleTiming, run_workflow_id
from .connection import connection_failed
from .executions import IdReusePolicy, create_execution
from .lifecycle import request_cancel
from .operations import record_operator_action
from .outbox import OutboxBatch

__all__ = [
    "LOG_SIZE",
    "MAX_FIRES_PER_PASS",
    "MISSED_COUNT_CAP",
    "RECENT_RUNS",
    "SCHEDULE_SEARCH_KEY",
    "ScheduleEvent",
    "fire_due_schedules",
    "iso",
    "record_event",
    "running_runs",
    "start_run",
    "timing_of",
]

logger = logging.getLogger(__name__)

#: How many runs ``recent_runs`` keeps, and how many entries ``log`` keeps.
RECENT_RUNS = 20
LOG_SIZE = 50
#: Fire times one sweeper pass handles per schedule; a longer catch-up goes on next pass.
MAX_FIRES_PER_PASS = 100
#: Missed cron fires are counted up to this many (an interval's are counted exactly).
MISSED_COUNT_CAP = 10_000
#: Search field every run of a schedule gets: ``client.search(durable_schedule_id=...)``.
SCHEDULE_SEARCH_KEY = "durable_schedule_id"


class ScheduleEvent(StrEnum):
    """What a schedule's ``log`` entries record."""

    CREATED = "created"
    UPDATED = "updated"
    STARTED = "started"
    SKIPPED = "skipped"
    BUFFERED = "buffered"
    MISSED = "missed"
    ALREADY_STARTED = "already_started"
    CANCELLED_PREVIOUS = "cancelled_previous"
    PAUSED = "paused"
    UNPAUSED = "unpaused"
    TRIGGERED = "triggered"
    FAILED = "failed"


class _ClaimLost(Exception):
    """Another sweeper claimed the fire first (only without row locks and serialised writers)."""


def iso(moment: datetime | None) -> str | None:
    """``moment`` as ISO text in UTC (for the JSON log)."""
    return None if moment is None else moment.astimezone(UTC).isoformat()


def timing_of(schedule: Schedule) -> ScheduleTiming:
    """The stored timing of ``schedule``."""
    return ScheduleTiming(cron=schedule.cron, every=schedule.every)


def record_event(schedule: Schedule, event: ScheduleEvent, now: datetime,
                 **details: Any) -> None:
    """Prepend an entry to the schedule's ``log`` (kept to :data:`LOG_SIZE`; saved by the
    caller)."""
    entry = {"event": str(event), "at": iso(now), **details}
    schedule.log = [entry, *(schedule.log or [])][:LOG_SIZE]


def running_runs(schedule: Schedule) -> list[str]:
    """Workflow ids of the schedule's runs still pending or running (prunes ``active_runs``)."""
    if not schedule.active_runs:
        return []
    active = set(WorkflowExecution.objects.filter(
        namespace=schedule.namespace, workflow_id__in=schedule.active_runs).active()
        .values_list("workflow_id", flat=True))
    schedule.active_runs = [wid for wid in schedule.active_runs if wid in active]
    return list(schedule.active_runs)


def start_run(schedule: Schedule, fire_at: datetime, now: datetime, batch: OutboxBatch,
              user: str | None = None) -> tuple[str, bool]:
    """Start the run of the fire at ``fire_at`` unless it exists (call inside a transaction,
    with the schedule locked; the caller saves the schedule).

    Args:
        user: Who triggered it by hand (recorded on the run); ``None`` for a timed fire.

    Returns:
        The run's workflow id, and whether this call started it (``False``: it existed).
    """
    workflow_id = run_workflow_id(schedule.schedule_id, fire_at)
    if WorkflowExecution.objects.named(schedule.namespace, workflow_id).exists():
        record_event(schedule, ScheduleEvent.ALREADY_STARTED, now, fire_at=iso(fire_at),
                     workflow_id=workflow_id)
        return workflow_id, False
    search = {**(schedule.search or {}), SCHEDULE_SEARCH_KEY: schedule.schedule_id}
    try:
        execution = create_execution(
            namespace=schedule.namespace, workflow_id=workflow_id,
            workflow_name=schedule.workflow_name, task_queue=schedule.task_queue,
            args=list(schedule.args or []), search=search, entity=schedule.entity or None,
            expire=schedule.expire, retry_policy=schedule.retry_policy, batch=batch,
            id_reuse_policy=IdReusePolicy.REJECT_DUPLICATE)
    except DuplicateWorkflowError:  # created meanwhile under this id
        record_event(schedule, ScheduleEvent.ALREADY_STARTED, now, fire_at=iso(fire_at),
                     workflow_id=workflow_id)
        return workflow_id, False
    if user is not None:
        record_operator_action(execution, "trigger", user, schedule_id=schedule.schedule_id)
    schedule.active_runs = [*(schedule.active_runs or []), workflow_id]
    run = {"workflow_id": workflow_id, "pk": execution.pk, "fire_at": iso(fire_at),
           "triggered_by": user}
    schedule.recent_runs = [run, *(schedule.recent_runs or [])][:RECENT_RUNS]
    schedule.runs_started += 1
    schedule.last_fire_at = fire_at
    record_event(schedule, ScheduleEvent.TRIGGERED if user is not None else ScheduleEvent.STARTED,
                 now, fire_at=iso(fire_at), workflow_id=workflow_id,
                 **({"user": user} if user is not None else {}))
    return workflow_id, True


def fire_due_schedules(now: datetime | None = None, limit: int = 50,
                       schedules: Collection[int] | None = None) -> int:
    """Claim the due fires of unpaused schedules (no two sweepers get the same one) and start
    their runs, each schedule in its own savepoint; with ``schedules`` (primary keys), only
    those (the testing kit fires the schedules its test made).

    A schedule whose processing fails other than by a lost database connection (an error in
    it, or a value the database refuses to store) is paused with the error as its note (and
    logged), so it cannot fail every pass.

    Returns:
        How many runs were started.
    """
    now = now or clock.now()
    if not Schedule.objects.due(now, schedules).exists():  # no write when nothing is due
        return 0
    started = 0
    with transaction.atomic():
        for schedule in Schedule.objects.claim_due(now, limit, schedules):
            started += _sweep_one(schedule, now)
    return started


def _sweep_one(schedule: Schedule, now: datetime) -> int:
    try:
        with transaction.atomic():
            batch = OutboxBatch()
            started = _fire(schedule, now, batch)
            batch.commit()
        return started
    except _ClaimLost:
        return 0
    except DatabaseError as error:
        if connection_failed(error):
            raise  # the next pass retries on a new connection
        _pause_failing(schedule, now, error)  # the database refuses what it would store
        return 0
    except Exception as error:  # a stored schedule that cannot fire: stop it, say why
        _pause_failing(schedule, now, error)
        return 0


def _pause_failing(schedule: Schedule, now: datetime, error: Exception) -> None:
    """Pause a schedule whose fire fails the same way every time, with the error as its note:
    it cannot hold up the other schedules, or the sweeper's pass, again."""
    logger.exception("durable_celery: schedule %s could not fire; it is paused",
                     schedule.schedule_id)
    with transaction.atomic():
        fresh = Schedule.objects.filter(pk=schedule.pk).first()
        if fresh is not None:
            fresh.paused = True
            fresh.note = f"paused by the sweeper after an error: {error}"[:500]
            record_event(fresh, ScheduleEvent.FAILED, now, error=repr(error)[:500])
            fresh.save(update_fields=["paused", "note", "log", "updated_at"])


def _fire(schedule: Schedule, now: datetime, batch: OutboxBatch) -> int:
    started = 0
    buffered = schedule.buffered_fire_at
    if buffered is not None and not running_runs(schedule):
        if not Schedule.objects.filter(pk=schedule.pk, buffered_fire_at=buffered).update(
                buffered_fire_at=None):
            raise _ClaimLost
        schedule.buffered_fire_at = None
        started += start_run(schedule, buffered, now, batch)[1]
    if schedule.next_fire_at <= now:
        started += _fire_due_times(schedule, now, batch)
    schedule.save(update_fields=[
        "next_fire_at", "last_fire_at", "buffered_fire_at", "active_runs", "recent_runs", "log",
        "runs_started", "fires_skipped", "fires_missed", "updated_at"])
    return started


def _fire_due_times(schedule: Schedule, now: datetime, batch: OutboxBatch) -> int:
    """Fire ``next_fire_at`` and the fire times after it up to ``now`` (those older than the
    catch-up window only counted as missed), after claiming them by moving ``next_fire_at``."""
    timing = timing_of(schedule)
    previous = schedule.next_fire_at
    cutoff = now - timedelta(seconds=schedule.catchup_window)
    moment = previous
    missed = 0
    if previous < cutoff:
        moment = timing.next_after(cutoff - timedelta(microseconds=1))
        missed = 1 + timing.count_fires(previous + timedelta(microseconds=1), moment,
                                        cap=MISSED_COUNT_CAP)
    due: list[datetime] = []
    while moment <= now and len(due) < MAX_FIRES_PER_PASS:
        due.append(moment)
        moment = timing.next_after(moment)
    claimed = Schedule.objects.filter(pk=schedule.pk, next_fire_at=previous,
                                      paused=False).update(next_fire_at=moment)
    if not claimed:
        raise _ClaimLost
    schedule.next_fire_at = moment
    if missed:
        schedule.fires_missed += missed
        record_event(schedule, ScheduleEvent.MISSED, now, count=missed, first=iso(previous),
                     before=iso(due[0] if due else moment),
                     catchup_window=schedule.catchup_window,
                     **({"at_least": True} if missed > MISSED_COUNT_CAP else {}))
    started = 0
    for fire_at in due:
        started += _apply_overlap(schedule, fire_at, now, batch)
    return started


def _apply_overlap(schedule: Schedule, fire_at: datetime, now: datetime,
                   batch: OutboxBatch) -> int:
    running = running_runs(schedule)
    if running and schedule.overlap == ScheduleOverlap.SKIP:
        schedule.fires_skipped += 1
        record_event(schedule, ScheduleEvent.SKIPPED, now, fire_at=iso(fire_at),
                     running=running[-1])
        return 0
    if running and schedule.overlap == ScheduleOverlap.BUFFER_ONE:
        if schedule.buffered_fire_at is None:
            schedule.buffered_fire_at = fire_at
            record_event(schedule, ScheduleEvent.BUFFERED, now, fire_at=iso(fire_at),
                         running=running[-1])
        else:
            schedule.fires_skipped += 1
            record_event(schedule, ScheduleEvent.SKIPPED, now, fire_at=iso(fire_at),
                         running=running[-1], buffered=iso(schedule.buffered_fire_at))
        return 0
    if running and schedule.overlap == ScheduleOverlap.CANCEL_OTHER:
        _cancel_others(schedule, running, fire_at, now)
        return 0
    start_run(schedule, fire_at, now, batch)
    return 1


def _cancel_others(schedule: Schedule, running: list[str], fire_at: datetime,
                   now: datetime) -> None:
    """``cancel_other``: ask the running runs (and their descendants) to cancel themselves,
    and keep this fire until they have ended, as Temporal does: their cleanup (``finally:``,
    ``except CancelledError:``) runs, and the new run never overlaps it. A newer fire replaces
    a kept one (the older is counted as skipped). A run that handles its cancellation and goes
    on holds the new run back until it ends."""
    reason = (f"schedule {schedule.schedule_id!r}: the fire at {iso(fire_at)} replaces this "
              f"run (overlap cancel_other)")
    asked: list[str] = []
    for workflow_id in running:
        asked += request_cancel(schedule.namespace, workflow_id, reason=reason, descend=True)
    if schedule.buffered_fire_at is not None:
        schedule.fires_skipped += 1
        record_event(schedule, ScheduleEvent.SKIPPED, now, fire_at=iso(schedule.buffered_fire_at),
                     running=running[-1], replaced_by=iso(fire_at))
    schedule.buffered_fire_at = fire_at
    record_event(schedule, ScheduleEvent.CANCELLED_PREVIOUS, now, fire_at=iso(fire_at),
                 running=running[-1], cancelled=asked)
