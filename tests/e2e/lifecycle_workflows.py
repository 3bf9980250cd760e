"""Workflows for the life of runs: cancel and cleanup, resume, execution timeouts,
continue-as-new, child_result. Imported by the workers through ``DURABLE_IMPORTS``. Side
effects bump cross-process counters (tests/support/counters.py) so tests can count them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from durable_celery import (
    DurableError,
    DurableTimeoutError,
    RetryPolicy,
    activity,
    durable_workflow,
    workflow,
)
from tests.support.counters import bump, count

NO_RETRY = RetryPolicy(maximum_attempts=0)
#: For a poll that a killed worker may interrupt: the lost attempt is tried again.
QUICK_RETRY = RetryPolicy(maximum_attempts=5, initial_interval="100ms", backoff_coefficient=1)

# --- activities -----------------------------------------------------------------------------


@activity
def lc_step(key: str, value: Any) -> Any:
    """Counts each run under ``key`` and returns ``value``."""
    bump(key)
    return value


@activity
def lc_work(key: str, seconds: float) -> str:
    """Works for ``seconds`` while heartbeating; stops when told the call was cancelled."""
    bump(f"{key}-started")
    deadline = time.monotonic() + seconds
    beat = 0
    try:
        while time.monotonic() < deadline:
            beat += 1
            activity.heartbeat(beat)
            time.sleep(0.1)
    except asyncio.CancelledError:
        assert activity.get_context().cancelled
        bump(f"{key}-told")
        raise
    bump(f"{key}-worked")
    return "worked"


@activity
def lc_cleanup(key: str) -> str:
    """Cleanup after a cancellation; it heartbeats and must not be told it is cancelled."""
    activity.heartbeat("cleaning")
    if activity.get_context().cancelled:
        bump(f"{key}-cleanup-told")
    bump(f"{key}-cleanup")
    return "cleaned"


@activity
def lc_slow(key: str, seconds: float) -> str:
    """Counts starts and finishes around a sleep (no heartbeat)."""
    bump(f"{key}-started")
    time.sleep(seconds)
    bump(f"{key}-finished")
    return f"slept {seconds}"


@activity
def lc_fixable(key: str) -> str:
    """Fails until counter ``{key}-fixed`` is bumped."""
    bump(f"{key}-tries")
    if count(f"{key}-fixed") == 0:
        raise RuntimeError("not fixed yet")
    return "fixed"


def acts(task_queue: str | None = None) -> Any:
    return workflow.proxy_activities(task_queue=task_queue, retry_policy=NO_RETRY)


# --- cancel ---------------------------------------------------------------------------------


@durable_workflow
async def cancel_with_cleanup(key: str) -> str:
    """Heartbeating work, then cleanup in ``finally`` (the cancellation propagates)."""
    try:
        await acts().lc_work(key, 60)
        return "not cancelled"
    finally:
        await acts().lc_cleanup(key)


@durable_workflow
async def cancel_and_compensate(key: str) -> list[Any]:
    """Catches the cancellation, compensates, and completes with a value."""
    done = await acts().lc_step(f"{key}-before", "before")
    try:
        await workflow.wait_for(f"never-{key}")
    except asyncio.CancelledError as cancelled:
        return [done, await acts().lc_cleanup(key), str(cancelled)]
    return [done, "not cancelled"]


@durable_workflow
async def cancel_cleanup_elsewhere(key: str, cleanup_queue: str) -> str:
    """Waits for a signal; on cancellation the cleanup runs on ``cleanup_queue``."""
    await acts().lc_step(f"{key}-before", 1)
    try:
        await workflow.wait_for(f"never-{key}")
        return "not cancelled"
    except asyncio.CancelledError:
        await acts(task_queue=cleanup_queue).lc_cleanup(key)
        await acts().lc_step(f"{key}-after-cleanup", 2)
        raise


@durable_workflow
async def cancel_parent(key: str) -> Any:
    """Waits on a child that waits on a signal; both clean up when cancelled."""
    try:
        return await workflow.exec_child(cancel_child, args=[f"{key}-child"],
                                         workflow_id=f"{key}-child")
    finally:
        await acts().lc_cleanup(key)


@durable_workflow
async def cancel_child(key: str) -> str:
    try:
        return str(await workflow.wait_for(f"go-{key}"))
    finally:
        await acts().lc_cleanup(key)


# --- resume ---------------------------------------------------------------------------------


@durable_workflow
async def resumable(key: str) -> list[Any]:
    """An activity, a wait, a sleep and a slow activity: something open at every stage."""
    first = await acts().lc_step(f"{key}-first", "one")
    signal = await workflow.wait_for(f"go-{key}")
    await workflow.sleep_for(0.5)
    slow = await acts().lc_slow(key, 1.5)
    return [first, signal, slow]


@durable_workflow
async def fix_then_resume(key: str) -> list[Any]:
    first = await acts().lc_step(f"{key}-first", "one")
    return [first, await acts().lc_fixable(key)]


# --- time limits ----------------------------------------------------------------------------


@durable_workflow
async def waits_forever(key: str) -> Any:
    await acts().lc_step(f"{key}-started", 1)
    return await workflow.wait_for(f"never-{key}")


@durable_workflow
async def parent_of_timed_child(key: str, timeout: Any) -> list[Any]:
    try:
        await workflow.exec_child(waits_forever, args=[key], workflow_id=f"{key}-child",
                                  execution_timeout=timeout)
    except DurableTimeoutError as error:
        return ["child timed out", error.code, type(error).__name__]
    return ["child finished"]


@durable_workflow
async def bad_child_timeout(key: str, timeout: Any) -> str:
    try:
        await workflow.start_child(waits_forever, args=[key], execution_timeout=timeout)
    except ValueError as error:
        return f"refused: {error}"
    return "started"


# --- continue as new ------------------------------------------------------------------------


@durable_workflow
async def poller(key: str, n: int, limit: int) -> int:
    """The seed's polling loop: check, and start over with an empty history."""
    poll = workflow.proxy_activities(retry_policy=QUICK_RETRY)
    await poll.lc_step(f"{key}-poll-{n}", n)
    if n < limit:
        workflow.continue_as_new(key, n + 1, limit)
    return n


