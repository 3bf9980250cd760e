"""``workflow.hook`` / ``exec_hook`` / ``exec_hook_batch``: threads inside a running workflow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine import current_context
from ..errors import InvalidArgumentError
from ..retry import RetryPolicy
from ..serialization import json_roundtrip
from ._immediate import record_in_storage
from .control import all_
from .signals import wait_for

__all__ = ["exec_hook", "exec_hook_batch", "hook"]


def hook(task_queue: str | None = None, workflow_name: str | None = None,
         args: Sequence[Any] = (), workflow_id: str | None = None, entity: str | None = None,
         retry_policy: RetryPolicy | dict[str, Any] | None = None) -> Any:
    """Run ``workflow_name`` as a hook thread inside ``workflow_id`` (default: this workflow).

    The thread has its own positions and shares the target's search fields and entity document;
    its return value is discarded. First run: the thread is created in this step's transaction.
    Replay: not created again. The awaitable returns the hook id.

    Raises:
        InvalidArgumentError: The hook would run this workflow's own function on its own queue
            (neither ``task_queue`` nor ``entity`` given): an endless loop.
    """
    ctx = current_context()
    name = workflow_name or entity or ctx.info.workflow_name
    target = workflow_id or ctx.info.workflow_id
    if (target == ctx.info.workflow_id and name == ctx.info.workflow_name
            and task_queue is None and entity is None):
        raise InvalidArgumentError(
            f"workflow.hook would run workflow {name!r} inside itself on its own task queue: an "
            f"endless loop; name another workflow_name, or give task_queue or entity")
    policy = RetryPolicy.coerce(retry_policy)
    spec = {
        "workflow_id": target,
        "workflow_name": name,
        "task_queue": task_queue or entity,
        "args": json_roundtrip(list(args), where=f"arguments of hook {name!r}"),
        "retry_policy": policy.to_dict() if policy else None,
    }
    return record_in_storage("hook", name, spec, "start")


def exec_hook(task_queue: str | None = None, workflow_name: str | None = None,
              args: Sequence[Any] = (), workflow_id: str | None = None,
              entity: str | None = None, retry_policy: RetryPolicy | dict[str, Any] | None = None,
              signal_id: str | None = None) -> Any:
    """Run a hook and wait for what it sends back; takes two positions (hook, then wait).

    The hook function gets ``{"signal": signal_id, "$durable": True}`` as its last argument and
    answers with ``workflow.signal(info["signal"], value)``; the awaitable returns ``value``.
    Replay: returns the stored value without running the hook again.
    """
    ctx = current_context()
    sid = signal_id or _signal_id(ctx.info.workflow_id, ctx.info.workflow_dimension,
                                  ctx.counter + 1)
    started = hook(task_queue, workflow_name, [*args, {"signal": sid, "$durable": True}],
                   workflow_id, entity, retry_policy)
    answer = wait_for(sid)

    async def hook_then_answer() -> Any:
        await started
        return await answer

    return hook_then_answer()


def exec_hook_batch(configs: Sequence[dict[str, Any]]) -> Any:
    """Run several hooks, then wait for all their answers; the awaitable returns ``{key: value}``.

    Every hook takes a position first, then every wait, so all waits are registered together.

    Args:
        configs: ``[{"key": k, "options": {...exec_hook options...}}, ...]``.
    """
    ctx = current_context()
    keys: list[str] = []
    started: list[Any] = []
    signal_ids: list[str] = []
    for config in configs:
        if "key" not in config:
            raise InvalidArgumentError(f"exec_hook_batch entries need a 'key': {config!r}")
        options = dict(config.get("options") or {})
        sid = options.pop("signal_id", None) or _signal_id(
            ctx.info.workflow_id, ctx.info.workflow_dimension, ctx.counter + 1)
        args = [*options.pop("args", ()), {"signal": sid, "$durable": True}]
        started.append(hook(args=args, **options))
        keys.append(str(config["key"]))
        signal_ids.append(sid)
    answers = [wait_for(sid) for sid in signal_ids]

    async def hooks_then_answers() -> dict[str, Any]:
        for one in started:
            await one
        values = await all_(*answers)
        return dict(zip(keys, values, strict=True))

    return hooks_then_answers()


def _signal_id(workflow_id: str, dimension: str, position: int) -> str:
    thread = f"-{dimension}" if dimension else ""
    return f"durable-hook-{workflow_id}{thread}-{position}"
