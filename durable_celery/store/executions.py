"""Starting, signalling and interrupting executions, and reading them back for people."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..errors import DuplicateWorkflowError, WorkflowNotFoundError
from ..models import (
    ExecutionStatus,
    HistoryEvent,
    HistoryStatus,
    SearchAttribute,
    Timer,
    WorkflowExecution,
)
from .outbox import OutboxBatch
from .signals import deliver_signal, lock_signal_ids

__all__ = [
    "create_execution",
    "describe_execution",
    "get_execution",
    "history_of",
    "interrupt_execution",
    "send_signal",
]


def create_execution(*, namespace: str, workflow_id: str, workflow_name: str, task_queue: str,
                     args: list[Any], search: dict[str, str] | None = None,
                     entity: str | None = None, expire: float | None = None,
                     retry_policy: dict[str, Any] | None = None,
                     parent_workflow_id: str | None = None,
                     origin_workflow_id: str | None = None,
                     batch: OutboxBatch | None = None) -> WorkflowExecution:
    """Store a new execution and request its first step, in one transaction.

    A finished execution with the same id is replaced; a running one is not.

    Raises:
        DuplicateWorkflowError: An execution with this id is still running in the namespace.
    """
    own_batch = batch is None
    batch = batch or OutboxBatch()
    try:
        with transaction.atomic():
            existing = WorkflowExecution.objects.named(namespace, workflow_id).first()
            if existing is not None:
                if existing.is_active:
                    raise DuplicateWorkflowError(
                        f"workflow {workflow_id!r} is already running in namespace "
                        f"{namespace!r} ({existing.workflow_name}, {existing.status})")
                existing.delete()
            execution = WorkflowExecution.objects.create(
                namespace=namespace, workflow_id=workflow_id, workflow_name=workflow_name,
                task_queue=task_queue, args=args, entity=entity or "", expire=expire,
                retry_policy=retry_policy, parent_workflow_id=parent_workflow_id,
                origin_workflow_id=origin_workflow_id)
            if search:
                SearchAttribute.objects.bulk_create(
                    SearchAttribute(execution=execution, key=k, value=v) for k, v in search.items())
            batch.request_step(execution.pk, task_queue)
            if own_batch:
                batch.commit()
    except IntegrityError:
        raise DuplicateWorkflowError(
            f"workflow {workflow_id!r} is already running in namespace {namespace!r}") from None
    return execution


def get_execution(namespace: str, workflow_id: str) -> WorkflowExecution:
    """Return the execution with this id.

    Raises:
        WorkflowNotFoundError: There is none in this namespace.
    """
    execution = WorkflowExecution.objects.named(namespace, workflow_id).first()
    if execution is None:
        raise WorkflowNotFoundError(
            f"no workflow with id {workflow_id!r} in namespace {namespace!r}")
    return execution


def send_signal(namespace: str, signal_id: str, data: Any) -> int:
    """Deliver a signal from outside any workflow.

    Returns:
        How many waiting workflow threads received it (0: it was buffered for a later wait).
    """
    with transaction.atomic():
        lock_signal_ids(namespace, [signal_id])
        batch = OutboxBatch()
        woken = deliver_signal(namespace, signal_id, data, now=timezone.now(), batch=batch)
        batch.commit()
    return len(woken)


def interrupt_execution(namespace: str, workflow_id: str, reason: str | None = None,
                        descend: bool = False) -> list[str]:
    """End an execution (and with ``descend`` every descendant) as interrupted.

    Its timers are cancelled and open calls marked cancelled, so late outcomes change nothing.
    Interrupting a finished execution does nothing.

    Returns:
        Ids of the executions this call interrupted.

    Raises:
        WorkflowNotFoundError: No execution has this id.
    """
    from .composition import notify_parent  # composition builds on this module

    get_execution(namespace, workflow_id)
    interrupted: list[str] = []
    message = reason or "workflow interrupted"
    batch = OutboxBatch()
    with transaction.atomic():
        frontier = [workflow_id]
        while frontier:
            current = frontier.pop()
            execution = WorkflowExecution.objects.named(namespace, current).first()
            if execution is None:
                continue
            locked = WorkflowExecution.objects.lock(execution.pk)
            if locked is not None and locked.is_active:
                now = timezone.now()
                locked.status = ExecutionStatus.INTERRUPTED
                locked.error = {"type": "DurableInterruptedError", "message": message,
                                "code": 410}
                locked.completed_at = now
                locked.step_requested = False
                locked.save()
                Timer.objects.filter(execution=locked).delete()
                HistoryEvent.objects.filter(execution=locked, status=HistoryStatus.SCHEDULED) \
                    .update(status=HistoryStatus.CANCELLED, completed_at=now, lease_until=None)
                interrupted.append(current)
                notify_parent(locked, batch)
            if descend:
                frontier.extend(WorkflowExecution.objects.filter(
                    namespace=namespace, parent_workflow_id=current)
                    .values_list("workflow_id", flat=True))
        batch.commit()
    return interrupted


def describe_execution(execution: WorkflowExecution) -> dict[str, Any]:
    """The ``describe()`` dict of an execution."""
    return {
        "workflow_id": execution.workflow_id,
        "workflow_name": execution.workflow_name,
        "task_queue": execution.task_queue,
        "namespace": execution.namespace,
        "status": execution.status,
        "args": execution.args,
        "result": execution.result,
        "error": execution.error,
        "search": dict(execution.search_attributes.values_list("key", "value")),
        "entity": execution.document,
        "entity_type": execution.entity,
        "parent_workflow_id": execution.parent_workflow_id,
        "origin_workflow_id": execution.origin_workflow_id,
        "attempt": execution.attempt,
        "expire": execution.expire,
        "created_at": execution.created_at,
        "updated_at": execution.updated_at,
        "completed_at": execution.completed_at,
    }


def history_of(execution: WorkflowExecution) -> list[dict[str, Any]]:
    """The ``history()`` list of an execution, in order."""
    return [
        {
            "seq": row.seq, "dimension": row.dimension, "kind": row.kind, "name": row.name,
            "status": row.status, "attempts": row.attempts, "input": row.input,
            "result": row.result, "error": row.error, "celery_task_id": row.celery_task_id,
            "observed_step": row.observed_step, "created_at": row.created_at,
            "completed_at": row.completed_at,
        }
        for row in execution.history.order_by("dimension", "seq")
    ]
