"""``workflow.exec_child`` / ``execute_child`` / ``start_child``: workflows started by workflows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ..durations import parse_duration, parse_timeout
from ..engine import DurableCall, ReplayContext, current_context
from ..errors import InvalidArgumentError
from ..payloads import encode, result_decoder
from ..registry import WorkflowDefinition, lookup_workflow
from ..retry import RetryPolicy
from ..validation import check_text
from ._immediate import record_in_storage

__all__ = ["child_result", "exec_child", "execute_child", "start_child"]


def exec_child(workflow: WorkflowDefinition | str | None = None, *,
               workflow_name: str | None = None, args: Sequence[Any] = (),
               task_queue: str | None = None, workflow_id: str | None = None,
               entity: str | None = None, expire: float | str | None = None,
               retry_policy: RetryPolicy | dict[str, Any] | None = None,
               execution_timeout: float | str | None = None) -> DurableCall:
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
            (``ArgumentMismatchError``, nothing recorded; otherwise the child fails at once on
            its worker with it), and its result is rebuilt by its return annotation.
        task_queue: Its task queue (default: the definition's, else the entity, else the
            parent's).
        workflow_id: Its id (default: generated, unique across parallel and re-entrant calls).
        entity: Entity type; alone, it names both the task queue and the workflow.
        expire: Seconds to keep the child after it ends.
        retry_policy: The child's own workflow-level retry policy.
        execution_timeout: Seconds (or duration text) the child may run; past it the child is
            interrupted and this call raises ``DurableTimeoutError`` (596).

    Raises:
        InvalidArgumentError: (a ``ValueError``, at the call) a malformed, negative or zero
            ``execution_timeout``.
        ArgumentMismatchError: (a ``TypeError``, at the call) ``args`` do not fit the
            registered child's signature. Both are ``DurableFatalError``: uncaught, they fail
            this workflow without retry.
    """
    ctx = current_context()
    spec = _child_spec(ctx, workflow, workflow_name, args, task_queue, workflow_id, entity,
                       expire, retry_policy, execution_timeout)
    policy = RetryPolicy.coerce(retry_policy)
    return ctx.schedule("child", spec["workflow_name"], lambda seq: _with_id(ctx, spec, seq),
                        transform=_result_decoder(spec["workflow_name"]),
                        throw_on_error=policy.throw_on_error if policy else True)


execute_child = exec_child


def start_child(workflow: WorkflowDefinition | str | None = None, *,
                workflow_name: str | None = None, args: Sequence[Any] = (),
                task_queue: str | None = None, workflow_id: str | None = None,
                entity: str | None = None, expire: float | str | None = None,
                retry_policy: RetryPolicy | dict[str, Any] | None = None,
                execution_timeout: float | str | None = None) -> Any:
    """Start a child workflow without waiting; the awaitable returns the child's id.

    First run: the child execution is created in this step's transaction (a running id fails
    the call with ``DuplicateWorkflowError``). Replay: returns the stored id; the child is not
    started again. Options as :func:`exec_child`; :func:`child_result` waits for its outcome.
    """
    ctx = current_context()
    spec = _child_spec(ctx, workflow, workflow_name, args, task_queue, workflow_id, entity,
                       expire, retry_policy, execution_timeout)
    # The id is generated from the position this call is about to take.
    return record_in_storage("start", spec["workflow_name"], _with_id(ctx, spec, ctx.counter + 1),
                             "start")


def _child_spec(ctx: ReplayContext, workflow: WorkflowDefinition | str | None,
                workflow_name: str | None, args: Sequence[Any], task_queue: str | None,
                workflow_id: str | None, entity: str | None, expire: float | str | None,
                retry_policy: RetryPolicy | dict[str, Any] | None,
                execution_timeout: float | str | None) -> dict[str, Any]:
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
        "execution_timeout": parse_timeout(execution_timeout, what="child execution_timeout"),
    }


def child_result(workflow_id: str) -> DurableCall:
    """The outcome of a child this workflow started earlier with :func:`start_child`.

    First run: a ``child_result`` call is recorded; when the child has already ended its outcome
    is recorded at once, otherwise the workflow suspends until the child ends (a child that
    continued as new ends with its last run). Replay: the stored outcome. The result is rebuilt
    by the child's return annotation when its ``start_child`` is in this run's history and its
    definition is registered here; a failure raises the same typed error as
    :func:`exec_child` (``DurableMaxedError``, ``DurableFatalError``, ``DurableTimeoutError``,
    ``DurableInterruptedError`` …).

    Raises:
        WorkflowNotFoundError: (on await) no workflow with this id was started by this workflow.
        TypeError: ``workflow_id`` is not a non-empty str.
    """
    if not isinstance(workflow_id, str) or not workflow_id:
        raise TypeError(f"child_result needs a non-empty str workflow id, got {workflow_id!r}")
    ctx = current_context()
    return ctx.schedule("child_result", workflow_id, {"workflow_id": workflow_id},
                        transform=_started_child_decoder(ctx, workflow_id))


def _started_child_decoder(ctx: ReplayContext, workflow_id: str) -> Callable[[Any], Any] | None:
    """The result decoder of the child ``start_child`` recorded with id ``workflow_id``."""
    names = [r.name for r in ctx.history.values() if r.kind == "start" and r.result == workflow_id]
    names += [c.name for c in ctx.commands if c.kind == "start" and c.result == workflow_id]
    return _result_decoder(names[-1]) if names else None


def _result_decoder(name: str) -> Callable[[Any], Any] | None:
    """Rebuilds the child's result by its return annotation when its definition is registered
    in this process."""
    definition = lookup_workflow(name)
    return result_decoder(definition.function if definition is not None else None,
                          f"child workflow {name!r}")


def _with_id(ctx: ReplayContext, spec: dict[str, Any], seq: int) -> dict[str, Any]:
    if spec["workflow_id"]:
        return dict(spec)
    thread = f"-{ctx.info.workflow_dimension}" if ctx.info.workflow_dimension else ""
    generated = f"{spec['workflow_name']}-{uuid.uuid4().hex[:12]}{thread}-{seq}"
    return {**spec, "workflow_id": generated}
