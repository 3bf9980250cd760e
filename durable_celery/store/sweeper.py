"""What the sweeper does on each pass: fire due timers, re-send what was lost, re-drive work."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..conf import durable_setting
from ..errors import DurableMaxedError
from ..managers import supports_row_locks
from ..models import (
    HistoryEvent,
    OutboxMessage,
    Timer,
    TimerKind,
    WorkflowExecution,
    WorkflowThread,
)
from ..retry import RetryPolicy
from .commands import activity_lease, activity_message
from .outbox import RUN_ACTIVITY_TASK, OutboxBatch, publish_messages

__all__ = ["fire_due_timers", "redrive_lost_activities", "republish_outbox",
           "request_missed_steps"]

logger = logging.getLogger(__name__)


def fire_due_timers(now: datetime | None = None, limit: int = 100) -> int:
    """Claim due timers (no two sweepers get the same one) and act on each.

    Returns:
        How many timers fired.
    """
    now = now or timezone.now()
    with transaction.atomic():
        timers = Timer.objects.claim_due(now, limit)
        if not timers:
            return 0
        batch = OutboxBatch()
        for timer in timers:
            _fire(timer, now, batch)
        Timer.objects.filter(pk__in=[t.pk for t in timers]).delete()
        batch.commit()
    return len(timers)


def _fire(timer: Timer, now: datetime, batch: OutboxBatch) -> None:
    execution = WorkflowExecution.objects.filter(pk=timer.execution_id).only(
        "pk", "task_queue", "status").first()
    if execution is None or not execution.is_active:
        return
    if timer.kind == TimerKind.WORKFLOW_RETRY:
        WorkflowExecution.objects.filter(pk=execution.pk).update(step_requested=True,
                                                                 updated_at=now)
        batch.request_step(execution.pk, execution.task_queue)
        return
    if timer.kind == TimerKind.HOOK_RETRY:
        if timer.thread_id is not None and WorkflowThread.objects.filter(
                pk=timer.thread_id, status="running").update(step_requested=True):
            batch.request_step(execution.pk, execution.task_queue)
        return
    if timer.event_id is None:
        return
    if timer.kind == TimerKind.ACTIVITY_RETRY:
        event = HistoryEvent.objects.filter(pk=timer.event_id, status="scheduled").first()
        if event is not None:
            full = WorkflowExecution.objects.get(pk=execution.pk)
            event.lease_until = activity_lease(now, event.input.get("start_to_close_timeout"))
            event.save(update_fields=["lease_until"])
            queue = f"{event.input.get('task_queue') or full.task_queue}-activity"
            batch.add(RUN_ACTIVITY_TASK, queue, [activity_message(full, event)])
        return
    if timer.kind == TimerKind.SLEEP:
        event = HistoryEvent.objects.filter(pk=timer.event_id).only("input").first()
        result: object = float(event.input.get("seconds", 0)) if event else 0.0
    else:  # wait timeout: the wait returns False unless a signal came first
        result = False
    if HistoryEvent.objects.settle(timer.event_id, result=result, now=now):
        batch.request_step(execution.pk, execution.task_queue)


def republish_outbox(now: datetime | None = None) -> int:
    """Re-send outbox messages whose publication was never confirmed."""
    now = now or timezone.now()
    before = now - timedelta(seconds=float(durable_setting("DURABLE_OUTBOX_REPUBLISH_AFTER")))
    with transaction.atomic():
        stale = OutboxMessage.objects.claim_stale(before)
        if not stale:
            return 0
        OutboxMessage.objects.filter(pk__in=[m.pk for m in stale]).update(
            publish_attempts=1)
        return publish_messages(stale)


def redrive_lost_activities(now: datetime | None = None, limit: int = 100) -> int:
    """Start a new attempt of every activity whose attempt outlived its lease.

    The lost attempt counts as a failed try: when the retry policy allows no more, the call
    fails with ``DurableMaxedError``.
    """
    now = now or timezone.now()
    count = 0
    with transaction.atomic():
        qs = HistoryEvent.objects.lost_activities(now).order_by("lease_until")
        if supports_row_locks():
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        batch = OutboxBatch()
        for event in list(qs[:limit]):
            execution = WorkflowExecution.objects.get(pk=event.execution_id)
            policy = RetryPolicy.from_dict(event.input.get("retry_policy"))
            lost = (f"activity {event.name!r} attempt {event.attempts} did not finish within "
                    f"its lease (worker lost or start_to_close_timeout exceeded)")
            if policy.allows_retry(event.attempts):
                event.attempts += 1
                event.lease_until = activity_lease(now, event.input.get("start_to_close_timeout"))
                event.error = {"type": "DurableRetryError", "message": lost, "code": 599}
                event.claimed_by = None
                event.save(update_fields=["attempts", "lease_until", "error", "claimed_by"])
                queue = f"{event.input.get('task_queue') or execution.task_queue}-activity"
                batch.add(RUN_ACTIVITY_TASK, queue, [activity_message(execution, event)])
            elif HistoryEvent.objects.settle(event.pk, error=DurableMaxedError(lost).to_dict(),
                                             now=now):
                batch.request_step(execution.pk, execution.task_queue)
            logger.warning("durable_celery: %s (workflow %s)", lost, execution.workflow_id)
            count += 1
        batch.commit()
    return count


def request_missed_steps(now: datetime | None = None) -> int:
    """Request a step for executions that have news no step has seen for a while.

    Each such execution is touched (``updated_at``) as it is re-requested, so while workers are
    down it gets one request per ``DURABLE_STEP_REDRIVE_AFTER``, not one per sweep.
    """
    now = now or timezone.now()
    before = now - timedelta(seconds=float(durable_setting("DURABLE_STEP_REDRIVE_AFTER")))
    pending = set(HistoryEvent.objects.unobserved().filter(
        completed_at__lt=before, execution__updated_at__lt=before,
        execution__status__in=("pending", "running"))
        .values_list("execution_id", "execution__task_queue").distinct())
    pending |= set(WorkflowExecution.objects.needing_step(before)
                   .values_list("pk", "task_queue"))
    if not pending:
        return 0
    with transaction.atomic():
        WorkflowExecution.objects.filter(pk__in=[pk for pk, _ in pending]).update(updated_at=now)
        batch = OutboxBatch()
        for execution_pk, task_queue in pending:
            batch.request_step(execution_pk, task_queue)
        batch.commit()
    return len(pending)
