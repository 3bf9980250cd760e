"""Every workflow-API call, the seed examples, determinism of random(), and activity retries."""

from __future__ import annotations

import math

import pytest

from durable_celery import DurableFatalError, DurableMaxedError
from tests.e2e import workflows as wf
from tests.e2e.helpers import history_rows
from tests.support.counters import count


def _frac_sin(n: int) -> float:
    x = math.sin(n) * 10000
    return x - math.floor(x)


# --- proxy_activities and routing -------------------------------------------------------------


def test_workflow_on_orders_queue_runs(client, uid):
    handle = client.start(wf.on_orders_queue, "orders", workflow_id=f"orders-{uid}")
    assert handle.result(timeout=30) == "Hello, orders!"
    assert handle.describe()["task_queue"] == "orders"


NO_EAGER = {"DURABLE_EAGER_ACTIVITIES": "false"}


def test_proxy_task_queue_routes_activity_to_its_activity_queue(client, uid, start_worker):
    queue = f"rt-{uid}"
    start_worker([queue, f"{queue}-activity"], env=NO_EAGER)  # every activity via the broker
    handle = client.start(wf.order_payment, uid, workflow_id=f"pay-{uid}", task_queue=queue)
    result = handle.result(timeout=30)
    assert result["workflow_queue"] == queue
    assert result["own"]["task_queue"] == queue
    assert result["own"]["routing_key"] == f"{queue}-activity"
    assert result["paid"]["task_queue"] == "payments"
    assert result["paid"]["routing_key"] == "payments-activity"
    assert result["paid"]["workflow_id"] == f"pay-{uid}"
    assert result["paid"]["activity_name"] == "where_am_i"
    assert result["paid"]["args"] == [f"{uid}-pay"]
    assert result["paid"]["attempt"] == 1
    assert count(f"{uid}-own") == 1
    assert count(f"{uid}-pay") == 1
    assert [h["input"]["task_queue"] for h in handle.history()] == [queue, "payments"]


def test_eager_activity_runs_in_the_stepping_worker_and_changes_no_result(client, uid,
                                                                           start_worker):
    """The shared worker consumes orders and orders-activity: the step runs the activity itself
    (no broker hop: it arrives on the step's queue); without eager execution it goes through
    orders-activity. The results are the same."""
    eager = client.start(wf.order_payment, f"{uid}-e", workflow_id=f"eager-{uid}").result(30)
    assert eager["own"]["routing_key"] == "orders"  # ran inside the replay step's task
    queue = f"ne-{uid}"
    start_worker([queue, f"{queue}-activity"], env=NO_EAGER)
    plain = client.start(wf.order_payment, f"{uid}-e", workflow_id=f"plain-{uid}",
                         task_queue=queue).result(30)
    assert plain["own"]["routing_key"] == f"{queue}-activity"
    for result in (eager, plain):
        del result["own"]["routing_key"], result["paid"]["routing_key"], result["workflow_queue"]
        del result["own"]["task_queue"], result["own"]["workflow_id"]
        del result["paid"]["workflow_id"]
    assert eager == plain
    assert count(f"{uid}-e-own") == 2 and count(f"{uid}-e-pay") == 2


def test_activity_registered_for_a_task_queue_runs_on_its_activity_queue(client, uid,
                                                                         start_worker):
    queue = f"rt-{uid}"
    start_worker([queue, f"{queue}-activity"], env=NO_EAGER)
    handle = client.start(wf.charge_flow, uid, 9.99, workflow_id=f"charge-{uid}",
                          task_queue=queue)
    assert handle.result(timeout=30) == {"amount": 9.99, "task_queue": "payments",
                                         "routing_key": "payments-activity"}
    assert count(uid) == 1


