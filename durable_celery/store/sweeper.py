"""What the sweeper does: fire due timers, and recover whatever a crash or a lost message left.

Every live worker sweeps; no two sweepers act on the same row (``SKIP LOCKED`` on PostgreSQL,
one writer at a time on SQLite, and every action is conditional on the row's state). Recovery
never waits on the broker (Redis's visibility timeout, RabbitMQ's consumer timeout): it reads the
database, where every piece of work that must happen is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import TypeVar

from django.db import models, transaction
from django.db.models import Q, QuerySet

from .. import clock
from ..conf import durable_setting
from ..engine.retry import AttemptFailure, FailureKind
from ..errors import DurableFatalError, DurableRetryError, DurableTimeoutError
from ..managers import supports_row_locks
from ..models import (
    ACTIVE_STATUSES,
    AttemptOutcome,
    ExecutionStatus,
    HistoryEvent,
    HistoryStatus,
    OutboxMessage,
    Timer,
    TimerKind,
    Worker,
    WorkflowExecution,
    WorkflowThread,
)
from ..task_names import RUN_ACTIVITY_TASK
from .activities import record_attempt_failure
from .decisions import count_step_failure
from .dispatch import activity_message, dispatch_attempt, is_local, request_local_run
from .executions import interrupt_execution
from .outbox import OutboxBatch, publish_messages
from .workers import mark_recovered, prune_workers, unrecovered_dead_ids

__all__ = [
    "fire_due_timers",
    "recover_dead_workers",
    "recover_lost_messages",
    "recover_timed_out_attempts",
    "report_broker_loss",
    "republish_outbox",
    "request_missed_steps",
    "run_recovery_duties",
]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=models.Model)


def fire_due_timers(now: datetime | None = None, limit: int = 100, *,
                    executions: Collection[int] | None = None) -> int:
    """Claim due timers (no two sweepers get the same one) and act on each.

    Args:
        executions: Only timers of these runs (the testing kit fires its own runs' timers).

    Returns:
        How many timers fired.
    """
    now = now or clock.now()
    with transaction.atomic():
        timers = Timer.objects.claim_due(now, limit, executions)
        if not timers:
            return 0
        batch = OutboxBatch()
        for timer in timers:
            _fire(timer, now, batch)
        Timer.objects.filter(pk__in=[t.pk for t in timers]).delete()
        batch.commit()
    return len(timers)


def _fire(timer: Timer, now: datetime, batch: OutboxBatch) -> None:
    execution = WorkflowExecution.objects.filter(pk=timer.execution_id).first()
    if execution is None or not execution.is_active:
        return
    if timer.kind == TimerKind.EXECUTION_TIMEOUT:
        interrupt_execution(execution.namespace, execution.workflow_id, batch=batch, error=(
            DurableTimeoutError(f"workflow {execution.workflow_id!r} did not finish within its "
                                f"execution_timeout").to_dict()))
        return
    if timer.kind == TimerKind.WORKFLOW_RETRY:
        WorkflowExecution.objects.filter(pk=execution.pk).update(step_requested=True,
                                                                 updated_at=now)
        batch.request_step(execution.pk, execution.task_queue)
        return
    if timer.kind == TimerKind.HOOK_RETRY:
        if timer.thread_id is not None and WorkflowThread.objects.filter(
                pk=timer.thread_id, status=ExecutionStatus.RUNNING).update(step_requested=True):
            batch.request_step(execution.pk, execution.task_queue)
        return
    if timer.event_id is None:
        return
    if timer.kind == TimerKind.ACTIVITY_RETRY:
        event = HistoryEvent.objects.filter(pk=timer.event_id, status=HistoryStatus.SCHEDULED,
                                            worker__isnull=True).first()
        if event is not None:
            dispatch_attempt(execution, event, now, batch)
        return
    if timer.kind == TimerKind.SLEEP:
        event = HistoryEvent.objects.filter(pk=timer.event_id).only("input").first()
        result: object = float(event.input.get("seconds", 0)) if event else 0.0
    else:  # wait timeout: the wait returns False unless a signal came first
        result = False
    if HistoryEvent.objects.settle(timer.event_id, result=result, now=now):
        batch.request_step(execution.pk, execution.task_queue)


#: Re-sends of a message the broker refused while it was reachable (it took other messages,
#: or answered the canary), after which the sweeper gives the message up.
GIVE_UP_AFTER = 5


def republish_outbox(now: datetime | None = None, *, everything: bool = False,
                     broker_reachable: bool = False) -> int:
    """Re-send outbox messages whose publication was never confirmed.

    A message that fails while the broker is reachable (``broker_reachable``, or another
    message of the pass was sent) is refused for what it is — a queue name the broker cannot
    hold, say: the row's ``publish_attempts`` counts such refusals, and after
    :data:`GIVE_UP_AFTER` of them the message is given up (:func:`_give_up`) instead of being
    sent again forever. While the broker is down nothing counts and nothing is given up.

    Args:
        everything: Re-send every stored message, however recent (the broker lost its messages).
        broker_reachable: The broker answered this pass (its canary check succeeded).
    """
    now = now or clock.now()
    before = now if everything else now - timedelta(
        seconds=float(durable_setting("DURABLE_OUTBOX_REPUBLISH_AFTER")))
    failed: list[tuple[OutboxMessage, Exception]] = []
    with transaction.atomic():
        stale = OutboxMessage.objects.claim_stale(before)
        if not stale:
            return 0
        sent = publish_messages(stale, failed)
        refused = failed if sent or broker_reachable else []
        OutboxMessage.objects.filter(pk__in=[m.pk for m, _ in refused]).update(
            publish_attempts=models.F("publish_attempts") + 1)
    for message, error in refused:
        if message.publish_attempts + 1 >= GIVE_UP_AFTER:
            _give_up(message, error)
    return sent


def _give_up(message: OutboxMessage, error: Exception) -> None:
    """Stop re-sending a message the broker keeps refusing: delete it and, for an activity
    attempt, fail the call at once (any later attempt would be refused the same way)."""
    logger.error("durable_celery: giving up on a %s message to queue %r after %d re-sends "
                 "the broker refused: %s", message.task_name, message.queue,
                 message.publish_attempts + 1, error)
    OutboxMessage.objects.acknowledge([message.pk])
    attempt = message.args[0] if message.args else None
    if message.task_name != RUN_ACTIVITY_TASK or not isinstance(attempt, dict):
        return  # a step request is asked for again from the run's own record
    refusal = DurableFatalError(
        f"the attempt could not be sent to Celery queue {message.queue!r}; the broker "
        f"refused it {message.publish_attempts + 1} times: {error}",
        type=type(error).__name__).to_dict()
    record_attempt_failure(attempt, AttemptFailure(FailureKind.RAISED, refusal),
                           worker_id=None, outcome=AttemptOutcome.FAILED)


def _locked(qs: QuerySet[M]) -> QuerySet[M]:
    """Rows no other sweeper holds (PostgreSQL); SQLite already runs one writer at a time."""
    if supports_row_locks():
        return qs.select_for_update(skip_locked=True, of=("self",))
    return qs


#: How a replay step whose process died is described when the run fails on it.
_STEP_PROCESS_DIED = "the worker process taking a replay step died"


def _who(worker: Worker | None, unknown: str) -> str:
    if worker is None:
        return unknown
    return (f"process {worker.pid} of worker {worker.name} (last heartbeat "
            f"{worker.heartbeat_at:%H:%M:%S}{', stopped' if worker.stopped_at else ''})")


def recover_dead_workers(now: datetime | None = None, limit: int = 200) -> int:
    """Take back what dead worker processes held.

    * An activity attempt a dead process was running failed (its worker died); the retry policy
      decides what follows — so an activity that kills its own process fails after its attempts.
    * A step a dead process was taking is requested again.
    * Attempts queued on the dead worker's queues before it died may have been delivered to it
      and are gone with it (unacknowledged messages come back only after the broker's visibility
      timeout): they are sent again (a copy that is still queued is then run by whoever claims
      first; the other finds it claimed).

    Returns:
        How many things were recovered.
    """
    now = now or clock.now()
    dead = unrecovered_dead_ids(now)
    if not dead:
        return 0
    count = 0
    held = list(HistoryEvent.objects.open_activities().filter(worker_id__in=dead)
                .select_related("execution", "worker")[:limit])
    for event in held:
        who = _who(event.worker, "its worker process")
        failure = AttemptFailure(FailureKind.WORKER_LOST, {
            "class": "DurableRetryError", "type": "WorkerLostError", "code": 599,
            "message": f"attempt {event.attempts} of activity {event.name!r} was lost: {who} "
                       f"died while running it"})
        decision, _ = record_attempt_failure(
            activity_message(event.execution, event), failure, worker_id=event.worker_id,
            outcome=AttemptOutcome.WORKER_LOST, started_at=event.started_at,
            celery_task_id=event.celery_task_id)
        if decision is not None:
            logger.warning("durable_celery: %s (workflow %s)", failure.error["message"],
                           event.execution.workflow_id)
            count += 1
    with transaction.atomic():
        stuck = list(_locked(WorkflowExecution.objects.active().filter(
            step_claimed_by_id__in=dead))[:limit])
        batch = OutboxBatch()
        takers = {w.pk: w for w in Worker.objects.filter(
            pk__in={e.step_claimed_by_id for e in stuck})}
        for execution in stuck:
            # counted: workflow code that ends its process (os._exit, a crash, running out of
            # memory) would otherwise be stepped again forever
            lost = DurableRetryError(_who(takers.get(execution.step_claimed_by_id or 0),
                                          "the process taking it"), type="WorkerLostError")
            count_step_failure(execution.pk, lost, what=_STEP_PROCESS_DIED,
                               held_by=execution.step_claimed_by_id, request_step=batch)
            count += 1
        count += _resend_queued_to(Worker.objects.filter(
            pk__in=dead, parent__isnull=True, stopped_at__isnull=True), now, batch)
        if len(held) < limit and len(stuck) < limit:  # else the next pass takes the rest
            mark_recovered(dead, now)
        batch.commit()
    return count


def _resend_queued_to(workers: QuerySet[Worker], now: datetime, batch: OutboxBatch,
                      limit: int = 1000) -> int:
    """Re-send attempts queued on the queues of ``workers`` (dead, not yet handled) before
    they died, then mark the workers stopped so this happens once."""
    count = 0
    for worker in list(workers):
        queues = [q for q in (worker.queues or []) if q.endswith("-activity")]
        if queues:
            count += _resend_unclaimed(Q(dispatched_at__lt=worker.heartbeat_at), queues, now,
                                       batch, limit)
        Worker.objects.filter(Q(pk=worker.pk) | Q(parent_id=worker.pk),
                              stopped_at__isnull=True).update(stopped_at=now)
    return count


def _resend_unclaimed(condition: Q, queues: list[str] | None, now: datetime,
                      batch: OutboxBatch, limit: int) -> int:
    qs = HistoryEvent.objects.open_activities().filter(
        condition, worker__isnull=True, started_at__isnull=True,
        dispatched_at__isnull=False).select_related("execution").order_by("dispatched_at")
    count = 0
    for event in list(_locked(qs)[:limit]):
        queue = f"{event.input.get('task_queue') or event.execution.task_queue}-activity"
        if queues is not None and queue not in queues:
            continue
        dispatch_attempt(event.execution, event, now, batch)
        count += 1
    return count


def recover_timed_out_attempts(now: datetime | None = None, limit: int = 200) -> int:
    """Fail attempts past their ``start_to_close_timeout`` or ``heartbeat_timeout`` that their
    worker did not end itself (a hung process, an attempt completed from elsewhere that never
    came back); the retry policy decides what follows."""
    now = now or clock.now()
    count = 0
    late = HistoryEvent.objects.open_activities().filter(
        started_at__isnull=False, lease_until__lt=now).select_related("execution")[:limit]
    for event in list(late):
        message = (f"attempt {event.attempts} of activity {event.name!r} exceeded its "
                   f"start_to_close_timeout or heartbeat_timeout")
        failure = AttemptFailure(FailureKind.TIMED_OUT, DurableTimeoutError(message).to_dict())
        decision, _ = record_attempt_failure(
            activity_message(event.execution, event), failure, worker_id=event.worker_id,
            outcome=AttemptOutcome.TIMED_OUT, started_at=event.started_at,
            celery_task_id=event.celery_task_id)
        count += decision is not None
    return count


def recover_lost_messages(now: datetime | None = None, *, broker_lost: bool = False,
                          limit: int = 1000) -> int:
    """Send again attempts that waited in their queue longer than ``DURABLE_ACTIVITY_LEASE``
    (or every queued attempt, when the broker lost its messages), and ask for the steps that
    local activities waiting to be claimed need."""
    now = now or clock.now()
    queue_lease = timedelta(seconds=float(durable_setting("DURABLE_ACTIVITY_LEASE")))
    with transaction.atomic():
        batch = OutboxBatch()
        condition = Q() if broker_lost else Q(dispatched_at__lt=now - queue_lease)
        count = _resend_unclaimed(condition, None, now, batch, limit)
        for event in HistoryEvent.objects.open_activities().filter(
                worker__isnull=True, started_at__isnull=True, dispatched_at__isnull=True,
                input__local=True).select_related("execution")[:limit]:
            if is_local(event):
                request_local_run(event.execution, batch)
                count += 1
        batch.commit()
    if broker_lost:
        count += republish_outbox(now, everything=True)
        count += request_missed_steps(now, everything=True)
        report_broker_loss(count)
    return count


def report_broker_loss(sent_again: int) -> None:
    """Log what the sweeper did about a broker that holds none of the messages it was given: a
    warning when work was sent again, a note when there was none (a new broker)."""
    if sent_again:
        logger.warning("durable_celery: the broker holds none of the messages it was given (it "
                       "restarted empty or was purged); sent %d queued attempts, outbox "
                       "messages and step requests again", sent_again)
    else:
        logger.info("durable_celery: the broker held no canary message (it is new, restarted "
                    "empty or was purged); nothing queued needed sending again")


def request_missed_steps(now: datetime | None = None, *, everything: bool = False) -> int:
    """Request a step for runs that have news no step has seen for a while.

    Each such run is touched (``updated_at``) as it is re-requested, so while workers are down
    it gets one request per ``DURABLE_STEP_REDRIVE_AFTER``, not one per sweep.
    """
    now = now or clock.now()
    before = now if everything else now - timedelta(
        seconds=float(durable_setting("DURABLE_STEP_REDRIVE_AFTER")))
    free = Q(execution__step_claimed_by__isnull=True) | Q(execution__step_claimed_until__lt=now)
    pending = set(HistoryEvent.objects.news().filter(
        free, completed_at__lt=before, execution__updated_at__lt=before,
        execution__status__in=ACTIVE_STATUSES)
        .values_list("execution_id", "execution__task_queue").distinct()[:1000])
    pending |= set(WorkflowExecution.objects.needing_step(before)
                   .filter(Q(step_claimed_by__isnull=True) | Q(step_claimed_until__lt=now))
                   .values_list("pk", "task_queue")[:1000])
    if not pending:
        return 0
    with transaction.atomic():
        WorkflowExecution.objects.filter(pk__in=[pk for pk, _ in pending]).update(updated_at=now)
        batch = OutboxBatch()
        for execution_pk, task_queue in pending:
            batch.request_step(execution_pk, task_queue)
        batch.commit()
    return len(pending)


def run_recovery_duties(broker_lost: Callable[[], bool] | None = None) -> None:
    """One pass of every recovery duty; a duty that fails does not stop the others.

    Args:
        broker_lost: Tells whether the broker lost its messages since the last pass (e.g. a
            Redis without persistence restarted empty); it raises when the broker does not
            answer. Asked first: an answer also tells the outbox's re-send that the broker is
            reachable.
    """
    lost: bool | None = None  # None: no answer from the broker this pass
    if broker_lost is not None:
        try:
            lost = broker_lost()
        except Exception:  # noqa: BLE001 - the broker is down; the next pass asks again
            logger.warning("durable_celery: the broker did not answer the sweeper's canary "
                           "check", exc_info=True)
    duties: list[tuple[str, Callable[[], object]]] = [
        ("republish the outbox", lambda: republish_outbox(broker_reachable=lost is not None)),
        ("recover dead workers", recover_dead_workers),
        ("recover timed-out attempts", recover_timed_out_attempts),
        ("recover lost messages", lambda: recover_lost_messages(broker_lost=bool(lost))),
        ("request missed steps", request_missed_steps),
        ("forget old workers", prune_workers),
    ]
    for name, duty in duties:
        try:
            duty()
        except Exception:  # noqa: BLE001 - the next pass retries; other duties go on
            logger.exception("durable_celery: sweeper duty %r failed", name)
            from django.db import connection

            connection.close()
