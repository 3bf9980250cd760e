"""Workflows for the composition tests: children, hooks, interrupts (imported by workers)."""

from __future__ import annotations

from durable_celery import (
    DurableError,
    DurableFatalError,
    DurableMaxedError,
    DurableRetryError,
    DurableTimeoutError,
    RetryPolicy,
    durable_workflow,
    workflow,
)
from tests.support.counters import bump

NO_RETRY = RetryPolicy(maximum_attempts=0)

# --- children ----------------------------------------------------------------------------------


@durable_workflow
async def child_returns_nothing() -> None:
    await workflow.proxy_activities().noop()


@durable_workflow
async def child_greets(name: str) -> str:
    return str(await workflow.proxy_activities().greet(name))


@durable_workflow
async def parent_of_two() -> list[object]:
    nothing = await workflow.exec_child(child_returns_nothing)
    greeting = await workflow.execute_child(workflow_name="child_greets", args=["kid"])
    return [nothing, greeting]


@durable_workflow
async def fan_out_children(names: list[str]) -> list[object]:
    return await workflow.all(*(workflow.exec_child(child_greets, args=[n]) for n in names))


@durable_workflow
async def child_sleeps(duration: str, key: str) -> str:
    await workflow.sleep_for(duration)
    await workflow.proxy_activities().counted(key)
    return "woke"


@durable_workflow
async def fire_and_forget(duration: str, key: str) -> str:
    return str(await workflow.start_child(child_sleeps, args=[duration, key]))


@durable_workflow
async def child_waits(signal_id: str) -> object:
    return await workflow.wait_for(signal_id)


@durable_workflow
async def parent_of_waiting_children(first: str, second: str, ids: list[str]) -> list[object]:
    return await workflow.all(
        workflow.exec_child(child_waits, args=[first], workflow_id=ids[0]),
        workflow.exec_child(child_waits, args=[second], workflow_id=ids[1]))


@durable_workflow
async def lineage_leaf() -> dict[str, object]:
    ctx = workflow.get_context()
    return {"id": ctx.workflow_id, "parent": ctx.parent_workflow_id,
            "origin": ctx.origin_workflow_id}


@durable_workflow
async def lineage_middle(leaf_id: str) -> dict[str, object]:
    leaf = await workflow.exec_child(lineage_leaf, workflow_id=leaf_id)
    ctx = workflow.get_context()
    return {"me": {"id": ctx.workflow_id, "parent": ctx.parent_workflow_id,
                   "origin": ctx.origin_workflow_id}, "leaf": leaf}


@durable_workflow
async def lineage_root(middle_id: str, leaf_id: str, signal_id: str) -> list[object]:
    """A child and a wait in one parallel group, three levels deep."""
    return await workflow.all(
        workflow.exec_child(lineage_middle, args=[leaf_id], workflow_id=middle_id),
        workflow.wait_for(signal_id))


@durable_workflow
async def child_fails(kind: str, message: str) -> None:
    errors: dict[str, type[Exception]] = {
        "fatal": DurableFatalError, "maxed": DurableMaxedError, "timeout": DurableTimeoutError,
        "retry": DurableRetryError, "plain": RuntimeError}
    raise errors[kind](message)


@durable_workflow
async def parent_sees_child_error(kind: str, message: str) -> dict[str, object]:
    try:
        await workflow.exec_child(child_fails, args=[kind, message], retry_policy=NO_RETRY)
    except DurableError as error:
        return {"type": type(error).__name__, "message": error.message, "code": error.code}
    return {"type": None}


@durable_workflow
async def parent_returns_child_error(message: str) -> dict[str, object]:
    policy = RetryPolicy(maximum_attempts=0, throw_on_error=False)
    outcome = await workflow.exec_child(child_fails, args=["fatal", message],
                                        retry_policy=policy)
    return {"type": type(outcome).__name__, "message": str(outcome)}


@durable_workflow
async def duplicate_child(child_id: str, how: str) -> dict[str, object]:
    try:
        if how == "start":
            await workflow.start_child(child_waits, args=["never"], workflow_id=child_id)
        else:
            await workflow.exec_child(child_waits, args=["never"], workflow_id=child_id)
    except DurableError as error:
        return {"type": type(error).__name__, "message": error.message}
    return {"type": None}


@durable_workflow
async def parent_of_slow_child(key: str, queue: str) -> object:
    return await workflow.exec_child(slow_child, args=[key], task_queue=queue)


@durable_workflow
async def slow_child(key: str) -> object:
    acts = workflow.proxy_activities(start_to_close_timeout="4s",
                                     retry_policy=RetryPolicy(initial_interval="100ms"))
    return await acts.slow(key, 2.0)


# --- hooks -------------------------------------------------------------------------------------


