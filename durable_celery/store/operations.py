"""What operators do to executions: signal, interrupt, resume or retry, re-run an activity.

Every operation is recorded in the execution's history as a row of kind ``"operator"`` in the
dimension :data:`OPERATOR_DIMENSION`, which no workflow thread uses (replay loads only its own
dimension), with ``name`` = the action and ``input = {"user": ..., ...}``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max

from .. import clock
from ..errors import OperationError
from ..models import (
    ExecutionStatus,
    HistoryEvent,
    HistoryStatus,
    Timer,
    WorkflowExecution,
)
from .executions import get_execution, interrupt_execution, send_signal
from .outbox import OutboxBatch
from .resume import OPERATOR_DIMENSION, failed_step_of, reopen_failed_activity, resume_run

__all__ = [
    "OPERATOR_DIMENSION",
    "OPERATOR_KIND",
    "OperationError",
    "failed_step_of",
    "cancel_as_operator",
    "interrupt_as_operator",
    "record_operator_action",
    "rerun_activity",
    "resume_as_operator",
    "retry_execution",
    "signal_as_operator",
]

#: History kind of operator rows.
OPERATOR_KIND = "operator"


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
        created_at=now, completed_at=now)


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
                          reason: str | None = None, descend: bool = False,
                          run_id: str | None = None) -> list[str]:
    """Interrupt an execution (with ``descend``, its descendants) and record who did it.

    ``run_id`` names the run acted on (default: the id's current run); only a running run can
    be interrupted, so a page showing an earlier run never reaches a later one.

    Returns:
        Ids of the executions interrupted (empty when it had already finished).

    Raises:
        WorkflowNotFoundError: No execution has this id.
        OperationError: The execution has already finished.
    """
    with transaction.atomic():
        execution = _locked(namespace, workflow_id, run_id)
        if not execution.is_active:
            raise OperationError(
                f"workflow {workflow_id!r} is {execution.status}; only a pending or running "
                f"workflow can be interrupted")
        interrupted = interrupt_execution(namespace, workflow_id, reason or
                                          f"interrupted by {user}", descend)
        record_operator_action(execution, "interrupt", user, reason=reason, descend=descend,
                               interrupted=interrupted)
    return interrupted


def cancel_as_operator(namespace: str, workflow_id: str, user: str,
                       reason: str | None = None, descend: bool = False,
                       run_id: str | None = None) -> list[str]:
    """Ask a running run to cancel itself (cooperatively; with ``descend``, its running
    descendants too) and record who asked.

    Returns:
        The ids whose cancellation was requested (empty when it was requested before).

    Raises:
        WorkflowNotFoundError: No run has this id (or this run id).
        OperationError: The run has already finished.
    """
    from .lifecycle import request_cancel

    with transaction.atomic():
        execution = _locked(namespace, workflow_id, run_id)
        if not execution.is_active:
            raise OperationError(
                f"workflow {workflow_id!r} is {execution.status}; only a pending or running "
                f"workflow can be cancelled")
        cancelled = request_cancel(namespace, workflow_id, execution.run_id,
                                   reason or f"cancelled by {user}", descend)
        record_operator_action(execution, "cancel", user, reason=reason, descend=descend,
                               cancelled=cancelled)
    return cancelled


def resume_as_operator(namespace: str, workflow_id: str, user: str,
                       run_id: str | None = None) -> dict[str, Any]:
    """Resume an interrupted or failed run from where it stopped, and record who did it.

    See :mod:`durable_celery.store.resume`. Resuming a run that completed (or continued as
    new) does nothing.

    Returns:
        ``{"workflow_id", "run_id", "resumed": bool, "failed": [...], "reopened": [...],
        "threads": [...]}`` (``resumed`` is false when there was nothing to do).

    Raises:
        WorkflowNotFoundError: No run has this id (or this run id).
        OperationError: The run is still pending or running, another run of the id is, or
            the run ended because its code let a cancellation propagate (start the workflow
            again instead).
    """
    with transaction.atomic():
        execution = _locked(namespace, workflow_id, run_id)
        report: dict[str, Any] = {"workflow_id": workflow_id, "run_id": execution.run_id,
                                  "resumed": False, "failed": [], "reopened": [],
                                  "threads": []}
        if execution.status in (ExecutionStatus.COMPLETED, ExecutionStatus.CONTINUED):
            return report
        _require_resumable(execution)
        previous = execution.error
        batch = OutboxBatch()
        done = resume_run(execution, batch)
        report.update(resumed=True, failed=done.failed, reopened=done.reopened,
                      threads=done.threads)
        record_operator_action(execution, "resume", user, previous_error=previous,
                               failed=done.failed, reopened=done.reopened,
                               threads=done.threads)
        batch.commit()
    return report


def retry_execution(namespace: str, workflow_id: str, user: str,
                    run_id: str | None = None) -> dict[str, Any]:
    """Resume a failed workflow from its failed step, keeping the history before it.

    The same as :func:`resume_as_operator` for a run that failed: the failed activity rows
    (see :func:`failed_step_of`) run again with their attempts restarted (``mode`` ``activity``)
    or, when the workflow function itself failed, a new replay step runs it (``step``).

    ``run_id`` names the run (default: the id's current run).

    Returns:
        ``{"workflow_id", "mode": "activity" | "step", "events": [seq, ...]}``.

    Raises:
        WorkflowNotFoundError: No execution has this id.
        OperationError: The execution has not failed.
    """
    with transaction.atomic():
        execution = _locked(namespace, workflow_id, run_id)
        _require_failed(execution)
        previous = execution.error
        batch = OutboxBatch()
        done = resume_run(execution, batch)
        mode = "activity" if done.failed else "step"
        record_operator_action(execution, "retry", user, mode=mode, previous_error=previous,
                               events=done.failed, reopened=done.reopened)
        batch.commit()
    return {"workflow_id": workflow_id, "mode": mode,
            "events": [row["seq"] for row in done.failed]}


def rerun_activity(namespace: str, workflow_id: str, event_pk: int, user: str,
                   run_id: str | None = None) -> dict[str, Any]:
    """Run a permanently failed activity call of a failed workflow again.

    Same mechanism as :func:`retry_execution`, for the given history row.

    Raises:
        WorkflowNotFoundError: No execution has this id.
        OperationError: The execution has not failed, or the row is not a failed activity of it.
    """
    with transaction.atomic():
        execution = _locked(namespace, workflow_id, run_id)
        _require_failed(execution)
        row = HistoryEvent.objects.filter(pk=event_pk, execution=execution).first()
        if row is None or row.kind != "activity" or row.status != HistoryStatus.FAILED:
            raise OperationError(f"history row {event_pk} of workflow {workflow_id!r} is not a "
                                 f"failed activity call")
        previous = execution.error
        batch = OutboxBatch()
        _revive(execution, step_requested=False)
        reopen_failed_activity(execution, row, clock.now(), batch)
        record_operator_action(execution, "rerun", user, dimension=row.dimension, seq=row.seq,
                               activity=row.name, previous_error=row.error,
                               workflow_error=previous)
        batch.commit()
    return {"workflow_id": workflow_id, "mode": "activity", "events": [row.seq]}


def _require_failed(execution: WorkflowExecution) -> None:
    if execution.status != ExecutionStatus.FAILED:
        raise OperationError(f"workflow {execution.workflow_id!r} is {execution.status}; only "
                             f"a failed workflow can be retried")
    _require_no_other_active_run(execution)


def _require_no_other_active_run(execution: WorkflowExecution) -> None:
    running = WorkflowExecution.objects.named(execution.namespace, execution.workflow_id) \
        .active().exclude(pk=execution.pk).values_list("run_id", flat=True).first()
    if running is not None:
        raise OperationError(
            f"workflow {execution.workflow_id!r} has a later run {running} that is still "
            f"running; run {execution.run_id} can run again once no run of the id is active")


def _require_resumable(execution: WorkflowExecution) -> None:
    if execution.is_active:
        raise OperationError(
            f"workflow {execution.workflow_id!r} (run {execution.run_id}) is "
            f"{execution.status}; only an interrupted or failed run can be resumed")
    _require_no_other_active_run(execution)
    if (execution.error or {}).get("type") == "CancelledError":
        raise OperationError(
            f"workflow {execution.workflow_id!r} (run {execution.run_id}) was cancelled and its "
            f"code ended with the cancellation; its history ends there, so it cannot be "
            f"resumed — start the workflow again")


def _revive(execution: WorkflowExecution, *, step_requested: bool) -> None:
    execution.status = ExecutionStatus.RUNNING
    execution.error = None
    execution.result = None
    execution.completed_at = None
    execution.attempt = 1
    execution.step_requested = step_requested
    execution.save()
    Timer.objects.filter(execution=execution).delete()