def test_start_and_delay_from_the_definition(client, uid):
    handle = wf.hello.start("def", workflow_id=f"def-{uid}")
    assert handle.workflow_id == f"def-{uid}"
    assert handle.result(timeout=30) == "Hello, def!"
    generated = wf.hello.delay("gen")
    assert generated.workflow_id.startswith("hello-")
    assert generated.result(timeout=30) == "Hello, gen!"
    by_name = client.start("hello", "name", workflow_id=f"name-{uid}")
    assert by_name.result(timeout=30) == "Hello, name!"
    assert by_name.describe()["workflow_name"] == "hello"


def test_sync_and_async_activities_with_asyncio_gather(client, uid):
    handle = client.start(wf.gather_fetch, [1, 2, 3, 4], workflow_id=f"gather-{uid}")
    assert handle.result(timeout=30) == [2, 4, 6, 8]
    assert history_rows(handle) == [(i, "activity", "async_double", "completed")
                                    for i in range(1, 5)]


# --- timers and signals -----------------------------------------------------------------------


def test_sleep_for_returns_seconds_as_float(client, uid):
    handle = client.start(wf.sleeper, "300ms", workflow_id=f"sleep-{uid}")
    result = handle.result(timeout=30)
    assert result == 0.3 and isinstance(result, float)
    assert history_rows(handle) == [(1, "sleep", "", "completed")]


def test_wait_for_returns_payload_exactly_as_sent(client, uid):
    signal_id = f"payload-{uid}"
    handle = client.start(wf.wait_with_timeout, signal_id, "30s", workflow_id=f"wait-{uid}")
    from tests.e2e.helpers import wait_until

    wait_until(lambda: history_rows(handle) == [(1, "wait", signal_id, "scheduled")],
               what="the wait to be registered")
    payload = {"a": [1, 2.5, None, "x"], "nested": {"t": True, "f": False}, "s": "é"}
    assert client.signal(signal_id, payload) == 1
    assert handle.result(timeout=30) == payload


def test_wait_for_timeout_returns_false(client, uid):
    handle = client.start(wf.wait_with_timeout, f"never-{uid}", "300ms",
                          workflow_id=f"timeout-{uid}")
    assert handle.result(timeout=30) is False
    assert history_rows(handle) == [(1, "wait", f"never-{uid}", "completed")]


def test_signal_from_one_workflow_reaches_another_workflows_wait(client, uid):
    from tests.e2e.helpers import wait_until

    signal_id = f"w2w-{uid}"
    waiter = client.start(wf.wait_with_timeout, signal_id, "30s", workflow_id=f"waiter-{uid}")
    wait_until(lambda: history_rows(waiter) == [(1, "wait", signal_id, "scheduled")],
               what="the wait to be registered")
    sender = client.start(wf.signaller, signal_id, {"from": "workflow", "n": [1, 2]},
                          workflow_id=f"sender-{uid}")
    assert sender.result(timeout=30) == signal_id
    assert waiter.result(timeout=30) == {"from": "workflow", "n": [1, 2]}
    assert history_rows(sender) == [(1, "signal", signal_id, "completed")]


# --- deterministic helpers --------------------------------------------------------------------


def test_random_at_positions_one_and_three(client, uid):
    handle = client.start(wf.random_around_activity, "r", workflow_id=f"random-{uid}")
    r1, greeting, r2 = handle.result(timeout=30)
    assert greeting == "Hello, r!"
    assert r1 == _frac_sin(1)
    assert r2 == _frac_sin(3)
    assert [(h["seq"], h["kind"]) for h in handle.history()] == [
        (1, "random"), (2, "activity"), (3, "random")]


def test_get_context(client, uid):
    handle = client.start(wf.context_probe, workflow_id=f"ctx-{uid}")
    result = handle.result(timeout=30)
    before = result["before"]
    # the run stays in memory between its steps, so the code before the activity ran once,
    # on first run (a run rebuilt from history would see replaying=True here)
    assert isinstance(before.pop("replaying"), bool)
    assert before == {
        "workflow_id": f"ctx-{uid}", "workflow_name": "context_probe", "task_queue": "durable",
        "namespace": "durable", "counter": 0, "workflow_dimension": "",
        "parent_workflow_id": None, "origin_workflow_id": None, "expire": None}
    assert result["after_counter"] == 1
    assert result["replaying"] is False