@durable_workflow
async def reviewer(doc: str, info: dict[str, object]) -> None:
    """A hook: runs an activity, writes the shared entity document, answers by signal."""
    verdict = await workflow.proxy_activities().greet(doc)
    document = await workflow.entity()
    await document.append("reviews", {"doc": doc, "verdict": verdict})
    thread = workflow.get_context().workflow_dimension
    await workflow.signal(str(info["signal"]), {"doc": doc, "verdict": verdict, "thread": thread})


@durable_workflow
async def review(doc: str) -> object:
    return await workflow.exec_hook(workflow_name="reviewer", args=[doc])


@durable_workflow
async def review_batch(docs: list[str]) -> object:
    return await workflow.exec_hook_batch(
        [{"key": d, "options": {"workflow_name": "reviewer", "args": [d]}} for d in docs])


@durable_workflow
async def loops_into_itself() -> object:
    return await workflow.hook(args=[])


@durable_workflow
async def hook_counter(key: str) -> None:
    bump(key)


@durable_workflow
async def fire_hook_then_wait(key: str, signal_id: str) -> object:
    await workflow.hook(workflow_name="hook_counter", args=[key])
    await workflow.proxy_activities().noop()
    return await workflow.wait_for(signal_id)


@durable_workflow
async def waits_for_outside_hook(signal_id: str) -> object:
    return await workflow.wait_for(signal_id)


@durable_workflow
async def outside_hook(signal_id: str, value: str) -> None:
    await workflow.signal(signal_id, {"from": "hook", "value": value})


# --- interrupts --------------------------------------------------------------------------------


@durable_workflow
async def parent_of_sleepers(ids: list[str], grandchild_id: str) -> object:
    return await workflow.all(
        workflow.exec_child(child_sleeps, args=["60s", "never"], workflow_id=ids[0]),
        workflow.exec_child(middle_sleeper, args=[grandchild_id], workflow_id=ids[1]))


@durable_workflow
async def middle_sleeper(grandchild_id: str) -> object:
    return await workflow.exec_child(child_sleeps, args=["60s", "never"],
                                     workflow_id=grandchild_id)


@durable_workflow
async def slow_then_more(key: str) -> object:
    acts = workflow.proxy_activities()
    await acts.slow(key, 1.5)
    return await acts.counted(f"{key}-after")


@durable_workflow
async def supervisor(child_id: str, key: str) -> object:
    child = await workflow.start_child(child_sleeps, args=["60s", key], workflow_id=child_id)
    await workflow.sleep_for("300ms")
    interrupted = await workflow.interrupt(child, reason="supervisor gave up", descend=True)
    return {"child": child, "interrupted": interrupted}


@durable_workflow
async def interrupts_itself(key: str) -> object:
    await workflow.interrupt(workflow.get_context().workflow_id, reason="nothing to do")
    await workflow.proxy_activities().counted(key)
    return "unreachable"


@durable_workflow(name="orders", task_queue="orders")
async def orders_entity(order_id: str) -> dict[str, object]:
    """Found by entity: the entity name is both its task queue and its workflow name."""
    ctx = workflow.get_context()
    return {"order": order_id, "task_queue": ctx.task_queue, "name": ctx.workflow_name}


@durable_workflow
async def parent_by_entity(order_id: str, child_id: str) -> object:
    return await workflow.exec_child(entity="orders", args=[order_id], workflow_id=child_id)


@durable_workflow
async def flaky_reviewer(key: str, failures: int, info: dict[str, object]) -> None:
    """A hook that fails its first ``failures`` runs (counted), then answers."""
    if not workflow.get_context().replaying:
        runs = bump(key)
        if runs <= failures:
            raise RuntimeError(f"hook failure {runs}")
    await workflow.signal(str(info["signal"]), "reviewed")


@durable_workflow
async def review_with_flaky_hook(key: str, failures: int, retries: int) -> object:
    return await workflow.exec_hook(
        workflow_name="flaky_reviewer", args=[key, failures],
        retry_policy=RetryPolicy(maximum_attempts=retries, initial_interval="100ms"))


@durable_workflow
async def review_with_failing_hook(key: str) -> dict[str, object]:
    try:
        await workflow.exec_hook(workflow_name="flaky_reviewer", args=[key, 99],
                                 retry_policy=RetryPolicy(maximum_attempts=1,
                                                          initial_interval="100ms"))
    except DurableError as error:
        return {"type": type(error).__name__, "message": error.message}
    return {"type": None}


@durable_workflow
async def parent_of_wrongly_called_child() -> object:
    """``child_greets`` takes one argument; three are given (default retry policy)."""
    return await workflow.exec_child(child_greets, args=[1, 2, 3])


@durable_workflow
async def review_with_wrongly_called_hook(key: str) -> dict[str, object]:
    """``flaky_reviewer`` takes (key, failures, info); exec_hook gives it (key, info)."""
    try:
        await workflow.exec_hook(workflow_name="flaky_reviewer", args=[key])
    except DurableError as error:
        return {"type": type(error).__name__, "message": error.message}
    return {"type": None}
