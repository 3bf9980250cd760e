"""Read-only questions operators ask: which runs are retrying or stuck, what each live worker
holds, how much work waits on each queue and whether anyone consumes it.

Nothing here writes. Every function costs a fixed number of queries, whatever the number of
runs, workers or queues (the admin's list page depends on it).

Definitions (the admin's and ``manage.py durable``'s filters use them):

* **retrying** — an active run that failed and will try again: a workflow-level or activity
  retry timer is pending, or an open activity call is past its first attempt (``attempts > 1``)
  or has a failed attempt logged (:class:`~durable_celery.models.ActivityAttempt`).
* **failing** — failed, or retrying.
* **stuck** — active, started more than ``DURABLE_STUCK_AFTER`` seconds ago (600 by default),
  and nothing happened in its history for that long: no call recorded, no outcome, no
  activity attempt started or heartbeating, and no timer due in that window or later. A run
  waiting for a signal or for a child workflow is waiting, not stuck (the child is judged on
  its own). So a run whose steps sit on a queue nobody consumes, an attempt that no worker
  picks up, an attempt that runs longer than that without heartbeating, or an overdue timer
  shows up as stuck.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    BooleanField,
    CharField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    JSONField,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, Concat, NullIf
from django.utils import timezone

from ..conf import durable_setting
from ..models import (
    ACTIVE_STATUSES,
    ActivityAttempt,
    ExecutionStatus,
    HistoryEvent,
    HistoryStatus,
    OutboxMessage,
    Timer,
    TimerKind,
    Worker,
    WorkflowExecution,
)
from .workers import live_workers, stale_before

__all__ = [
    "CONSUMER_CACHE_SECONDS",
    "QueueState",
    "WorkerState",
    "activity_queue_expression",
    "annotate_health",
    "failing",
    "has_live_consumer",
    "queue_overview",
    "retrying",
    "runs_of",
    "stuck",
    "stuck_after",
    "unconsumed_waits",
    "warn_if_not_held",
    "warn_if_unconsumed",
    "worker_overview",
]

logger = logging.getLogger("durable_celery.client")

#: Seconds :func:`has_live_consumer` reuses its answer for a queue.
CONSUMER_CACHE_SECONDS = 5.0

_RETRY_TIMERS = (TimerKind.ACTIVITY_RETRY, TimerKind.WORKFLOW_RETRY)
_ACTIVE = [str(s) for s in ACTIVE_STATUSES]
_HELD_LIMIT = 200


def stuck_after() -> timedelta:
    """How long an active run may show no progress before it counts as stuck."""
    return timedelta(seconds=float(durable_setting("DURABLE_STUCK_AFTER")))


def activity_queue_expression(prefix: str = "") -> Concat:
    """SQL for the Celery queue of an activity row: ``{input.task_queue or the run's}-activity``
    (``prefix`` is the path to the history row, e.g. ``"event__"``)."""
    return Concat(
        Coalesce(NullIf(KeyTextTransform("task_queue", f"{prefix}input"), Value("")),
                 F(f"{prefix}execution__task_queue"), output_field=CharField()),
        Value("-activity"), output_field=CharField())


def _open_retried_call() -> QuerySet[HistoryEvent]:
    return HistoryEvent.objects.filter(execution=OuterRef("pk"), kind="activity",
                                       status=HistoryStatus.SCHEDULED)


def retrying() -> Q:
    """Active runs retrying after failures (a filter on executions; see the module doc)."""
    return Q(Q(status__in=_ACTIVE), Q(
        Exists(Timer.objects.filter(execution=OuterRef("pk"), kind__in=_RETRY_TIMERS))
        | Exists(_open_retried_call().filter(attempts__gt=1))
        | Exists(ActivityAttempt.objects.filter(event__execution=OuterRef("pk"),
                                                event__status=HistoryStatus.SCHEDULED))))


def failing() -> Q:
    """Failed runs and runs retrying after failures."""
    return Q(status=ExecutionStatus.FAILED) | retrying()


def stuck(now: datetime | None = None, after: timedelta | None = None) -> Q:
    """Active runs without progress for ``after`` (default :func:`stuck_after`).

    Progress is read from the run's history — a call recorded, an outcome, an attempt started
    or heartbeating — not from ``updated_at``, which the sweeper touches each time it
    re-requests a step that no worker takes.
    """
    now = now or timezone.now()
    cutoff = now - (after if after is not None else stuck_after())
    rows = HistoryEvent.objects.filter(execution=OuterRef("pk"))
    return Q(Q(status__in=_ACTIVE, created_at__lt=cutoff), ~Q(
        Exists(rows.filter(status=HistoryStatus.SCHEDULED, kind__in=("wait", "child")))
        | Exists(rows.filter(Q(created_at__gte=cutoff) | Q(completed_at__gte=cutoff)
                             | Q(started_at__gte=cutoff) | Q(heartbeat_at__gte=cutoff)))
        | Exists(Timer.objects.filter(execution=OuterRef("pk"), due_at__gte=cutoff))))


def annotate_health(queryset: QuerySet[WorkflowExecution]) -> QuerySet[WorkflowExecution]:
    """Add what the list shows about failures, in the same query: ``next_retry_at`` (the
    earliest retry timer), ``is_retrying`` and, for the latest open activity call that failed
    at least once, ``call_name``, ``call_attempts`` and ``call_error``."""
    failed_call = _open_retried_call().filter(error__isnull=False).order_by("-created_at", "-pk")
    return queryset.annotate(
        next_retry_at=Subquery(
            Timer.objects.filter(execution=OuterRef("pk"), kind__in=_RETRY_TIMERS)
            .order_by("due_at").values("due_at")[:1]),
        is_retrying=ExpressionWrapper(retrying(), output_field=BooleanField()),
        call_name=Subquery(failed_call.values("name")[:1]),
        call_attempts=Subquery(failed_call.values("attempts")[:1]),
        call_error=Subquery(failed_call.values("error")[:1], output_field=JSONField()),
    )


def runs_of(execution: WorkflowExecution) -> list[WorkflowExecution]:
    """Every run of the execution's workflow id (itself included), newest first."""
    return list(WorkflowExecution.objects.named(execution.namespace, execution.workflow_id)
                .only("pk", "run_id", "previous_run_id", "status", "workflow_name",
                      "created_at", "completed_at", "error")
                .order_by("-created_at", "-id"))


# --- queues and workers ------------------------------------------------------------------------


@dataclass
class QueueState:
    """One Celery queue: who consumes it and what waits on it."""

    name: str
    consumers: list[str] = field(default_factory=list)
    steps_waiting: int = 0
    steps_running: int = 0
    oldest_step: datetime | None = None
    attempts_waiting: int = 0
    attempts_running: int = 0
    attempts_retry_wait: int = 0
    oldest_attempt: datetime | None = None
    outbox: int = 0

    @property
    def consumed(self) -> bool:
        """Whether a live worker consumes it."""
        return bool(self.consumers)

    @property
    def waiting(self) -> int:
        """Steps and attempts waiting to be picked up."""
        return self.steps_waiting + self.attempts_waiting + self.outbox


@dataclass
class WorkerState:
    """A live worker (its main process) and what its processes hold."""

    worker: Worker
    processes: list[Worker] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def heartbeat_age(self) -> float:
        """Seconds since its last heartbeat."""
        return max((timezone.now() - self.worker.heartbeat_at).total_seconds(), 0.0)


def queue_overview(now: datetime | None = None,
                   workers: list[Worker] | None = None) -> list[QueueState]:
    """Every queue a live worker consumes or work waits on, by name (five queries)."""
    workers = list(live_workers(now)) if workers is None else workers
    queues: dict[str, QueueState] = {}

    def queue(name: str) -> QueueState:
        return queues.setdefault(name, QueueState(name))

    for worker in workers:
        for name in worker.queues or []:
            queue(name).consumers.append(worker.name)
    attempts = (HistoryEvent.objects.open_activities()
                .annotate(queue=activity_queue_expression()).values("queue")
                .annotate(waiting=Count("pk", filter=Q(worker__isnull=True,
                                                       dispatched_at__isnull=False)),
                          running=Count("pk", filter=Q(worker__isnull=False)),
                          retry_wait=Count("pk", filter=Q(worker__isnull=True,
                                                          dispatched_at__isnull=True,
                                                          attempts__gt=1)),
                          oldest=Min("dispatched_at", filter=Q(worker__isnull=True)))
                .order_by())
    for row in attempts:
        state = queue(row["queue"])
        state.attempts_waiting, state.attempts_running = row["waiting"], row["running"]
        state.attempts_retry_wait, state.oldest_attempt = row["retry_wait"], row["oldest"]
    steps = (WorkflowExecution.objects.active()
             .filter(Q(step_requested=True) | Q(step_claimed_by__isnull=False))
             .values("task_queue")
             .annotate(waiting=Count("pk", filter=Q(step_claimed_by__isnull=True)),
                       running=Count("pk", filter=Q(step_claimed_by__isnull=False)),
                       oldest=Min("updated_at", filter=Q(step_claimed_by__isnull=True)))
             .order_by())
    for step in steps:
        state = queue(step["task_queue"])
        state.steps_waiting, state.steps_running = step["waiting"], step["running"]
        state.oldest_step = step["oldest"]
    for name, count in OutboxMessage.objects.values_list("queue").annotate(n=Count("pk")) \
            .order_by():
        queue(name).outbox = count
    return sorted(queues.values(), key=lambda q: (q.consumed, q.name))


def worker_overview(now: datetime | None = None,
                    workers: list[Worker] | None = None) -> list[WorkerState]:
    """Live workers with their live processes, the attempts they run and the steps they hold
    (four queries; at most 200 attempts and 200 step claims are listed)."""
    now = now or timezone.now()
    workers = list(live_workers(now)) if workers is None else workers
    states = {w.pk: WorkerState(w) for w in workers}
    owner = {w.pk: w.pk for w in workers}
    for process in Worker.objects.filter(parent_id__in=list(states), stopped_at__isnull=True,
                                         heartbeat_at__gte=stale_before(now)).order_by("pid"):
        states[process.parent_id].processes.append(process)  # type: ignore[index]
        owner[process.pk] = process.parent_id  # type: ignore[assignment]
    for attempt in (HistoryEvent.objects.filter(status=HistoryStatus.SCHEDULED,
                                                worker_id__in=list(owner))
                    .values("pk", "seq", "name", "attempts", "worker_id", "started_at",
                            "heartbeat_at", "execution_id", "execution__workflow_id")
                    .order_by("started_at")[:_HELD_LIMIT]):
        states[owner[attempt["worker_id"]]].attempts.append(dict(attempt))
    for claim in (WorkflowExecution.objects.active().filter(step_claimed_by_id__in=list(owner))
                  .values("pk", "workflow_id", "workflow_name", "step_claimed_by_id",
                          "step_claimed_until")[:_HELD_LIMIT]):
        states[owner[claim["step_claimed_by_id"]]].steps.append(dict(claim))
    return list(states.values())


def unconsumed_waits(execution: WorkflowExecution, open_calls: list[HistoryEvent],
                     workers: list[Worker] | None = None) -> list[dict[str, Any]]:
    """Queues this run waits on that no live worker consumes: its own task queue while a
    step is pending, ``{queue}-activity`` for attempts dispatched and not picked up.

    Args:
        open_calls: The run's open history rows (already loaded by the caller).

    Returns:
        ``[{"queue", "what", "consume"}]`` (``consume``: what to give ``celery worker -Q``;
        one query for the live workers unless given).
    """
    if not execution.is_active:
        return []
    waiting: dict[str, list[str]] = {}
    if execution.step_requested and execution.step_claimed_by_id is None:
        waiting.setdefault(execution.task_queue, []).append(
            "its first replay step" if execution.status == ExecutionStatus.PENDING
            else "its next replay step")
    for row in open_calls:
        if row.kind == "activity" and row.worker_id is None and row.dispatched_at is not None:
            queue = f"{row.input.get('task_queue') or execution.task_queue}-activity"
            waiting.setdefault(queue, []).append(f"activity #{row.seq} {row.name}")
    if not waiting:
        return []
    workers = list(live_workers()) if workers is None else workers
    consumed = {name for worker in workers for name in worker.queues or []}
    # a worker started for a run's steps should take its activities too
    return [{"queue": queue, "what": ", ".join(what),
             "consume": queue if queue.endswith("-activity") else f"{queue},{queue}-activity"}
            for queue, what in sorted(waiting.items()) if queue not in consumed]


_consumer_cache: dict[str, tuple[float, bool]] = {}
_consumer_lock = threading.Lock()


def has_live_consumer(queue: str) -> bool:
    """Whether a live worker consumes ``queue`` (answer reused for
    :data:`CONSUMER_CACHE_SECONDS` per queue, so a burst of starts costs one query)."""
    now = time.monotonic()
    with _consumer_lock:
        cached = _consumer_cache.get(queue)
    if cached is not None and now - cached[0] < CONSUMER_CACHE_SECONDS:
        return cached[1]
    found = any(queue in (queues or []) for queues in
                live_workers().values_list("queues", flat=True))
    with _consumer_lock:
        _consumer_cache[queue] = (now, found)
    return found


def warn_if_unconsumed(queue: str, workflow_id: str) -> bool:
    """Log a warning when no live worker consumes ``queue`` (see :func:`has_live_consumer`).

    Returns:
        Whether a warning was logged.
    """
    if has_live_consumer(queue):
        return False
    logger.warning("durable_celery: workflow %s was started on task queue %r, which no live "
                   "worker consumes; it stays pending until a worker does (e.g. celery -A "
                   "proj worker -Q %s,%s-activity)", workflow_id, queue, queue, queue)
    return True


def warn_if_not_held(rows: QuerySet[Any], what: str) -> bool:
    """Log a warning when a message names ``what`` (``rows``: its row) and this database does
    not hold it — the worker shares a broker with a process on another database, and would
    acknowledge that side's messages without doing their work. Asked only on a skip path.

    Returns:
        Whether a warning was logged.
    """
    if rows.exists():
        return False
    logger.warning("durable_celery: a message names %s, which this database does not hold; "
                   "skipped. Is this worker configured with another database than the process "
                   "that sent it, on the same broker?", what)
    return True