def test_did_interrupt(client, uid):
    handle = client.start(wf.interrupt_probe, uid, workflow_id=f"did-{uid}")
    assert handle.result(timeout=30) == {"fatal": ["DurableFatalError", True], "plain": False}
    # a suspension is raised into the code only when a run is unwound (replayed from history
    # or dropped from memory), at most once here; did_interrupt recognised it and it went on
    assert count(uid) <= 1


def test_suspension_is_not_swallowed_by_except_exception(client, uid):
    handle = client.start(wf.swallower, workflow_id=f"swallow-{uid}")
    assert handle.result(timeout=30) == "Hello, swallow!"


def test_suspension_hidden_by_except_base_exception_is_still_acted_on(client, uid):
    handle = client.start(wf.hider, workflow_id=f"hider-{uid}")
    assert handle.result(timeout=30) == "Hello, hidden!"
    assert history_rows(handle) == [(1, "activity", "greet", "completed")]


def test_is_side_effect_allowed_true_once(client, uid):
    handle = client.start(wf.side_effects, uid, workflow_id=f"side-{uid}")
    # True on the run that first reached the position (kept in memory to the end here), False on
    # a replay from history; the counter (bumped only when True) proves it ran exactly once.
    assert handle.result(timeout=30) in ([True], [False])
    assert count(uid) == 1
    assert [h["kind"] for h in handle.history()] == ["side_effect", "activity"]


# --- the seed examples ------------------------------------------------------------------------


def test_parallel_fetch_with_workflow_all(client, uid):
    names = [f"n{i}" for i in range(6)]
    handle = client.start(wf.parallel_fetch, names, workflow_id=f"fetch-{uid}")
    assert handle.result(timeout=30) == [f"Hello, {n}!" for n in names]
    assert history_rows(handle) == [(i + 1, "activity", "greet", "completed")
                                    for i in range(6)]
    assert [h["input"]["args"] for h in handle.history()] == [[n] for n in names]


def test_approval_wait_for(client, uid):
    from tests.e2e.helpers import wait_until

    handle = client.start(wf.approval, uid, workflow_id=f"approval-{uid}")
    wait_until(lambda: len(handle.history()) == 2, what="the approval wait")
    assert handle.status() == "running"
    assert client.signal(f"approval-{uid}", {"approved": True, "by": "boss"}) == 1
    assert handle.result(timeout=30) is True
    assert history_rows(handle) == [(1, "activity", "greet", "completed"),
                                    (2, "wait", f"approval-{uid}", "completed")]


def test_polling_loop_with_sleep_for(client, uid):
    handle = client.start(wf.polling, uid, 3, workflow_id=f"poll-{uid}")
    assert handle.result(timeout=30) == {"status": "ready", "attempts": 3}
    assert count(uid) == 3
    assert [h["kind"] for h in handle.history()] == [
        "activity", "sleep", "activity", "sleep", "activity"]
    assert [h["result"] for h in handle.history() if h["kind"] == "sleep"] == [0.2, 0.4]


def test_graceful_throw_on_error_false(client, uid):
    handle = client.start(wf.graceful, uid, workflow_id=f"graceful-{uid}")
    assert handle.result(timeout=30) == {"handled": "DurableMaxedError",
                                         "message": "flaky failure 2 of 10"}
    assert count(uid) == 2
    (row,) = handle.history()
    assert (row["status"], row["attempts"]) == ("failed", 2)


# --- activity retries and failures -------------------------------------------------------------


def test_activity_retried_then_succeeds(client, uid):
    handle = client.start(wf.retrying, uid, 2, 2, workflow_id=f"retry-ok-{uid}")
    assert handle.result(timeout=30) == 3
    assert count(uid) == 3
    (row,) = handle.history()
    assert (row["status"], row["attempts"], row["result"]) == ("completed", 3, 3)