@durable_workflow
async def stamping_poller(n: int, limit: int) -> int:
    """A polling loop whose every step is computed in the step (driven in-process by tests)."""
    workflow.now()
    await workflow.enrich({"round": n})
    if n < limit:
        workflow.continue_as_new(n + 1, limit)
    return n


@durable_workflow
async def parent_of_poller(key: str, limit: int) -> list[Any]:
    value = await workflow.exec_child(poller, args=[key, 0, limit], workflow_id=f"{key}-child")
    return ["child returned", value]


# --- child_result ---------------------------------------------------------------------------


@durable_workflow
async def child_echo(key: str, wait: bool) -> str:
    if wait:
        await workflow.wait_for(f"release-{key}")
    await acts().lc_step(f"{key}-ran", 1)
    return f"echo {key}"


@durable_workflow
async def child_that_fails(key: str) -> str:
    await acts().lc_fixable(key)
    return "unreachable"


@durable_workflow
async def collect_children(key: str) -> list[Any]:
    """Starts three children, does its own work, then collects their results; a failing
    child's typed error and an unknown id's error are caught and returned."""
    quick = await workflow.start_child(child_echo, args=[f"{key}-quick", False],
                                       workflow_id=f"{key}-quick")
    waiting = await workflow.start_child(child_echo, args=[f"{key}-waiting", True],
                                         workflow_id=f"{key}-waiting")
    failing = await workflow.start_child(child_that_fails, args=[f"{key}-failing"],
                                         workflow_id=f"{key}-failing")
    await workflow.wait_for(f"collect-{key}")
    results: list[Any] = [await workflow.child_result(quick), await workflow.child_result(waiting)]
    for child in (failing, f"{key}-nobody"):
        try:
            await workflow.child_result(child)
        except DurableError as error:
            results.append([type(error).__name__, error.code])
    same_step = await workflow.start_child(child_echo, args=[f"{key}-late", False],
                                           workflow_id=f"{key}-late")
    results.append(await workflow.child_result(same_step))
    return results
