"""What clients and operators do to schedules: create or update, read, pause, unpause, trigger,
delete. Each action is recorded in the schedule's ``log`` with who did it; a trigger is also
recorded on the run it starts (an ``operator`` history row, as the workflow admin does)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from .. import clock
from ..errors import ScheduleNotFoundError
from ..models import Schedule, WorkflowExecution
from ..schedules import ScheduleTiming
from .outbox import OutboxBatch
from .schedules import ScheduleEvent, iso, record_event, start_run, timing_of

__all__ = [
    "DEFINITION_FIELDS",
    "delete_schedule",
    "describe_schedule",
    "get_schedule",
    "list_schedules",
    "next_runs",
    "save_schedule",
    "set_paused",
    "trigger_schedule",
]

logger = logging.getLogger(__name__)

#: The fields ``client.schedule`` sets; an update compares and replaces exactly these.
DEFINITION_FIELDS = ("workflow_name", "task_queue", "args", "search", "entity", "retry_policy",
                     "expire", "cron", "every", "overlap", "catchup_window")
#: How many fire times ``describe()["next_runs"]`` lists.
NEXT_RUNS = 5


def _who(user: str | None) -> str:
    return user or "api"


def get_schedule(namespace: str, schedule_id: str) -> Schedule:
    """The stored schedule.

    Raises:
        ScheduleNotFoundError: There is none with this id in this namespace.
    """
    schedule = Schedule.objects.named(namespace, schedule_id).first()
    if schedule is None:
        raise ScheduleNotFoundError(
            f"no schedule with id {schedule_id!r} in namespace {namespace!r}")
    return schedule


def _locked(namespace: str, schedule_id: str) -> Schedule:
    schedule = Schedule.objects.lock(get_schedule(namespace, schedule_id).pk)
    if schedule is None:  # deleted meanwhile
        return get_schedule(namespace, schedule_id)
    return schedule


def save_schedule(*, namespace: str, schedule_id: str, definition: dict[str, Any],
                  paused: bool | None = None, user: str | None = None) -> Schedule:
    """Create the schedule, or replace the definition of the one with this id.

    An update keeps the schedule's state (paused or not, unless ``paused`` is given; its log,
    counters and runs). When the timing changed, the next fire is the first after now.

    Args:
        definition: Checked values of :data:`DEFINITION_FIELDS`.
        paused: Start paused (``True``) or unpaused (``False``); ``None`` keeps an existing
            schedule's state and starts a new one unpaused.
    """
    now = clock.now()
    timing = ScheduleTiming(cron=definition["cron"], every=definition["every"])
    with transaction.atomic():
        existing = Schedule.objects.named(namespace, schedule_id).first()
        if existing is None:
            try:
                with transaction.atomic():
                    schedule = Schedule(namespace=namespace, schedule_id=schedule_id,
                                        next_fire_at=timing.next_after(now),
                                        paused=bool(paused), **definition)
                    record_event(schedule, ScheduleEvent.CREATED, now, user=_who(user),
                                 timing=timing.text(), paused=bool(paused))
                    schedule.save()
                    return schedule
            except IntegrityError:  # created concurrently: update it instead
                existing = get_schedule(namespace, schedule_id)
        schedule = Schedule.objects.lock(existing.pk) or get_schedule(namespace, schedule_id)
        changed = [name for name in DEFINITION_FIELDS
                   if getattr(schedule, name) != definition[name]]
        if "cron" in changed or "every" in changed:
            schedule.next_fire_at = timing.next_after(now)
        for name in changed:
            setattr(schedule, name, definition[name])
        if paused is not None and paused != schedule.paused:
            schedule.paused = paused
            if not paused:
                schedule.next_fire_at = timing.next_after(now)
            changed.append("paused")
        if changed:
            record_event(schedule, ScheduleEvent.UPDATED, now, user=_who(user),
                         changed=changed, timing=timing.text())
            schedule.save()
        return schedule


def set_paused(namespace: str, schedule_id: str, paused: bool, *, user: str | None = None,
               note: str | None = None) -> bool:
    """Pause or unpause. Pausing drops a buffered fire; unpausing fires next at the first fire
    time after now (fires while paused are not made up).

    Returns:
        Whether the state changed (``False``: it was already so).

    Raises:
        ScheduleNotFoundError: No such schedule.
    """
    now = clock.now()
    with transaction.atomic():
        schedule = _locked(namespace, schedule_id)
        if schedule.paused == paused:
            return False
        schedule.paused = paused
        schedule.note = (note or "")[:500]
        details: dict[str, Any] = {}
        if paused and schedule.buffered_fire_at is not None:
            details["dropped_buffered"] = iso(schedule.buffered_fire_at)
            schedule.buffered_fire_at = None
        if not paused:
            schedule.next_fire_at = timing_of(schedule).next_after(now)
        record_event(schedule, ScheduleEvent.PAUSED if paused else ScheduleEvent.UNPAUSED, now,
                     user=_who(user), note=note or "", **details)
        schedule.save(update_fields=["paused", "note", "next_fire_at", "buffered_fire_at", "log",
                                     "updated_at"])
    return True


def trigger_schedule(namespace: str, schedule_id: str, *, user: str | None = None) -> str:
    """Start a run now (fire time: this second), whatever the overlap policy or pause.

    Returns:
        The run's workflow id (a trigger in the same second as another fire returns that run).

    Raises:
        ScheduleNotFoundError: No such schedule.
    """
    now = clock.now()
    with transaction.atomic():
        schedule = _locked(namespace, schedule_id)
        batch = OutboxBatch()
        workflow_id, _ = start_run(schedule, now.replace(microsecond=0), now, batch,
                                   user=_who(user))
        schedule.save(update_fields=["last_fire_at", "active_runs", "recent_runs", "log",
                                     "runs_started", "updated_at"])
        batch.commit()
    return workflow_id


def delete_schedule(namespace: str, schedule_id: str, *, user: str | None = None) -> None:
    """Delete the schedule (its runs go on).

    Raises:
        ScheduleNotFoundError: No such schedule.
    """
    with transaction.atomic():
        schedule = _locked(namespace, schedule_id)
        schedule.delete()
    logger.info("durable_celery: schedule %s deleted by %s", schedule_id, _who(user))


def next_runs(schedule: Schedule, now: datetime | None = None,
              count: int = NEXT_RUNS) -> list[datetime]:
    """The next ``count`` fire times (UTC); empty while paused.

    An overdue fire beyond the catch-up window is left out, as the sweeper will not start it.
    """
    if schedule.paused:
        return []
    now = now or clock.now()
    timing = timing_of(schedule)
    first = schedule.next_fire_at
    cutoff = now - timedelta(seconds=schedule.catchup_window)
    if first < cutoff:
        first = timing.next_after(cutoff - timedelta(microseconds=1))
    times = [first]
    while len(times) < count:
        times.append(timing.next_after(times[-1]))
    return times


def _statuses(namespace: str, workflow_ids: list[str]) -> dict[str, str]:
    return dict(WorkflowExecution.objects.filter(namespace=namespace,
                                                 workflow_id__in=workflow_ids)
                .values_list("workflow_id", "status"))


def describe_schedule(namespace: str, schedule_id: str) -> dict[str, Any]:
    """The ``describe()`` dict of a schedule (see :meth:`ScheduleHandle.describe`).

    Raises:
        ScheduleNotFoundError: No such schedule.
    """
    return _describe(get_schedule(namespace, schedule_id))


def _describe(schedule: Schedule) -> dict[str, Any]:
    timing = timing_of(schedule)
    runs = list(schedule.recent_runs or [])
    statuses = _statuses(schedule.namespace,
                         [r["workflow_id"] for r in runs] + list(schedule.active_runs or []))
    return {
        "schedule_id": schedule.schedule_id,
        "namespace": schedule.namespace,
        "workflow_name": schedule.workflow_name,
        "task_queue": schedule.task_queue,
        "args": schedule.args,
        "cron": schedule.cron or None,
        "every": schedule.every,
        "description": timing.describe(),
        "overlap": schedule.overlap,
        "catchup_window": schedule.catchup_window,
        "paused": schedule.paused,
        "note": schedule.note,
        "next_runs": next_runs(schedule),
        "recent": [r["workflow_id"] for r in runs],
        "recent_runs": [{"workflow_id": r["workflow_id"],
                         "fire_at": datetime.fromisoformat(r["fire_at"]),
                         "triggered_by": r.get("triggered_by"),
                         "status": statuses.get(r["workflow_id"])} for r in runs],
        "running": [wid for wid in schedule.active_runs or []
                    if statuses.get(wid) in ("pending", "running")],
        "buffered_fire_at": schedule.buffered_fire_at,
        "last_fire_at": schedule.last_fire_at,
        "runs_started": schedule.runs_started,
        "fires_skipped": schedule.fires_skipped,
        "fires_missed": schedule.fires_missed,
        "search": schedule.search,
        "entity": schedule.entity or None,
        "retry_policy": schedule.retry_policy,
        "expire": schedule.expire,
        "log": list(schedule.log or []),
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
    }


def list_schedules(namespace: str | None = None) -> list[dict[str, Any]]:
    """One summary per schedule (``namespace=None``: all namespaces), ordered by id: id,
    workflow, timing, description, overlap, paused, next run, last fire, runs started."""
    qs = Schedule.objects.all() if namespace is None else Schedule.objects.filter(
        namespace=namespace)
    rows = []
    for schedule in qs.order_by("namespace", "schedule_id"):
        timing = timing_of(schedule)
        upcoming = next_runs(schedule, count=1)
        rows.append({
            "schedule_id": schedule.schedule_id, "namespace": schedule.namespace,
            "workflow_name": schedule.workflow_name, "timing": timing.text(),
            "description": timing.describe(), "overlap": schedule.overlap,
            "paused": schedule.paused, "next_run": upcoming[0] if upcoming else None,
            "last_fire_at": schedule.last_fire_at, "runs_started": schedule.runs_started,
            "last_run": (schedule.recent_runs or [{}])[0].get("workflow_id"),
        })
    return rows
