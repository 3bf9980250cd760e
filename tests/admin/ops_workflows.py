"""Workflows and activities of the operations tests (admin pages, CLI, browser): failures with
a known origin, parallel branches for the timeline, workflows that keep retrying. Imported by
the workers through ``DURABLE_IMPORTS``."""

from __future__ import annotations

import asyncio
import time

from durable_celery import RetryPolicy, activity, durable_workflow, workflow
from tests.support.counters import bump

# --- activities --------------------------------------------------------------------------------


def lookup_order(orders: dict[str, object], order_id: str) -> object:
    """A plain function the activity calls: the traceback must name it."""
    return orders[order_id]


@activity
def ops_load_order(order_id: str) -> object:
    """Raises ``KeyError(order_id)`` from :func:`lookup_order` for an unknown order."""
    bump(f"{order_id}-tries")
    return lookup_order({"o-1": {"total": 10}}, order_id)


@activity
def ops_pause(key: str, seconds: float) -> str:
    """Takes ``seconds`` (a branch of a parallel workflow)."""
    bump(f"{key}-started")
    time.sleep(seconds)
    return key


@activity
def ops_always_fails(key: str) -> None:
    """Raises ``ValueError`` every time (a call that keeps retrying)."""
    runs = bump(key)
    raise ValueError(f"bad input (try {runs})")


# --- workflows ---------------------------------------------------------------------------------


@durable_workflow
async def ops_missing_order(order_id: str) -> object:
    """Fails for good after two attempts of an activity that raises ``KeyError``."""
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=1, initial_interval="100ms"))
    return await acts.ops_load_order(order_id)


@durable_workflow
async def ops_parallel(key: str, n: int, seconds: float) -> list[object]:
    """``n`` activities at once, then a short durable sleep: bars that overlap, then a wait."""
    acts = workflow.proxy_activities()
    results = await asyncio.gather(*(acts.ops_pause(f"{key}-{i}", seconds) for i in range(n)))
    await workflow.sleep_for(0.2)
    return list(results)


@durable_workflow
async def ops_keeps_retrying(key: str) -> None:
    """An activity that fails and is retried far apart: the run stays running, retrying."""
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=50, initial_interval="1h"))
    await acts.ops_always_fails(key)


@durable_workflow
async def ops_workflow_fails(key: str) -> None:
    """The workflow function itself raises ``LookupError`` (retried by the start's policy)."""
    bump(key)
    raise LookupError(f"no such customer {key}")


@durable_workflow
async def ops_parent_of_failing(key: str) -> object:
    """Awaits a child whose activity raises ``KeyError``: the parent fails with it."""
    return await workflow.exec_child(ops_missing_order, args=[key], workflow_id=f"{key}-child",
                                     retry_policy=RetryPolicy(maximum_attempts=0))


@durable_workflow
async def ops_waits(signal_id: str) -> object:
    """Waits for a signal (an active run with nothing to do)."""
    return await workflow.wait_for(signal_id)


@durable_workflow
async def ops_activity_elsewhere(key: str, queue: str) -> object:
    """Runs :func:`ops_pause` on task queue ``queue`` (Celery queue ``{queue}-activity``)."""
    return await workflow.proxy_activities(task_queue=queue).ops_pause(key, 0)
