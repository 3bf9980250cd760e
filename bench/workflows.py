"""What the benchmark runs: durable workflows and the raw Celery tasks they are compared with."""

from __future__ import annotations

from celery import shared_task

from durable_celery import activity, durable_workflow, workflow

__all__ = ["bench_fan_out", "bench_one", "bench_sequence", "fault_around_slow", "fault_exit",
           "fault_exits", "fault_mark", "fault_one", "fault_slow", "fault_slow_step", "raw_noop",
           "step"]


@activity
def step(*_: object) -> None:
    """A no-op activity."""
    return None


@shared_task(name="bench.raw_noop", serializer="json", queue="bench-raw")
def raw_noop(*_: object) -> None:
    """A no-op Celery task (a chain passes the previous result as an argument)."""
    return None


@durable_workflow(task_queue="bench")
async def bench_sequence(n: int) -> int:
    """``n`` sequential no-op activities."""
    acts = workflow.proxy_activities()
    for _ in range(n):
        await acts.step()
    return n


@durable_workflow(task_queue="bench")
async def bench_fan_out(n: int) -> int:
    """``n`` no-op activities at once."""
    acts = workflow.proxy_activities()
    results = await workflow.all(*(acts.step() for _ in range(n)))
    return len(results)


@durable_workflow(task_queue="bench")
async def bench_one() -> None:
    """One activity: the smallest whole workflow."""
    await workflow.proxy_activities().step()


# --- fault scenarios (bench/faults.py) -----------------------------------------------------


@activity
def fault_mark(path: str, text: str) -> str:
    """Appends ``text`` to the file ``path`` (a counter the benchmark reads)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text + "\n")
    return text


@activity
def fault_slow(path: str, seconds: float) -> str:
    """Marks its start in ``path``, sleeps, marks its end."""
    import time

    fault_mark(path, "started")
    time.sleep(seconds)
    fault_mark(path, "finished")
    return "slept"


@activity
def fault_exit(path: str) -> None:
    """Dies as an out-of-memory kill would."""
    import os

    fault_mark(path, "started")
    os._exit(1)


@durable_workflow(task_queue="bench-faults")
async def fault_around_slow(path: str, seconds: float, timeout: float | None) -> list[object]:
    """Mark, a slow activity (a window to kill its worker in), mark."""
    acts = workflow.proxy_activities(start_to_close_timeout=timeout)
    first = await acts.fault_mark(path, "first")
    middle = await acts.fault_slow(path, seconds)
    last = await acts.fault_mark(path, "last")
    return [first, middle, last]


@durable_workflow(task_queue="bench-faults")
async def fault_slow_step(path: str, seconds: float) -> list[object]:
    """An activity, then workflow code that takes ``seconds`` (a window to kill the step in)."""
    import time

    acts = workflow.proxy_activities()
    first = await acts.fault_mark(path, "first")
    time.sleep(seconds)
    return [first, await acts.fault_mark(path, "last")]


@durable_workflow(task_queue="bench-faults")
async def fault_one(path: str) -> object:
    return await workflow.proxy_activities().fault_mark(path, "done")


@durable_workflow(task_queue="bench-faults")
async def fault_exits(path: str) -> object:
    from durable_celery import RetryPolicy

    return await workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=2, initial_interval="1s")).fault_exit(path)
