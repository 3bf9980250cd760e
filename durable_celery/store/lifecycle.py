"""Storage side of a run's life: cancellation requests, the calls a cancellation ended,
continuing as new, and waiting for a child started earlier (``child_result``)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .. import clock
from ..engine.history import CANCEL_KIND, CANCEL_POSITION
from ..errors import WorkflowNotFoundError
from ..models import (
    ExecutionStatus,
    HistoryEvent,
    HistoryStatus,
    Timer,
    WorkflowExecution,
)
from .effects import StepEffects
from .executions import create_execution, current_run, get_execution
from .finish import FINISHED_FIELDS, child_outcome_for_parent, finish_execution
from .outbox import OutboxBatch

__all__ = ["await_started_child", "cancelled_call_error", "continue_run", "end_cancelled_calls",
           "request_cancel"]


def cancelled_call_error(reason: str) -> dict[str, Any]:
    """What a call ended by a cancellation records (a call closed because its run ended
    records none, which is how :mod:`~durable_celery.store.resume` tells them apart)."""
    return {"class": "DurableInterruptedError", "type": "CancelledError",
            "message": f"cancelled: {reason}", "code": 410}


def request_cancel(namespace: str, workflow_id: str, run_id: str | None = None,
                   reason: str | None = None, descend: bool = False) -> list[str]:
    """Ask the run to cancel itself (cooperatively); with ``descend``, its running descendants
    too.

    A ``cancel`` record is stored at position 0 of the run's main thread, not yet seen by any
    step, and a step is requested: the step that sees it delivers ``asyncio.CancelledError`` to
    the calls the workflow waits on (see ``ReplayContext``). A run that has ended, or whose
    cancellation was already requested, is left as it is.

    Returns:
        Ids of the workflows whose cancellation this call requested.

    Raises:
        WorkflowNotFoundError: No run has this id (or this run id).
    """
    target = get_execution(namespace, workflow_id, run_id)
    requested: list[str] = []
    with transaction.atomic():
        batch = OutboxBatch()
        frontier = [target.pk]
        while frontier:
            execution = WorkflowExecution.objects.lock(frontier.pop())
            if execution is None or not execution.is_active:
                continue
            if _record_cancel(execution, reason, descend, batch):
                requested.append(execution.workflow_id)
            if descend:
                frontier.extend(WorkflowExecution.objects.active().filter(
                    namespace=namespace, parent_workflow_id=execution.workflow_id)
                    .values_list("pk", flat=True))
        batch.commit()
    return requested


def _record_cancel(execution: WorkflowExecution, reason: str | None, descend: bool,
                   batch: OutboxBatch) -> bool:
    if HistoryEvent.objects.filter(execution_id=execution.pk, dimension="",
                                   seq=CANCEL_POSITION).exists():
        return False  # requested before: a run is told once
    now = clock.now()
    request = {"reason": reason, "descend": bool(descend)}
    HistoryEvent.objects.create(
        execution=execution, dimension="", seq=CANCEL_POSITION, kind=CANCEL_KIND,
        status=HistoryStatus.COMPLETED, input=request, result=request, completed_at=now)
    execution.cancel_requested_at = now
    execution.save(update_fields=["cancel_requested_at", "updated_at"])
    batch.request_step(execution.pk, execution.task_queue)
    return True


def end_cancelled_calls(execution: WorkflowExecution, seqs: list[int], reason: str,
                        effects: StepEffects) -> set[int]:
    """Mark the main thread's calls a cancellation ended (in this step) as cancelled, and drop
    their timers (call inside the step's transaction). Their late outcomes are refused, and a
    running activity learns at its next heartbeat that it is no longer wanted.

    Returns:
        Primary keys of the rows ended.
    """
    if not seqs:
        return set()
    pks = set(HistoryEvent.objects.filter(
        execution_id=execution.pk, dimension="", seq__in=seqs, status=HistoryStatus.SCHEDULED)
        .values_list("pk", flat=True))
    if pks:
        HistoryEvent.objects.filter(pk__in=pks, status=HistoryStatus.SCHEDULED).update(
            status=HistoryStatus.CANCELLED, error=cancelled_call_error(reason),
            completed_at=effects.now, lease_until=None)
        Timer.objects.filter(event_id__in=pks).delete()
    return pks


def continue_run(execution: WorkflowExecution, args: list[Any], effects: StepEffects) -> None:
    """End ``execution`` as continued and store its next run (inside the step's transaction).

    The next run has the same workflow id, name and task queue, ``args``, an empty history,
    ``previous_run_id`` naming this run, and keeps the retry policy, ``expire``, search fields,
    entity type and document, parent and origin, and the ``execution_timeout`` deadline.
    """
    now = effects.now
    finish_execution(execution, ExecutionStatus.CONTINUED, now=now, batch=effects.batch)
    execution.save(update_fields=FINISHED_FIELDS)
    remaining = None if execution.timeout_at is None else \
        max((execution.timeout_at - now).total_seconds(), 0.0)
    create_execution(
        namespace=execution.namespace, workflow_id=execution.workflow_id,
        workflow_name=execution.workflow_name, task_queue=execution.task_queue, args=args,
        search=dict(effects.search_fields()), entity=execution.entity,
        document=execution.document, expire=execution.expire,
        retry_policy=execution.retry_policy, parent_workflow_id=execution.parent_workflow_id,
        parent_run_id=execution.parent_run_id, origin_workflow_id=execution.origin_workflow_id,
        execution_timeout=remaining, previous_run_id=execution.run_id, batch=effects.batch)


def await_started_child(execution: WorkflowExecution, row: HistoryEvent,
                        effects: StepEffects) -> None:
    """Command handler of ``child_result``: settle the call now when the child has ended;
    otherwise the child's ending settles it (``finish.notify_parent``).

    Looked up after the step's other writes (a child started in this same step exists by
    then), with the child's row locked, so an ending committed meanwhile is seen here or sees
    this call.
    """
    child_id = str(row.input.get("workflow_id", ""))

    def settle_if_ended() -> None:
        found = current_run(execution.namespace, child_id)
        child = WorkflowExecution.objects.lock(found.pk) if found is not None else None
        if child is None or child.parent_workflow_id != execution.workflow_id:
            error = WorkflowNotFoundError(
                f"workflow {execution.workflow_id!r} started no child with id {child_id!r} in "
                f"namespace {execution.namespace!r}; child_result waits only for children "
                f"started with workflow.start_child")
            HistoryEvent.objects.settle(row.pk, error=error.to_dict(), now=effects.now)
        elif not child.is_active and child.status != ExecutionStatus.CONTINUED:
            outcome = child_outcome_for_parent(child)
            HistoryEvent.objects.settle(row.pk, result=outcome.get("result"),
                                        error=outcome.get("error"), now=effects.now)

    effects.defer(settle_if_ended)
