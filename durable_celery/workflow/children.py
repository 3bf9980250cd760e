"""``workflow.exec_child`` / ``execute_child`` / ``start_child``: workflows started by workflows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ..durations import parse_duration
from ..engine import DurableCall, ReplayContext, current_context
from ..errors import DurableError, InvalidArgumentError
from ..payloads import decode_result, encode
from ..registry import WorkflowDefinition, lookup_workflow
from ..retry import RetryPolicy
from ..validation import check_text
from ._immediate import record_in_storage

__all__ = ["exec_child", "execute_child", "start_child"]


def exec_child(workflow: WorkflowDefinition | str | None = None, *,
               workflow_name: str | None = None, args: Sequence[Any] = (),
               task_queue: str | None = None, workflow_id: str | None = None,
               entity: str | None = None, expire: float | str | None = None,
               retry_policy: RetryPolicy | dict[str, Any] | None = None) -> DurableCall:
    """Start a child workflow and return an awaitable of its result.

    First run: the child execution is created when this step commits (its parent and origin
    recorded) and the parent suspends until the child ends. Replay: the child's stored result is
    returned, or its failure raised as the same typed error (``DurableFatalError``,
    ``DurableMaxedError``, ``DurableTimeoutError``, ``DurableRetryError``) with its message —
    returned instead when ``retry_policy.throw_on_error`` is ``False``. A child id that is
    already running fails the call with ``DuplicateWorkflowError``.

    Args:
        workflow: The child's definition or registered name.
        workflow_name: The child's registered name (alternative to ``workflow``).
        args: Its arguments: JSON, dataclasses, pydantic models. When the child's definition
            is registered in this process they are checked against its signature at the call
            (``TypeError``, nothing recorded), and its result is rebuilt by its return
            annotation.
        task_queue: Its task queue (default: the definition's, else the entity, else the
            parent's).
        workflow_id: Its id (default: generated, unique across parallel and re-entrant calls).
        entity: Entity type; alone, it names both the task queue and the workflow.
        expire: Seconds to keep the child after it ends.
        retry_policy: The child's own workflow-level retry policy.
    """
    ctx = current_context()
    spec = _child_spec(ctx, workflow, workflow_name, args, task_queue, workflow_id, entity,
                       expire, retry_policy)
    policy = RetryPolicy.coerce(retry_policy)
    return ctx.schedule("child", spec["workflow_name"], lambda seq: _with_id(ctx, spec, seq),
                        transform=_result_decoder(spec["workflow_name"]),
                        throw_on_error=policy.throw_on_error if policy else True)


execute_child = exec_child


def start_child(workflow: WorkflowDefinition | str | None = None, *,
                workflow_name: str | None = None, args: Sequence[Any] = (),
                task_queue: str | None = None, workflow_id: str | None = None,
                entity: str | None = None, expire: float | str | None = None,
                retry_policy: RetryPolicy | dict[str, Any] | None = None) -> Any:
    """Start a child workflow without waiting; the awaitable returns the child's id.

    First run: the child execution is created in this step's transaction (a running id fails
    the call with ``DuplicateWorkflowError``). Replay: returns the stored id; the child is not
    started again. Options as :func:`exec_child`.
    """
    ctx = current_context()
    spec = _child_spec(ctx, workflow, workflow_name, args, task_queue, workflow_id, entity,
                       expire, retry_policy)
    # The id is generated from the position this call is about to take.
    return record_in_storage("start", spec["workflow_name"], _with_id(ctx, spec, ctx.counter + 1),
                             "start")


def _child_spec(ctx: ReplayContext, workflow: WorkflowDefinition | str | None,
                workflow_name: str | None, args: Sequence[Any], task_queue: str | None,
                workflow_id: str | None, entity: str | None, expire: float | str | None,
                retry_policy: RetryPolicy | dict[str, Any] | None) -> dict[str, Any]:
    definition: WorkflowDefinition | None
    if isinstance(workflow, WorkflowDefinition):
        name, definition, own_queue = workflow.name, workflow, workflow.task_queue
    elif isinstance(workflow, str) or workflow_name:
        name = workflow if isinstance(workflow, str) else str(workflow_name)
        definition = lookup_workflow(name)
        own_queue = definition.task_queue if definition is not None else None
    elif entity:
        name, definition, own_queue = entity, lookup_workflow(entity), entity
    else:
        raise InvalidArgumentError("a child workflow needs a workflow definition, a "
                                   "workflow_name or an entity")
    # A new call to a child known here is checked against its signature before anything is
    # stored; a recorded one is not (the child's code may have changed since it started).
    new_call = ctx.history.get(ctx.counter + 1) is None
    stored_args = definition.check_args(args) if definition is not None and new_call else \
        encode(list(args), where=f"arguments of child workflow {name!r}")
    policy = RetryPolicy.coerce(retry_policy)
    return {
        "workflow_name": name,
        "task_queue": check_text(task_queue or own_queue or ctx.info.task_queue,
                                 "child task_queue"),
        "args": stored_args,
        "workflow_id": None if workflow_id is None else check_text(workflow_id,
                                                                   "child workflow_id"),
        "entity": entity,
        "expire": None if expire is None else parse_duration(expire, what="child expire"),
        "retry_policy": policy.to_dict() if policy else None,
    }


def _result_decoder(name: str) -> Callable[[Any], Any] | None:
    """Rebuilds the child's result by its return annotation when its definition is registered
    in this process (otherwise the plain JSON arrives); error objects pass unchanged."""
    definition = lookup_workflow(name)
    if definition is None:
        return None
    function = definition.function

    def decode(value: Any) -> Any:
        if isinstance(value, DurableError):  # throw_on_error=False hands errors back
            return value
        return decode_result(function, value, where=f"child workflow {name!r}")

    return decode


def _with_id(ctx: ReplayContext, spec: dict[str, Any], seq: int) -> dict[str, Any]:
    if spec["workflow_id"]:
        return dict(spec)
    thread = f"-{ctx.info.workflow_dimension}" if ctx.info.workflow_dimension else ""
    generated = f"{spec['workflow_name']}-{uuid.uuid4().hex[:12]}{thread}-{seq}"
    return {**spec, "workflow_id": generated}
