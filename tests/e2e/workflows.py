"""Workflows and activities used by the end-to-end tests (imported by the workers through
``DURABLE_IMPORTS``). Side effects bump cross-process counters so tests can count them."""

from __future__ import annotations

import asyncio
import time

from durable_celery import DurableFatalError, RetryPolicy, activity, durable_workflow, workflow
from tests.support.counters import bump, count

# --- activities --------------------------------------------------------------------------------


@activity
def greet(name: str) -> str:
    return f"Hello, {name}!"


@activity
def noop() -> None:
    return None


@activity
def counted(key: str, value: object = None) -> object:
    """Bumps counter ``key`` each time it runs; returns ``value``."""
    bump(key)
    return value


@activity
def flaky(key: str, failures: int) -> int:
    """Fails the first ``failures`` runs (counted under ``key``), then returns the run number."""
    runs = bump(key)
    if runs <= failures:
        raise RuntimeError(f"flaky failure {runs} of {failures}")
    return runs


@activity
def fatal(message: str) -> None:
    raise DurableFatalError(message)


@activity
def slow(key: str, seconds: float) -> str:
    """Marks its start, sleeps, marks its end: a window to kill the worker in."""
    bump(f"{key}-started")
    time.sleep(seconds)
    bump(f"{key}-finished")
    return f"slept {seconds}"


@activity
async def async_double(value: int) -> int:
    await asyncio.sleep(0.01)
    return value * 2


@activity
def check_status(key: str, ready_after: int) -> str:
    runs = bump(key)
    return "ready" if runs >= ready_after else "pending"


# --- workflows ---------------------------------------------------------------------------------


@durable_workflow
async def hello(name: str) -> str:
    acts = workflow.proxy_activities()
    return await acts.greet(name)


@durable_workflow
async def random_around_activity(name: str) -> list[object]:
    r1 = workflow.random()
    greeting = await workflow.proxy_activities().greet(name)
    r2 = workflow.random()
    return [r1, greeting, r2]


@durable_workflow
async def sequence(n: int) -> int:
    acts = workflow.proxy_activities()
    for _ in range(n):
        await acts.noop()
    return n


@durable_workflow
async def retrying(key: str, failures: int, maximum_attempts: int) -> int:
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=maximum_attempts, initial_interval="100ms", backoff_coefficient=1.5))
    return int(await acts.flaky(key, failures))


@durable_workflow
async def graceful(key: str) -> dict[str, object]:
    """The seed's throw_on_error=False example: the failure comes back as a value."""
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=1, initial_interval="100ms", throw_on_error=False))
    result = await acts.flaky(key, 10)
    if isinstance(result, Exception):
        return {"handled": type(result).__name__, "message": str(result)}
    return {"handled": None}


@durable_workflow
async def fatal_flow(message: str) -> None:
    await workflow.proxy_activities().fatal(message)


@durable_workflow
async def parallel_fetch(names: list[str]) -> list[object]:
    """The seed's parallel fetch: workflow.all of activities."""
    acts = workflow.proxy_activities()
    return await workflow.all(*(acts.greet(n) for n in names))


@durable_workflow
async def gather_fetch(values: list[int]) -> list[int]:
    acts = workflow.proxy_activities()
    return list(await asyncio.gather(*(acts.async_double(v) for v in values)))


@durable_workflow
async def approval(order_id: str) -> bool:
    """The seed's approval wait_for."""
    await workflow.proxy_activities().greet(order_id)
    decision = await workflow.wait_for(f"approval-{order_id}")
    return bool(decision["approved"])


@durable_workflow
async def wait_with_timeout(signal_id: str, timeout: str) -> object:
    return await workflow.wait_for(signal_id, timeout=timeout)


@durable_workflow
async def many_waits(prefix: str, n: int) -> list[object]:
    return await workflow.all(*(workflow.wait_for(f"{prefix}-{i}") for i in range(n)))


@durable_workflow
async def polling(key: str, ready_after: int) -> dict[str, object]:
    """The seed's polling loop with sleep_for."""
    acts = workflow.proxy_activities()
    for attempt in range(10):
        status = await acts.check_status(key, ready_after)
        if status == "ready":
            return {"status": status, "attempts": attempt + 1}
        await workflow.sleep_for(f"{0.2 * (attempt + 1):.1f}s")
    return {"status": "timeout", "attempts": 10}


@durable_workflow
async def sleeper(duration: str) -> float:
    return await workflow.sleep_for(duration)


@durable_workflow
async def signaller(signal_id: str, data: object) -> str:
    return await workflow.signal(signal_id, data)


@durable_workflow
async def side_effects(key: str) -> list[bool]:
    first = await workflow.is_side_effect_allowed("email")
    if first:
        bump(key)
    await workflow.proxy_activities().noop()
    return [first]


@durable_workflow
async def context_probe() -> dict[str, object]:
    before = workflow.get_context()
    await workflow.proxy_activities().noop()
    after = workflow.get_context()
    return {"before": dict(before), "after_counter": after["counter"],
            "replaying": after["replaying"]}


