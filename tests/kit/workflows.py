"""Workflows and activities of the testing kit's tests. All live on task queue ``kit``, which
no real worker of the test session consumes: only the kit's embedded worker runs them."""

from __future__ import annotations

import asyncio
from typing import Any

from durable_celery import DurableFatalError, RetryPolicy, activity, durable_workflow, workflow
from tests.support.counters import bump

KIT_QUEUE = "kit"

#: How many times the body of ``kit_counted_body`` started running, by key (one process).
BODY_RUNS: dict[str, int] = {}


# --- activities --------------------------------------------------------------------------------


@activity(task_queue=KIT_QUEUE)
def kit_charge(key: str, amount: float) -> str:
    bump(f"{key}-charge")
    return f"receipt-{key}-{amount:.2f}"


@activity(task_queue=KIT_QUEUE)
def kit_refund(key: str) -> str:
    bump(f"{key}-refund")
    return f"refund-{key}"


@activity(task_queue=KIT_QUEUE)
def kit_flaky(key: str, failures: int) -> int:
    """Fails its first ``failures`` runs, then returns the run number."""
    runs = bump(f"{key}-flaky")
    if runs <= failures:
        raise ConnectionError(f"flaky failure {runs} of {failures}")
    return runs


@activity(task_queue=KIT_QUEUE)
def kit_broken(key: str) -> None:
    bump(f"{key}-broken")
    raise KeyError(f"no account {key}")


# --- workflows ---------------------------------------------------------------------------------


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_order(key: str) -> dict[str, Any]:
    """The docs' example: an activity, a 30-day sleep, a signal."""
    acts = workflow.proxy_activities()
    receipt = await acts.kit_charge(key, 9.99)
    slept = await workflow.sleep_for("30 days")
    decision = await workflow.wait_for(f"approve-{key}")
    return {"receipt": receipt, "slept": slept, "decision": decision,
            "decided_at": workflow.now().isoformat()}


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_sleeper(duration: str) -> list[Any]:
    before = workflow.now()
    slept = await workflow.sleep_for(duration)
    return [slept, (workflow.now() - before).total_seconds()]


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_waiter(signal_id: str, timeout: str) -> Any:
    return await workflow.wait_for(signal_id, timeout=timeout)


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_steps(key: str) -> list[Any]:
    """Sleeps 1 hour, charges, sleeps 2 hours, charges again."""
    acts = workflow.proxy_activities()
    first = await workflow.sleep_for("1h")
    receipt = await acts.kit_charge(key, 1.0)
    second = await workflow.sleep_for("2h")
    return [first, receipt, second, await acts.kit_charge(key, 2.0)]


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_retrying(key: str, failures: int) -> int:
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=5, initial_interval="1 hour", backoff_coefficient=2,
        maximum_interval="1 day"))
    return int(await acts.kit_flaky(key, failures))


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_compensating(key: str) -> dict[str, Any]:
    """An activity that always fails; the workflow sees the typed error and compensates."""
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=2, initial_interval="10 minutes", maximum_interval="1 day"))
    try:
        await acts.kit_broken(key)
    except Exception as error:  # noqa: BLE001 - the typed failure is the point of the test
        return {"class": type(error).__name__, "type": getattr(error, "type", None),
                "message": str(error), "refund": await acts.kit_refund(key)}
    return {"class": None}


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_child(key: str, days: int) -> str:
    await workflow.sleep_for(f"{days} days")
    return f"{key} after {days} days"


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_parent(key: str) -> list[Any]:
    """Two children in parallel (sleeping 3 and 1 days), then one waiting for a signal."""
    both = await workflow.all(
        workflow.exec_child(kit_child, args=(f"{key}-a", 3), workflow_id=f"{key}-a"),
        workflow.exec_child(kit_child, args=(f"{key}-b", 1), workflow_id=f"{key}-b"))
    waited = await workflow.exec_child(kit_waiter, args=(f"go-{key}", "10 days"),
                                       workflow_id=f"{key}-c")
    return [*both, waited]


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_counted_body(key: str) -> int:
    """Counts how often its body starts (each replay from history starts it again)."""
    BODY_RUNS[key] = BODY_RUNS.get(key, 0) + 1
    acts = workflow.proxy_activities()
    await acts.kit_charge(key, 1.0)
    await workflow.sleep_for("1 day")
    await acts.kit_charge(key, 2.0)
    return BODY_RUNS[key]


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_announcer(key: str) -> bool:
    await workflow.emit({f"orders.{key}": {"state": "charged"}})
    await workflow.sleep_for("1 day")
    return bool(await workflow.emit({f"orders.{key}": {"state": "shipped"}}))


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_racing(slow: str, fast: str) -> list[Any]:
    """Two branches whose later calls take positions in the order their sleeps end."""
    acts = workflow.proxy_activities()

    async def branch(name: str, delay: str) -> Any:
        slept = await workflow.sleep_for(delay)
        return [name, slept, await acts.kit_charge(name, slept)]

    return await workflow.all(branch("slow", slow), branch("fast", fast))


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_flaky_flow(key: str, failures: int) -> int:
    """The workflow function itself fails its first ``failures`` runs."""
    runs = bump(f"{key}-flow")
    if runs <= failures:
        raise RuntimeError(f"flow failure {runs} of {failures}")
    return runs


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_forever(key: str) -> None:
    """Ticks every minute, for ever."""
    while True:
        await workflow.sleep_for("1 minute")


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_asyncio_sleeps(days: list[int]) -> list[int]:
    """``asyncio.sleep`` inside a workflow is a durable timer, in gather branches too."""

    async def nap(n: int) -> int:
        await asyncio.sleep(n * 86400)
        return n

    return list(await asyncio.gather(*(nap(n) for n in days)))


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_scheduled(key: str, nap: str | None = None) -> list[Any]:
    """A schedule's run: counts its start (an activity), naps when told to, and returns its
    workflow id and the test clock's time when it started."""
    context = workflow.get_context()
    started = workflow.now()
    await workflow.proxy_activities().kit_charge(f"{key}-{context['workflow_id']}", 1.0)
    if nap:
        await workflow.sleep_for(nap)
    return [context["workflow_id"], started.isoformat()]


@durable_workflow(task_queue=KIT_QUEUE)
async def kit_refused(key: str) -> str:
    """An activity routed to a queue the test's broker refuses."""
    acts = workflow.proxy_activities(task_queue="refused")
    try:
        return await acts.kit_charge(key, 1.0)
    except DurableFatalError as error:
        return f"refused: {error.message}"