def test_activity_retries_exhausted_raises_maxed(client, uid):
    handle = client.start(wf.retrying, uid, 2, 1, workflow_id=f"retry-max-{uid}")
    with pytest.raises(DurableMaxedError) as info:
        handle.result(timeout=30)
    assert info.value.code == 597
    assert info.value.message == "flaky failure 2 of 2"
    assert count(uid) == 2
    assert handle.status() == "failed"
    (row,) = handle.history()
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert (row["error"]["class"], row["error"]["type"]) == ("DurableMaxedError", "RuntimeError")
    assert "flaky" in row["error"]["traceback"]


def test_fatal_activity_error_is_not_retried(client, uid):
    handle = client.start(wf.fatal_counted_flow, uid, "card declined",
                          workflow_id=f"fatal-{uid}")
    with pytest.raises(DurableFatalError) as info:
        handle.result(timeout=30)
    assert type(info.value) is DurableFatalError
    assert info.value.code == 598
    assert info.value.message == "card declined"
    assert count(uid) == 1
    (row,) = handle.history()
    assert (row["status"], row["attempts"]) == ("failed", 1)


def test_workflow_function_retried_by_start_policy(client, uid):
    from durable_celery import RetryPolicy

    handle = client.start(wf.failing_workflow, uid, 2, workflow_id=f"wf-retry-{uid}",
                          retry_policy=RetryPolicy(maximum_attempts=2,
                                                   initial_interval="100ms"))
    assert handle.result(timeout=30) == "ok after 3"
    assert count(uid) == 3
    assert handle.describe()["attempt"] == 3


def test_workflow_function_retries_exhausted(client, uid):
    from durable_celery import RetryPolicy

    handle = client.start(wf.failing_workflow, uid, 5, workflow_id=f"wf-max-{uid}",
                          retry_policy=RetryPolicy(maximum_attempts=1,
                                                   initial_interval="100ms"))
    with pytest.raises(DurableMaxedError) as info:
        handle.result(timeout=30)
    assert info.value.code == 597
    assert info.value.message == "workflow failure 2"
    assert count(uid) == 2
    assert handle.describe()["attempt"] == 2
    assert handle.describe()["error"]["class"] == "DurableMaxedError"


def test_activity_exceeding_start_to_close_timeout_is_retried_then_times_out(client, uid):
    from durable_celery import DurableTimeoutError

    handle = client.start(wf.timeout_flow, uid, 1.5, "300ms", workflow_id=f"stc-{uid}")
    with pytest.raises(DurableTimeoutError) as info:
        handle.result(timeout=30)
    assert info.value.code == 596
    assert "slow" in info.value.message and "0.3s" in info.value.message
    assert count(f"{uid}-started") == 4  # a timed-out attempt is retried: 1 + 3 retries
    (row,) = handle.history()
    assert (row["status"], row["attempts"], row["error"]["class"]) == (
        "failed", 4, "DurableTimeoutError")


def test_activity_called_with_the_wrong_argument_count_fails_at_once(client, uid):
    # Before: each attempt raised a plain TypeError, retried by the default policy for hours.

    from durable_celery import ArgumentMismatchError

    handle = client.start(wf.activity_called_wrongly, uid, workflow_id=f"wrong-act-{uid}")
    with pytest.raises(ArgumentMismatchError) as info:
        handle.result(timeout=15)
    error = info.value
    assert isinstance(error, TypeError) and error.code == 598
    assert "activity 'takes_two' cannot be called with 1 argument(s)" in error.message
    assert "missing a required argument: 'value'" in error.message
    assert "its signature is takes_two(key: 'str', value: 'object')" in error.message
    assert count(uid) == 0  # the function never ran
    (row,) = handle.history()
    assert (row["kind"], row["name"], row["status"], row["attempts"]) == (
        "activity", "takes_two", "failed", 1)
    assert row["error"]["class"] == "ArgumentMismatchError"
    assert handle.status() == "failed" and handle.describe()["attempt"] == 1
