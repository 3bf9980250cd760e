"""Storage side of composition: child workflows, hook threads, interrupts from a workflow."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..errors import DuplicateWorkflowError, WorkflowNotFoundError, WorkflowNotRunningError
from ..models import HistoryEvent, WorkflowExecution, WorkflowThread
from .commands import CommandEffects, register_command_handler
from .executions import create_execution, interrupt_execution
from .outbox import OutboxBatch
from .port import register_step_operation

__all__ = ["child_outcome_for_parent", "fail_hook_waiters", "notify_parent",
           "start_hook_thread"]

#: Error codes a parent sees unchanged from its child; anything else reaches it as fatal (598).
TYPED_CHILD_CODES = (596, 597, 598, 599, 410)


def _create_child(parent: WorkflowExecution, spec: dict[str, Any],
                  batch: OutboxBatch) -> WorkflowExecution:
    return create_execution(
        namespace=parent.namespace, workflow_id=spec["workflow_id"],
        workflow_name=spec["workflow_name"], task_queue=spec["task_queue"], args=spec["args"],
        entity=spec.get("entity"), expire=spec.get("expire") or parent.expire,
        retry_policy=spec.get("retry_policy"), parent_workflow_id=parent.workflow_id,
        origin_workflow_id=parent.origin_workflow_id or parent.workflow_id, batch=batch)


def _start_awaited_child(execution: WorkflowExecution, row: HistoryEvent,
                         effects: CommandEffects) -> bool:
    """Command handler of ``exec_child``: create the child; a running id fails the call now."""
    try:
        _create_child(execution, row.input, effects.batch)
    except DuplicateWorkflowError as error:
        return HistoryEvent.objects.settle(row.pk, error=error.to_dict(), now=effects.now)
    return False


def _start_child_now(execution: WorkflowExecution, effects: CommandEffects, operation: str,
                     spec: dict[str, Any]) -> str:
    """Port operation of ``start_child``: create the child in the step's transaction."""
    _create_child(execution, spec, effects.batch)
    return str(spec["workflow_id"])


def child_outcome_for_parent(child: WorkflowExecution) -> dict[str, Any]:
    """``{"result": …}`` or ``{"error": …}``: what a parent's ``exec_child`` receives."""
    if child.status == "completed":
        return {"result": child.result}
    error = dict(child.error or {"message": f"child {child.workflow_id} {child.status}"})
    if error.get("code") not in TYPED_CHILD_CODES:
        error = {"type": "DurableFatalError", "message": error.get("message", ""), "code": 598}
    return {"error": error}


def notify_parent(child: WorkflowExecution, batch: OutboxBatch) -> None:
    """Record a finished child's outcome on its parent's waiting call and wake the parent."""
    if not child.parent_workflow_id:
        return
    waiting = HistoryEvent.objects.filter(
        kind="child", status="scheduled", execution__namespace=child.namespace,
        execution__workflow_id=child.parent_workflow_id,
        execution__status__in=("pending", "running"),
    ).values_list("pk", "input", "execution_id", "execution__task_queue")
    outcome = child_outcome_for_parent(child)
    for pk, details, parent_pk, task_queue in waiting:
        if (details or {}).get("workflow_id") != child.workflow_id:
            continue
        if HistoryEvent.objects.settle(pk, result=outcome.get("result"),
                                       error=outcome.get("error"), now=timezone.now()):
            batch.request_step(parent_pk, task_queue)


def start_hook_thread(target: WorkflowExecution, workflow_name: str, task_queue: str | None,
                      args: list[Any],
                      retry_policy: dict[str, Any] | None = None) -> WorkflowThread:
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
        execution=target, dimension=f"h{uuid.uuid4().hex[:12]}", workflow_name=workflow_name,
        task_queue=task_queue or target.task_queue, args=args, retry_policy=retry_policy)


def fail_hook_waiters(execution: WorkflowExecution, thread: WorkflowThread,
                      error: dict[str, Any], effects: CommandEffects) -> bool:
    """Settle the ``exec_hook`` waits for a hook that failed for good with its error.

    The hook's last argument names the signal its caller waits for (``{"signal": id,
    "$durable": True}``); without one nobody waits and nothing happens.

    Returns:
        Whether a wait of ``execution`` itself was settled (it must step again).
    """
    info = thread.args[-1] if thread.args else None
    if not (isinstance(info, dict) and info.get("$durable") and info.get("signal")):
        return False
    settled_here = False
    waiting = HistoryEvent.objects.waiting_for(execution.namespace, str(info["signal"]))
    for pk, waiter_pk, task_queue in waiting.values_list("pk", "execution_id",
                                                         "execution__task_queue"):
        if HistoryEvent.objects.settle(pk, error=error, now=effects.now):
            if waiter_pk == execution.pk:
                settled_here = True
            else:
                effects.batch.request_step(waiter_pk, task_queue)
    return settled_here


def _find_target(execution: WorkflowExecution, workflow_id: str) -> WorkflowExecution:
    if workflow_id == execution.workflow_id:
        return execution
    target = WorkflowExecution.objects.named(execution.namespace, workflow_id).first()
    if target is None:
        raise WorkflowNotFoundError(f"no workflow with id {workflow_id!r} in namespace "
                                    f"{execution.namespace!r}")
    return target


def _start_hook(execution: WorkflowExecution, effects: CommandEffects, operation: str,
                spec: dict[str, Any]) -> str:
    """Port operation of ``workflow.hook``: create the thread in the step's transaction."""
    target = _find_target(execution, spec["workflow_id"])
    thread = start_hook_thread(target, spec["workflow_name"], spec.get("task_queue"),
                               spec["args"], spec.get("retry_policy"))
    if target.pk == execution.pk:
        effects.wake_self = True
    else:
        effects.batch.request_step(target.pk, target.task_queue)
    return thread.dimension


def _interrupt(execution: WorkflowExecution, effects: CommandEffects, operation: str,
               spec: dict[str, Any]) -> list[str]:
    """Port operation of ``workflow.interrupt``; this workflow itself ends after the step."""
    if spec["workflow_id"] == execution.workflow_id:
        effects.interrupt_self = (spec.get("reason"), bool(spec.get("descend")))
        return [execution.workflow_id]
    _find_target(execution, spec["workflow_id"])
    with transaction.atomic():
        return interrupt_execution(execution.namespace, spec["workflow_id"], spec.get("reason"),
                                   bool(spec.get("descend")))


register_command_handler("child", _start_awaited_child)
register_step_operation("start", _start_child_now)
register_step_operation("hook", _start_hook)
register_step_operation("interrupt", _interrupt)
