"""Workflows and activities of the liveness and step-path tests (workers import this module)."""

from __future__ import annotations

import os
import time

from durable_celery import DurableFatalError, RetryPolicy, activity, durable_workflow, workflow
from tests.support.counters import bump, put

FAST_RETRY = RetryPolicy(initial_interval="100ms", backoff_coefficient=1, maximum_attempts=5)


@activity
def lv_counted(key: str, value: object = None) -> object:
    bump(key)
    return value


@activity
def lv_slow(key: str, seconds: float) -> str:
    """Marks its start, sleeps, marks its end (no timeout: only liveness can re-drive it)."""
    bump(f"{key}-started")
    time.sleep(seconds)
    bump(f"{key}-finished")
    return f"slept {seconds}"


@activity
def lv_where(key: str) -> dict[str, object]:
    """Where it ran: process id and the Celery delivery it came with."""
    from celery import current_task

    bump(key)
    delivery = dict(getattr(current_task.request, "delivery_info", None) or {})
    return {"pid": os.getpid(), "routing_key": delivery.get("routing_key")}


@activity
def lv_kill_own_process(key: str) -> None:
    """Dies the way an out-of-memory kill does: no exception, no cleanup."""
    bump(key)
    os._exit(1)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")


@activity
def lv_unprintable(key: str) -> None:
    bump(key)
    raise Unprintable("hidden")


@activity
def lv_returns_nul(key: str) -> str:
    bump(key)
    return "a\x00b"


@activity
def lv_raises_nul(key: str) -> None:
    bump(key)
    raise ValueError("bad\x00byte")


class InvalidAccountError(ValueError):
    pass


@activity
def lv_invalid_account(key: str) -> None:
    bump(key)
    raise InvalidAccountError(f"account of {key} is closed")


@activity
def lv_flaky(key: str, failures: int) -> int:
    runs = bump(key)
    if runs <= failures:
        raise RuntimeError(f"failure {runs} of {failures}")
    return runs


@activity
def lv_heartbeating(key: str, steps: int, stall_first: float) -> dict[str, object]:
    """Heartbeats its progress; the first attempt stalls (no heartbeat) after step 2."""
    ctx = activity.get_context()
    start = int(ctx.heartbeat_details or 0)
    bump(f"{key}-attempt")
    for step in range(start, steps):
        if ctx.attempt == 1 and step == 2 and stall_first:
            time.sleep(stall_first)  # misses its heartbeat_timeout
        activity.heartbeat(step)
        time.sleep(0.05)
    return {"resumed_from": start, "attempt": ctx.attempt}


@activity
def lv_async(key: str) -> None:
    """Hands its task token to the test, then completes elsewhere."""
    put(f"{key}-token-{bump(key)}", activity.get_context().task_token)
    activity.raise_complete_async()


@durable_workflow
async def lv_around_slow(key: str, seconds: float) -> list[object]:
    acts = workflow.proxy_activities(retry_policy=FAST_RETRY)
    first = await acts.lv_counted(f"{key}-first", 1)
    middle = await acts.lv_slow(key, seconds)
    last = await acts.lv_counted(f"{key}-last", 3)
    return [first, middle, last]


@durable_workflow
async def lv_slow_step(key: str, seconds: float) -> list[object]:
    """A step that takes ``seconds`` right after an activity (a window to kill it in)."""
    acts = workflow.proxy_activities(retry_policy=FAST_RETRY)
    first = await acts.lv_counted(f"{key}-first", 1)
    time.sleep(seconds)  # workflow code that takes long (it runs again on a replay)
    last = await acts.lv_counted(f"{key}-last", 3)
    return [first, last]


@durable_workflow
async def lv_one(key: str) -> object:
    return await workflow.proxy_activities(retry_policy=FAST_RETRY).lv_counted(key, "done")


@durable_workflow
async def lv_sequence(n: int) -> int:
    acts = workflow.proxy_activities()
    for i in range(n):
        await acts.lv_counted(f"seq-{workflow.get_context().workflow_id}", i)
    return n


