"""Recording what an activity attempt produced: a result, a retry, or a final failure."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..errors import DurableError, DurableFatalError, DurableMaxedError, DurableTimeoutError
from ..models import HistoryEvent, Timer, TimerKind
from ..retry import RetryPolicy
from .commands import started_activity_lease
from .outbox import OutboxBatch
from .steps import settle_and_continue

__all__ = ["record_activity_failure", "record_activity_result",
           "start_attempt"]

#: Failures an activity raises to stop retrying: the workflow sees the same class.
NOT_RETRIED = (DurableFatalError, DurableTimeoutError, DurableMaxedError)


def start_attempt(message: dict[str, Any], celery_task_id: str | None) -> bool:
    """Claim this attempt for this delivery, if it is still current; its lease begins.

    A second copy of the message (another Celery task id) finds the attempt claimed and runs
    nothing, even while the first copy is still running; a redelivery of the same message (same
    task id, e.g. after its worker died) may run it again.

    Returns:
        ``False`` when the call is settled, a later attempt replaced this one, or another
        delivery owns it (run nothing).
    """
    timeout = message.get("timeout")
    return bool(HistoryEvent.objects.filter(
        Q(claimed_by__isnull=True) | Q(claimed_by=celery_task_id),
        pk=message["event"], status="scheduled", attempts=message["attempt"],
        execution__status__in=("pending", "running")).update(
            claimed_by=celery_task_id,
            lease_until=started_activity_lease(
                timezone.now(), None if timeout is None else float(timeout))))


def record_activity_result(message: dict[str, Any], value: Any,
                           celery_task_id: str | None) -> bool:
    """Record a successful attempt (first writer wins) and continue the workflow.

    Returns:
        Whether this attempt's result was the one recorded.
    """
    def settle(_batch: OutboxBatch) -> bool:
        return HistoryEvent.objects.settle(message["event"], result=value, now=timezone.now(),
                                           celery_task_id=celery_task_id)

    return settle_and_continue(message["execution"], message["task_queue_of_workflow"],
                               message["workflow_name"], settle)


def record_activity_failure(message: dict[str, Any], error: BaseException,
                            celery_task_id: str | None) -> str:
    """Record a failed attempt: schedule a retry, or settle the call as failed.

    Returns:
        ``"retry"``, ``"failed"``, or ``"stale"`` (another attempt already decided).
    """
    attempt = int(message["attempt"])
    stored = (error.to_dict() if isinstance(error, DurableError)
              else {"type": type(error).__name__, "message": str(error), "code": 599})
    policy = RetryPolicy.from_dict(message.get("retry_policy"))
    now = timezone.now()
    if not isinstance(error, NOT_RETRIED) and policy.allows_retry(attempt):
        with transaction.atomic():  # never an attempt count bumped without its retry timer
            updated = HistoryEvent.objects.filter(
                pk=message["event"], status="scheduled", attempts=attempt).update(
                    attempts=attempt + 1, error=stored, lease_until=None, claimed_by=None,
                    celery_task_id=celery_task_id)
            if not updated:
                return "stale"
            Timer.objects.create(
                execution_id=message["execution"], event_id=message["event"],
                kind=TimerKind.ACTIVITY_RETRY,
                due_at=now + timedelta(seconds=policy.delay_before_retry(attempt)))
        return "retry"
    if not isinstance(error, NOT_RETRIED):
        stored = DurableMaxedError(str(stored["message"])).to_dict()

    def settle(_batch: OutboxBatch) -> bool:
        return HistoryEvent.objects.settle(message["event"], error=stored, now=now,
                                           celery_task_id=celery_task_id, attempt=attempt)

    recorded = settle_and_continue(message["execution"], message["task_queue_of_workflow"],
                                   message["workflow_name"], settle)
    return "failed" if recorded else "stale"
