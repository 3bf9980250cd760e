"""Deterministic helpers: ``random``, ``get_context``, ``did_interrupt``, ``all``,
``is_side_effect_allowed``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from ..engine import current_context, deterministic_random
from ..errors import did_interrupt
from ._immediate import Immediate

__all__ = ["WorkflowContextView", "all_", "did_interrupt", "get_context",
           "is_side_effect_allowed", "random"]


class WorkflowContextView(dict[str, Any]):
    """``get_context()``'s answer: a dict whose keys also read as attributes."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def random() -> float:
    """A deterministic float in [0, 1): ``frac(sin(n) * 10000)`` for this call's position ``n``.

    Takes a position; replay returns the same value.
    """
    value, _ = current_context().record_now("random", "", deterministic_random)
    return float(value)


def get_context() -> WorkflowContextView:
    """Who and where the running workflow is. Takes no position."""
    ctx = current_context()
    info = ctx.info
    return WorkflowContextView(
        workflow_id=info.workflow_id, workflow_name=info.workflow_name,
        task_queue=info.task_queue, namespace=info.namespace, counter=ctx.counter,
        workflow_dimension=info.workflow_dimension,
        parent_workflow_id=info.parent_workflow_id,
        origin_workflow_id=info.origin_workflow_id, replaying=ctx.replaying,
        expire=info.expire)


def is_side_effect_allowed(prefix: str) -> Immediate[bool]:
    """Awaitable of ``True`` the first time this position runs and ``False`` on every replay."""
    _, first_run = current_context().record_now("side_effect", prefix, lambda _seq: True)
    return Immediate(first_run)


async def all_(*awaitables: Awaitable[Any]) -> list[Any]:
    """Await every argument concurrently; results in argument order. Takes no position.

    Each durable call took its position when it was made, so the numbering is the argument order.
    """
    return list(await asyncio.gather(*awaitables))