@durable_workflow
async def swallower() -> str:
    """Catches Exception around a suspension: the engine must still suspend and continue."""
    try:
        value = await workflow.proxy_activities().greet("swallow")
    except Exception:  # noqa: BLE001 - what the test is about
        return "swallowed"
    return str(value)


@durable_workflow
async def failing_workflow(key: str, failures: int) -> str:
    """The workflow function itself fails ``failures`` times (counted), then returns."""
    runs = bump(key) if not workflow.get_context()["replaying"] else count(key)
    if runs <= failures:
        raise RuntimeError(f"workflow failure {runs}")
    return f"ok after {runs}"




@durable_workflow(task_queue="orders")
async def on_orders_queue(name: str) -> str:
    acts = workflow.proxy_activities()
    return await acts.greet(name)


@durable_workflow
async def unknown_activity() -> object:
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(maximum_attempts=0))
    return await acts.no_such_activity(1)


@durable_workflow
async def bad_duration() -> float:
    return await workflow.sleep_for("soon-ish")


@durable_workflow
async def non_json_activity_args() -> object:
    return await workflow.proxy_activities().greet({1, 2})


# --- used by the foundation tests (test_activities, test_durability, test_bad_input …) ---------


@activity
def where_am_i(key: str) -> dict[str, object]:
    """Bumps ``key``; returns how it ran: its activity context and the Celery queue it came on."""
    from celery import current_task

    bump(key)
    ctx = activity.get_context()
    delivery = dict(getattr(current_task.request, "delivery_info", None) or {})
    return {"task_queue": ctx.task_queue, "workflow_id": ctx.workflow_id,
            "attempt": ctx.attempt, "activity_name": ctx.activity_name, "args": ctx.args,
            "routing_key": delivery.get("routing_key")}


@activity
def counted_fatal(key: str, message: str) -> None:
    bump(key)
    raise DurableFatalError(message)


@durable_workflow(task_queue="orders")
async def order_payment(key: str) -> dict[str, object]:
    """Runs on task queue "orders"; pays through a proxy routed to task queue "payments"."""
    own = await workflow.proxy_activities().where_am_i(f"{key}-own")
    paid = await workflow.proxy_activities(task_queue="payments").where_am_i(f"{key}-pay")
    return {"workflow_queue": workflow.get_context()["task_queue"], "own": own, "paid": paid}


@durable_workflow
async def fatal_counted_flow(key: str, message: str) -> None:
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(
        maximum_attempts=3, initial_interval="100ms"))
    await acts.counted_fatal(key, message)


@durable_workflow
async def interrupt_probe(key: str) -> dict[str, object]:
    """did_interrupt on a failure, a plain error and a suspension (counted under ``key``)."""
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(maximum_attempts=0))
    try:
        await acts.fatal("probe failure")
        fatal_seen: object = None
    except DurableFatalError as error:
        fatal_seen = [type(error).__name__, workflow.did_interrupt(error)]
    try:
        await acts.noop()
    except BaseException as error:  # noqa: BLE001 - a suspension: must be recognised, re-raised
        if workflow.did_interrupt(error):
            bump(key)
        raise
    return {"fatal": fatal_seen, "plain": workflow.did_interrupt(ValueError("plain"))}


@durable_workflow
async def crash_survivor_fast(key: str, seconds: float) -> list[object]:
    """Three activities, the middle one slow (a window to kill its worker in); the short
    start_to_close_timeout gets a lost attempt re-driven soon."""
    acts = workflow.proxy_activities(start_to_close_timeout="3s",
                                     retry_policy=RetryPolicy(initial_interval="100ms"))
    first = await acts.counted(f"{key}-first", 1)
    middle = await acts.slow(key, seconds)
    last = await acts.counted(f"{key}-last", 3)
    return [first, middle, last]


# --- admin and operations (tests/admin) ----------------------------------------------------------


@activity
def admin_fixable(key: str) -> str:
    """Counts its runs under ``{key}-runs``; fails until counter ``{key}-fixed`` is bumped."""
    bump(f"{key}-runs")
    if count(f"{key}-fixed") == 0:
        raise RuntimeError(f"{key} is broken")
    return "fixed"


@durable_workflow
async def admin_fix_and_retry(key: str) -> list[object]:
    """A first activity that must not run again, then one that fails until it is fixed."""
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(maximum_attempts=0))
    first = await acts.counted(f"{key}-first", "one")
    second = await acts.admin_fixable(key)
    return [first, second]


@activity(task_queue="payments")
def charge_card(key: str, amount: float) -> dict[str, object]:
    """Registered for task queue "payments": served on Celery queue "payments-activity"."""
    from celery import current_task

    bump(key)
    delivery = dict(getattr(current_task.request, "delivery_info", None) or {})
    return {"amount": amount, "task_queue": activity.get_context().task_queue,
            "routing_key": delivery.get("routing_key")}


