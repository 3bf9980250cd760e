"""Deterministic helpers: ``random``, ``now``, ``uuid4``, ``get_context``, ``did_interrupt``,
``all``, ``is_side_effect_allowed``."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from .. import clock
from ..engine import CallGroup, DurableCall, WorkflowInfo, current_context, deterministic_random
from ..errors import did_interrupt
from ._immediate import Immediate

__all__ = ["WorkflowContextView", "all_", "did_interrupt", "get_context",
           "is_side_effect_allowed", "now", "random", "uuid4"]


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


def now() -> datetime:
    """The current time, as a timezone-aware UTC ``datetime``. Takes a position.

    First run: the worker's clock (:func:`durable_celery.clock.utc_now`) when the workflow
    reaches this position, recorded in history.
    Replay: the recorded time, identical to the microsecond.
    """
    value, _ = current_context().record_now(
        "now", "", lambda _seq: clock.utc_now().isoformat())
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def uuid4() -> uuid.UUID:
    """A random-looking version-4 ``uuid.UUID`` of this run and position. Takes a position.

    First run: derived from the run (namespace, workflow id, run id), the thread and the
    position, and recorded in history; another run of the same workflow id gets other values.
    Replay: the recorded value.
    """
    ctx = current_context()
    value, _ = ctx.record_now("uuid4", "", lambda seq: str(_run_uuid(ctx.info, seq)))
    return uuid.UUID(str(value))


def _run_uuid(info: WorkflowInfo, seq: int) -> uuid.UUID:
    if not info.run_id:
        # Without a run id nothing tells two runs of one workflow id apart; a fresh random
        # value is as good, since history keeps it for every replay.
        return uuid.uuid4()
    key = "\x00".join((info.namespace, info.workflow_id, info.run_id, info.workflow_dimension,
                       str(seq)))
    return uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16], version=4)


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
    The calls form one group: an outcome that leaves other members open cannot move the code,
    so storage may hold it until the group is complete (or a member fails) before stepping.
    """
    group = CallGroup()
    return list(await asyncio.gather(*(
        a.in_group(group) if isinstance(a, DurableCall) else a for a in awaitables)))
