"""Finishing a run: the one place a run completes, fails, is interrupted or continues as new."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection

from ..models import (
    ACTIVE_STATUSES,
    ExecutionStatus,
    HistoryEvent,
    HistoryStatus,
    Timer,
    WorkflowExecution,
    WorkflowThread,
)
from .outbox import OutboxBatch
from .tables import HISTORY_TABLE, THREAD_TABLE, TIMER_TABLE

__all__ = ["FINISHED_FIELDS", "TYPED_CHILD_CODES", "child_outcome_for_parent",
           "finish_execution", "notify_parent"]

#: Execution fields :func:`finish_execution` sets (for ``save(update_fields=...)``).
FINISHED_FIELDS = ["status", "result", "error", "completed_at", "step_requested",
                   "step_claimed_by", "step_claimed_until", "updated_at"]

#: Error codes a parent sees unchanged from its child; anything else reaches it as fatal (598).
TYPED_CHILD_CODES = (596, 597, 598, 599, 410)


def finish_execution(execution: WorkflowExecution, status: str, *, now: datetime,
                     batch: OutboxBatch, result: Any = None,
                     error: dict[str, Any] | None = None) -> None:
    """End ``execution`` with ``status`` (call inside a transaction that writes it).

    Sets the run's final fields on the instance — the caller writes them (a step with its
    conditional update, anyone else with ``save(update_fields=FINISHED_FIELDS)``) — and does what
    ending means: the run's timers are deleted, its open calls are cancelled (a late activity
    result changes nothing and nothing re-drives them), its hook threads stop, and a parent
    waiting in ``exec_child`` receives the outcome and is woken. A run that continues as new
    tells nobody: its next run finishes the chain.
    """
    assert status not in ACTIVE_STATUSES, status
    execution.status = status
    execution.result = result
    execution.error = error
    execution.completed_at = now
    execution.updated_at = now
    execution.step_requested = False
    execution.step_claimed_by = None
    execution.step_claimed_until = None
    _end_open_work(execution.pk, now)
    if status != ExecutionStatus.CONTINUED:
        notify_parent(execution, batch, now)


_END_OPEN_WORK = f"""
WITH timers AS (DELETE FROM {TIMER_TABLE} WHERE execution_id = %(execution)s),
calls AS (UPDATE {HISTORY_TABLE} SET status = %(cancelled)s,
                 completed_at = %(now)s, lease_until = NULL
           WHERE execution_id = %(execution)s AND status = %(scheduled)s)
UPDATE {THREAD_TABLE} SET status = %(interrupted)s, completed_at = %(now)s
 WHERE execution_id = %(execution)s AND status = %(running)s"""


def _end_open_work(execution_pk: int, now: datetime) -> None:
    """Delete the run's timers, cancel its open calls, stop its hook threads (one statement on
    PostgreSQL)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_END_OPEN_WORK, {
                "execution": execution_pk, "now": now, "cancelled": HistoryStatus.CANCELLED,
                "scheduled": HistoryStatus.SCHEDULED, "interrupted": ExecutionStatus.INTERRUPTED,
                "running": ExecutionStatus.RUNNING})
        return
    Timer.objects.filter(execution_id=execution_pk).delete()
    HistoryEvent.objects.filter(execution_id=execution_pk, status=HistoryStatus.SCHEDULED) \
        .update(status=HistoryStatus.CANCELLED, completed_at=now, lease_until=None)
    WorkflowThread.objects.filter(execution_id=execution_pk,
                                  status=ExecutionStatus.RUNNING).update(
        status=ExecutionStatus.INTERRUPTED, completed_at=now)


def child_outcome_for_parent(child: WorkflowExecution) -> dict[str, Any]:
    """``{"result": …}`` or ``{"error": …}``: what a parent's ``exec_child`` receives."""
    if child.status == ExecutionStatus.COMPLETED:
        return {"result": child.result}
    error = dict(child.error or {"message": f"child {child.workflow_id} {child.status}"})
    if error.get("code") not in TYPED_CHILD_CODES:
        error = {**error, "class": "DurableFatalError", "code": 598}
    return {"error": error}


def notify_parent(child: WorkflowExecution, batch: OutboxBatch, now: datetime) -> None:
    """Record a finished child's outcome on its parent's waiting calls (``exec_child``,
    ``child_result``) and wake the parent."""
    if not child.parent_workflow_id:
        return
    waiting = HistoryEvent.objects.filter(
        kind__in=("child", "child_result"), status=HistoryStatus.SCHEDULED,
        execution__namespace=child.namespace,
        execution__workflow_id=child.parent_workflow_id,
        execution__status__in=ACTIVE_STATUSES,
    ).values_list("pk", "input", "execution_id", "execution__task_queue")
    outcome = child_outcome_for_parent(child)
    for pk, details, parent_pk, task_queue in waiting:
        if (details or {}).get("workflow_id") != child.workflow_id:
            continue
        if HistoryEvent.objects.settle(pk, result=outcome.get("result"),
                                       error=outcome.get("error"), now=now):
            batch.request_step(parent_pk, task_queue)
