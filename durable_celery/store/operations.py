"""What operators do to executions: signal, interrupt, retry a failed step, re-run an activity.

Every operation is recorded in the execution's history as a row of kind ``"operator"`` in the
dimension :data:`OPERATOR_DIMENSION`, which no workflow thread uses (replay loads only its own
dimension), with ``name`` = the action and ``input = {"user": ..., ...}``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max

from .. import clock
from ..errors import DurableError
from ..models import (
    ExecutionStatus,
    HistoryEvent,
    HistoryStatus,
    Timer,
    WorkflowExecution,
)
from .dispatch import dispatch_attempt
from .executions import get_execution, interrupt_execution, send_signal
from .outbox import OutboxBatch

__all__ = [
    "OPERATOR_DIMENSION",
    "OPERATOR_KIND",
    "OperationError",
    "failed_step_of",
    "interrupt_as_operator",
    "record_operator_action",
    "rerun_activity",
    "retry_execution",
    "signal_as_operator",
]

#: History dimension of operator rows; never a workflow thread's dimension.
OPERATOR_DIMENSION = "operator"
#: History kind of operator rows.
OPERATOR_KIND = "operator"


class OperationError(DurableError):
    """An operation cannot be applied to the execution in its current state."""

    code = 400


def record_operator_action(execution: WorkflowExecution, action: str, user: str,
                           **details: Any) -> HistoryEvent:
    """Add a completed ``operator`` history row: who did what (call inside a transaction).

    Args:
        execution: The execution acted on (lock it first when others may record concurrently).
        action: What was done (``"signal"``, ``"interrupt"``, ``"retry"``, ``"rerun"``).
        user: Who did it.
        **details: JSON-serialisable particulars, stored next to the user.
    """
    now = clock.now()
    last = HistoryEvent.objects.filter(execution=execution, dimension=OPERATOR_DIMENSION) \
        .aggregate(last=Max("seq"))["last"] or 0
    return HistoryEvent.objects.create(
        execution=execution, dimension=OPERATOR_DIMENSION, seq=last + 1, kind=OPERATOR_KIND,
        name=action, status=HistoryStatus.COMPLETED, attempts=0,
        input={"user": user, **details}, observed_step=execution.step_count,
        completed_at=now)


def _locked(namespace: str, workflow_id: str, run_id: str | None = None) -> WorkflowExecution:
    execution = get_execution(namespace, workflow_id, run_id)
    locked = WorkflowExecution.objects.lock(execution.pk)
    if locked is None:  # deleted meanwhile
        return get_execution(namespace, workflow_id, run_id)
    return locked


def signal_as_operator(namespace: str, signal_id: str, data: Any, user: str,
                       workflow_id: str | None = None) -> int:
    """Send a signal and record who sent it.

    Args:
        namespace: Namespace of the signal.
        signal_id: The signal id.
        data: JSON payload (already validated).
        user: Who sends it.
        workflow_id: The execution the operator addressed (recorded there); without it the
            action is recorded on every execution waiting for ``signal_id``.

    Returns:
        How many waiting workflow threads received it (0: buffered for a later wait).

    Raises:
        WorkflowNotFoundError: ``workflow_id`` names no execution.
    """
    if not signal_id:
        raise OperationError("a signal needs a non-empty signal id")
    with transaction.atomic():
        if workflow_id is not None:
            targets = [_locked(namespace, workflow_id)]
        else:
            pks = sorted(set(HistoryEvent.objects.waiting_for(namespace, signal_id)
                             .values_list("execution_id", flat=True)))
            targets = [e for e in (WorkflowExecution.objects.lock(pk) for pk in pks)
                       if e is not None]
        woken = send_signal(namespace, signal_id, data)
        for execution in targets:
            record_operator_action(execution, "signal", user, signal_id=signal_id, data=data,
                                   woken=woken)
    return woken


def interrupt_as_operator(namespace: str, workflow_id: str, user: str,
                          reason: str | None = None, descend: bool = False) -> list[str]:
    """Interrupt an execution (with ``descend``, its descendants) and record who did it.

    Returns:
        Ids of the executions interrupted (empty when it had already finished).

    Raises:
        WorkflowNotFoundError: No execution has this id.
        OperationError: The execution has already finished.
    """
    with transaction.atomic():
        execution = _locked(namespace, workflow_id)
        if not execution.is_active:
            raise OperationError(
                f"workflow {workflow_id!r} is {execution.status}; only a pending or running "
                f"workflow can be interrupted")
        interrupted = interrupt_execution(namespace, workflow_id, reason or
                                          f"interrupted by {user}", descend)
        record_operator_action(execution, "interrupt", user, reason=reason, descend=descend,
                               interrupted=interrupted)
    return interrupted


def failed_step_of(execution: WorkflowExecution) -> list[HistoryEvent]:
    """The failed activity rows the failure of ``execution`` came from.

    These are the failed activity calls whose error is the one the workflow ended with (the
    workflow let it propagate). Empty when the workflow function failed by itself.
    """
    error = execution.error or {}
    rows = HistoryEvent.objects.filter(execution=execution, kind="activity",
                                       status=HistoryStatus.FAILED) \
        .exclude(dimension=OPERATOR_DIMENSION).order_by("dimension", "seq")
    return [row for row in rows
            if (row.error or {}).get("message") == error.get("message")
            and (row.error or {}).get("type") == error.get("type")]


def retry_execution(namespace: str, workflow_id: str, user: str) -> dict[str, Any]:
    """Resume a failed workflow from its failed step, keeping the history before it.

    The failed activity rows (see :func:`failed_step_of`) are reset to scheduled with their
    attempts restarted and dispatched again; when the workflow function itself failed, a new
    replay step is requested instead. The execution runs again with its error cleared.

    Returns:
        ``{"workflow_id", "mode": "activity" | "step", "events": [seq, ...]}``.

    Raises:
        WorkflowNotFoundError: No execution has this id.
        OperationError: The execution has not failed.
    """
    with transaction.atomic():
        execution = _locked(namespace, workflow_id)
        _require_failed(execution)
        rows = failed_step_of(execution)
        previous = execution.error
        batch = OutboxBatch()
        _revive(execution, step_requested=not rows)
        for row in rows:
            _redispatch(execution, row, batch)
        if not rows:
            batch.request_step(execution.pk, execution.task_queue)
        mode = "activity" if rows else "step"
        record_operator_action(
            execution, "retry", user, mode=mode, previous_error=previous,
            events=[{"dimension": r.dimension, "seq": r.seq, "name": r.name} for r in rows])
        batch.commit()
    return {"workflow_id": workflow_id, "mode": mode, "events": [r.seq for r in rows]}


def rerun_activity(namespace: str, workflow_id: str, event_pk: int, user: str) -> dict[str, Any]:
    """Run a permanently failed activity call of a failed workflow again.

    Same mechanism as :func:`retry_execution`, for the given history row.

    Raises:
        WorkflowNotFoundError: No execution has this id.
        OperationError: The execution has not failed, or the row is not a failed activity of it.
    """
    with transaction.atomic():
        execution = _locked(namespace, workflow_id)
        _require_failed(execution)
        row = HistoryEvent.objects.filter(pk=event_pk, execution=execution).first()
        if row is None or row.kind != "activity" or row.status != HistoryStatus.FAILED:
            raise OperationError(f"history row {event_pk} of workflow {workflow_id!r} is not a "
                                 f"failed activity call")
        previous = execution.error
        batch = OutboxBatch()
        _revive(execution, step_requested=False)
        _redispatch(execution, row, batch)
        record_operator_action(execution, "rerun", user, dimension=row.dimension, seq=row.seq,
                               activity=row.name, previous_error=row.error,
                               workflow_error=previous)
        batch.commit()
    return {"workflow_id": workflow_id, "mode": "activity", "events": [row.seq]}


def _require_failed(execution: WorkflowExecution) -> None:
    if execution.status != ExecutionStatus.FAILED:
        raise OperationError(f"workflow {execution.workflow_id!r} is {execution.status}; only "
                             f"a failed workflow can be retried")


def _revive(execution: WorkflowExecution, *, step_requested: bool) -> None:
    execution.status = ExecutionStatus.RUNNING
    execution.error = None
    execution.result = None
    execution.completed_at = None
    execution.attempt = 1
    execution.step_requested = step_requested
    execution.save()
    Timer.objects.filter(execution=execution).delete()


def _redispatch(execution: WorkflowExecution, row: HistoryEvent, batch: OutboxBatch) -> None:
    """Reopen a failed activity call with its attempts restarted, and dispatch it."""
    now = clock.now()
    row.status = HistoryStatus.SCHEDULED
    row.attempts = 1
    row.error = None
    row.result = None
    row.observed_step = None
    row.completed_at = None
    row.save(update_fields=["status", "attempts", "error", "result", "observed_step",
                            "completed_at"])
    dispatch_attempt(execution, row, now, batch)
