"""What the benchmark runs: durable workflows and the raw Celery tasks they are compared with."""

from __future__ import annotations

from celery import shared_task

from durable_celery import activity, durable_workflow, workflow

__all__ = ["bench_fan_out", "bench_one", "bench_sequence", "raw_noop", "step"]


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
