"""The broker path: what must also hold on RabbitMQ (run with ``-m transport``).

The kill test lives in test_durability.py and is marked ``transport`` too.
"""

from __future__ import annotations

import pytest

from tests.e2e import workflows as wf
from tests.e2e.helpers import history_rows, wait_until
from tests.support.counters import count

pytestmark = pytest.mark.transport


def test_hello(client, uid):
    handle = client.start(wf.hello, "broker", workflow_id=f"t-hello-{uid}")
    assert handle.result(timeout=30) == "Hello, broker!"
    assert history_rows(handle) == [(1, "activity", "greet", "completed")]


def test_parallel_fetch(client, uid):
    names = [f"p{i}" for i in range(8)]
    handle = client.start(wf.parallel_fetch, names, workflow_id=f"t-fetch-{uid}")
    assert handle.result(timeout=30) == [f"Hello, {n}!" for n in names]
    assert len(handle.history()) == 8


def test_signal_from_client_and_from_workflow(client, uid):
    first = client.start(wf.approval, uid, workflow_id=f"t-approval-{uid}")
    wait_until(lambda: len(first.history()) == 2, what="the approval wait")
    assert client.signal(f"approval-{uid}", {"approved": False}) == 1
    assert first.result(timeout=30) is False
    waiter = client.start(wf.wait_with_timeout, f"t-w2w-{uid}", "30s",
                          workflow_id=f"t-waiter-{uid}")
    wait_until(lambda: len(waiter.history()) == 1, what="the wait")
    client.start(wf.signaller, f"t-w2w-{uid}", [1, "two"], workflow_id=f"t-sender-{uid}")
    assert waiter.result(timeout=30) == [1, "two"]


def test_routing_to_orders_and_payments_queues(client, uid, start_worker):
    queue = f"t-rt-{uid}"
    start_worker([queue, f"{queue}-activity"], env={"DURABLE_EAGER_ACTIVITIES": "false"})
    handle = client.start(wf.order_payment, uid, workflow_id=f"t-pay-{uid}", task_queue=queue)
    result = handle.result(timeout=30)
    assert (result["own"]["routing_key"], result["paid"]["routing_key"]) == (
        f"{queue}-activity", "payments-activity")
    assert count(f"{uid}-pay") == 1
