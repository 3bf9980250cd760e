"""Storage side of composition: child workflows, hook threads, interrupts from a workflow.

The step operations here run while the workflow decides (outside any transaction): they check
what they can (a child id already running, a hook's target) and leave their writes to the step's
transaction through :class:`~durable_celery.store.effects.StepEffects`.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from ..errors import DuplicateWorkflowError, WorkflowNotFoundError, WorkflowNotRunningError
from ..models import ACTIVE_STATUSES, HistoryEvent, WorkflowExecution, WorkflowThread
from .effects import StepEffects
from .executions import create_execution, interrupt_execution
from .outbox import OutboxBatch

__all__ = ["fail_hook_waiters", "hook_operation", "interrupt_operation", "new_hook_dimension",
           "start_awaited_child", "start_child_operation", "start_hook_thread"]


def _create_child(parent: WorkflowExecution, spec: dict[str, Any],
                  batch: OutboxBatch) -> WorkflowExecution:
    return create_execution(
        namespace=parent.namespace, workflow_id=spec["workflow_id"],
        workflow_name=spec["workflow_name"], task_queue=spec["task_queue"], args=spec["args"],
        entity=spec.get("entity"), expire=spec.get("expire") or parent.expire,
        retry_policy=spec.get("retry_policy"), parent_workflow_id=parent.workflow_id,
        parent_run_id=parent.run_id,
        origin_workflow_id=parent.origin_workflow_id or parent.workflow_id,
        execution_timeout=spec.get("execution_timeout"), batch=batch)


def start_awaited_child(execution: WorkflowExecution, row: HistoryEvent,
                        effects: StepEffects) -> None:
    """Command handler of ``exec_child``: create the child; a running id fails the call now."""
    try:
        _create_child(execution, row.input, effects.batch)
    except DuplicateWorkflowError as error:
        HistoryEvent.objects.settle(row.pk, error=error.to_dict(), now=effects.now)


def _running(namespace: str, workflow_id: str) -> WorkflowExecution | None:
    return WorkflowExecution.objects.filter(namespace=namespace, workflow_id=workflow_id,
                                            status__in=ACTIVE_STATUSES).first()


def start_child_operation(execution: WorkflowExecution, effects: StepEffects, operation: str,
                          spec: dict[str, Any]) -> str:
    """Port operation of ``start_child``: refuse a running id now, create the child with the
    step (a race with another start still fails that step, which then retries and refuses)."""
    running = _running(execution.namespace, spec["workflow_id"])
    if running is not None:
        raise DuplicateWorkflowError(
            f"workflow {spec['workflow_id']!r} is already running in namespace "
            f"{execution.namespace!r} ({running.workflow_name}, {running.status})")
    def create() -> None:
        _create_child(execution, spec, effects.batch)

    effects.defer(create)
    return str(spec["workflow_id"])


def new_hook_dimension() -> str:
    """A fresh history dimension for a hook thread."""
    return f"h{uuid.uuid4().hex[:12]}"


def start_hook_thread(target: WorkflowExecution, workflow_name: str, task_queue: str | None,
                      args: list[Any], retry_policy: dict[str, Any] | None = None,
                      dimension: str | None = None) -> WorkflowThread:
    """Create a hook thread inside ``target`` (call inside a transaction).

    Its failures are retried by ``retry_policy`` (default ``RetryPolicy()``).

    Raises:
        WorkflowNotRunningError: ``target`` has ended.
    """
    if not target.is_active:
        raise WorkflowNotRunningError(
            f"workflow {target.workflow_id!r} is {target.status}; hook {workflow_name!r} was "
            f"not started")
    return WorkflowThread.objects.create(
        execution=target, dimension=dimension or new_hook_dimension(),
        workflow_name=workflow_name, task_queue=task_queue or target.task_queue, args=args,
        retry_policy=retry_policy)


def fail_hook_waiters(execution: WorkflowExecution, thread: WorkflowThread,
                      error: dict[str, Any], effects: StepEffects) -> None:
    """Settle the ``exec_hook`` waits for a hook that failed for good with its error.

    The hook's last argument names the signal its caller waits for (``{"signal": id,
    "$durable": True}``); without one nobody waits and nothing happens.
    """
    info = thread.args[-1] if thread.args else None
    if not (isinstance(info, dict) and info.get("$durable") and info.get("signal")):
        return
    waiting = HistoryEvent.objects.waiting_for(execution.namespace, str(info["signal"]))
    for pk, waiter_pk, task_queue in waiting.values_list("pk", "execution_id",
                                                         "execution__task_queue"):
        if HistoryEvent.objects.settle(pk, error=error, now=effects.now) \
                and waiter_pk != execution.pk:
            effects.batch.request_step(waiter_pk, task_queue)


def _find_target(execution: WorkflowExecution, workflow_id: str) -> WorkflowExecution:
    if workflow_id == execution.workflow_id:
        return execution
    target = (_running(execution.namespace, workflow_id)
              or WorkflowExecution.objects.filter(namespace=execution.namespace,
                                                  workflow_id=workflow_id)
              .order_by("-id").first())
    if target is None:
        raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r} in namespace "
                                    f"{execution.namespace!r}")
    return target


def hook_operation(execution: WorkflowExecution, effects: StepEffects, operation: str,
                   spec: dict[str, Any]) -> str:
    """Port operation of ``workflow.hook``: the thread is created with the step."""
    target = _find_target(execution, spec["workflow_id"])
    if not target.is_active:
        raise WorkflowNotRunningError(
            f"workflow {target.workflow_id!r} is {target.status}; hook "
            f"{spec['workflow_name']!r} was not started")
    dimension = new_hook_dimension()

    def create() -> None:
        locked = target if target.pk == execution.pk else \
            WorkflowExecution.objects.lock(target.pk)
        if locked is None or not locked.is_active:
            return  # the target ended meanwhile: nothing runs the hook
        start_hook_thread(locked, spec["workflow_name"], spec.get("task_queue"), spec["args"],
                          spec.get("retry_policy"), dimension)
        if target.pk != execution.pk:
            effects.batch.request_step(target.pk, target.task_queue)

    effects.defer(create)
    if target.pk == execution.pk:
        effects.wake_self = True
    return dimension


def interrupt_operation(execution: WorkflowExecution, effects: StepEffects, operation: str,
                        spec: dict[str, Any]) -> list[str]:
    """Port operation of ``workflow.interrupt``; this workflow itself ends after the step."""
    if spec["workflow_id"] == execution.workflow_id:
        effects.interrupt_self = (spec.get("reason"), bool(spec.get("descend")))
        return [execution.workflow_id]
    target = _find_target(execution, spec["workflow_id"])
    if not target.is_active:
        return []

    def interrupt() -> None:
        with transaction.atomic():
            interrupt_execution(execution.namespace, spec["workflow_id"], spec.get("reason"),
                                bool(spec.get("descend")), batch=effects.batch)

    effects.defer(interrupt)
    return [spec["workflow_id"]]