@durable_workflow
async def lv_sequence_counting_replays(n: int) -> int:
    """``lv_sequence`` that counts how often its code runs from the top (outside any durable
    call, on purpose: a side effect in workflow code runs again on every replay)."""
    workflow_id = workflow.get_context().workflow_id
    bump(f"top-{workflow_id}")
    acts = workflow.proxy_activities()
    total = 0
    for i in range(n):
        total += await acts.lv_counted(f"seq-{workflow_id}", i)
    return total


@durable_workflow
async def lv_where_flow(key: str) -> object:
    return await workflow.proxy_activities().lv_where(key)


@durable_workflow
async def lv_local_flow(key: str) -> list[object]:
    local = workflow.proxy_local_activities(retry_policy=RetryPolicy(
        maximum_attempts=2, initial_interval="100ms"))
    where = await local.lv_where(f"{key}-where")
    runs = await local.lv_flaky(f"{key}-flaky", 1)
    return [where, runs]


@durable_workflow
async def lv_suicide(key: str) -> None:
    await workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=2, initial_interval="100ms")).lv_kill_own_process(key)


@durable_workflow
async def lv_activity(name: str, key: str, maximum_attempts: int = 0) -> object:
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=maximum_attempts, initial_interval="100ms"))
    return await getattr(acts, name)(key)


@durable_workflow
async def lv_unprintable_workflow(key: str) -> None:
    raise Unprintable(key)


@durable_workflow
async def lv_non_retryable(key: str, names: list[str]) -> None:
    await workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=5, initial_interval="100ms",
        non_retryable_error_types=names)).lv_invalid_account(key)


@durable_workflow
async def lv_heartbeat_flow(key: str, steps: int, stall_first: float) -> object:
    acts = workflow.proxy_activities(heartbeat_timeout="1s", retry_policy=RetryPolicy(
        maximum_attempts=2, initial_interval="100ms"))
    return await acts.lv_heartbeating(key, steps, stall_first)


@durable_workflow
async def lv_schedule_to_close(key: str) -> object:
    acts = workflow.proxy_activities(schedule_to_close_timeout="1s", retry_policy=RetryPolicy(
        maximum_attempts=50, initial_interval="400ms", backoff_coefficient=1))
    return await acts.lv_flaky(key, 100)


@durable_workflow
async def lv_async_flow(key: str) -> object:
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=1, initial_interval="100ms"))
    return await acts.lv_async(key)


@durable_workflow
async def lv_bad_wait(length: int) -> object:
    return await workflow.wait_for("w" * length)


@durable_workflow
async def lv_huge_sleep(seconds: float) -> object:
    return await workflow.sleep_for(seconds)


@durable_workflow
async def lv_slow_once(key: str, seconds: float) -> object:
    return await workflow.proxy_activities(retry_policy=FAST_RETRY).lv_slow(key, seconds)


@activity
def lv_slow_then_fail_once(key: str, seconds: float) -> str:
    """Marks its start and sleeps; the first attempt then fails, later ones succeed."""
    runs = bump(f"{key}-started")
    time.sleep(seconds)
    if runs == 1:
        bump(f"{key}-failed")
        raise RuntimeError(f"first attempt of {key} fails")
    return f"attempt {runs}"


@durable_workflow
async def lv_slow_failing_once(key: str, seconds: float) -> object:
    return await workflow.proxy_activities(retry_policy=FAST_RETRY).lv_slow_then_fail_once(
        key, seconds)


@durable_workflow
async def lv_wide_search(text: str) -> object:
    """Sets one search field to ``text`` (its index row may be too large for the database)."""
    return await workflow.enrich({"note": text})


@durable_workflow
async def lv_step_suicide(key: str) -> None:
    """Workflow code that ends its own process, at every step (counted each time it runs)."""
    bump(key)
    os._exit(1)


@durable_workflow
async def lv_to_queue(key: str, queue: str) -> str:
    """One activity on ``queue`` (one the broker may refuse); the call's failure is returned."""
    acts = workflow.proxy_activities(task_queue=queue)
    try:
        return str(await acts.lv_counted(key, "ran"))
    except DurableFatalError as error:
        return f"refused: {error.message}"