@durable_workflow(task_queue="orders")
async def charge_flow(key: str, amount: float) -> dict[str, object]:
    """Calls an activity registered for another task queue, through a plain proxy."""
    return await workflow.proxy_activities().charge_card(key, amount)


@durable_workflow
async def hider() -> str:
    """Hides a suspension with ``except BaseException``: what it registered is still acted on."""
    try:
        return str(await workflow.proxy_activities().greet("hidden"))
    except BaseException:  # noqa: BLE001 - what the test is about
        return "hid the suspension"


@activity
def echo(value: object) -> object:
    return value


@durable_workflow
async def racing_branches(slow: str, fast: str) -> list[object]:
    """Two branches whose later calls take positions in the order their sleeps end."""
    acts = workflow.proxy_activities()

    async def branch(name: str, delay: str) -> object:
        slept = await workflow.sleep_for(delay)
        return [name, slept, await acts.echo(name)]

    return await workflow.all(branch("slow", slow), branch("fast", fast))


@durable_workflow
async def signal_self(signal_id: str) -> list[object]:
    """Signals itself before and after its own wait."""
    sent = await workflow.signal(signal_id, {"to": "self"})
    received = await workflow.wait_for(signal_id)
    both = await workflow.all(workflow.wait_for(f"{signal_id}-2"),
                              workflow.signal(f"{signal_id}-2", "again"))
    return [sent, received, both]


@durable_workflow
async def timeout_flow(key: str, seconds: float, timeout: str) -> object:
    acts = workflow.proxy_activities(start_to_close_timeout=timeout,
                                     retry_policy=RetryPolicy(maximum_attempts=3,
                                                              initial_interval="100ms"))
    return await acts.slow(key, seconds)


@durable_workflow
async def backlog(key: str, n: int, seconds: float, timeout: str) -> list[object]:
    """``n`` parallel activities of ``seconds`` each, each well within ``timeout`` once started."""
    acts = workflow.proxy_activities(start_to_close_timeout=timeout,
                                     retry_policy=RetryPolicy(maximum_attempts=0))
    return await workflow.all(*(acts.slow(f"{key}-{i}", seconds) for i in range(n)))


@activity
def returns_set() -> object:
    return {1, 2}


@durable_workflow
async def non_json_activity_result() -> object:
    return await workflow.proxy_activities(
        retry_policy=RetryPolicy(maximum_attempts=2, initial_interval="100ms")).returns_set()


@durable_workflow
async def real_sleeper() -> str:
    await asyncio.sleep(0.1)  # a durable timer inside a workflow
    return "slept for real"


@durable_workflow
async def real_timeout() -> str:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    return await asyncio.wait_for(future, timeout=1)  # real time: refused


@durable_workflow
async def wide_slow(key: str, n: int, seconds: float) -> list[object]:
    """``n`` parallel slow activities, retried by the default policy: a fan-in to kill in."""
    acts = workflow.proxy_activities()
    return await workflow.all(*(acts.slow(f"{key}-{i}", seconds) for i in range(n)))


@activity
def takes_two(key: str, value: object) -> object:
    """Takes exactly two arguments; ``activity_called_wrongly`` gives it one."""
    bump(key)
    return value


@durable_workflow
async def activity_called_wrongly(key: str) -> object:
    """Calls ``takes_two`` with one argument under the default retry policy (50 retries)."""
    return await workflow.proxy_activities().takes_two(key)


# --- bad values given in workflow code (test_bad_input): each fails the run at once ----------


@durable_workflow
async def bad_call(case: str) -> object:
    """Makes the one bad durable call ``case`` names."""
    if case == "sleep_for_huge":
        return await workflow.sleep_for(10**400)
    if case == "search_incr_nan":
        return await (await workflow.search()).incr("total", float("nan"))
    if case == "search_mult_inf":
        return await (await workflow.search()).mult("total", float("-inf"))
    if case == "entity_nul_path":
        return await (await workflow.entity()).increment("a\x00b", 1)
    if case == "queue_nul":
        return await workflow.proxy_activities(task_queue="q\x00").greet("x")
    if case == "queue_long":
        return await workflow.proxy_local_activities(task_queue="q" * 300).greet("x")
    if case == "queue_empty":
        return await workflow.proxy_activities(task_queue="").greet("x")
    if case == "activity_name_long":
        return await getattr(workflow.proxy_activities(), "a" * 300)()
    if case == "interrupt_nul":
        return await workflow.interrupt("x\x00")
    if case == "interrupt_long":
        return await workflow.interrupt("x" * 300)
    if case == "interrupt_reason_set":
        return await workflow.interrupt("someone", reason={"not", "json"})  # type: ignore[arg-type]
    raise AssertionError(f"no case {case!r}")


@durable_workflow
async def sleeps_zero() -> str:
    """``asyncio.sleep(0)`` only yields: no position, no timer."""
    await asyncio.sleep(0)
    return "yielded"
