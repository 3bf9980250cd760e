"""Signals: buffered before the wait, many concurrent waits, and delivery to every waiter."""

from __future__ import annotations

import threading

from tests.e2e import workflows as wf
from tests.e2e.helpers import history_rows, wait_until


def test_signal_sent_before_wait_is_received(client, uid):
    signal_id = f"early-{uid}"
    assert client.signal(signal_id, {"early": True}) == 0  # nobody waits yet: kept
    handle = client.start(wf.wait_with_timeout, signal_id, "30s", workflow_id=f"early-{uid}")
    assert handle.result(timeout=30) == {"early": True}
    assert history_rows(handle) == [(1, "wait", signal_id, "completed")]


def test_buffered_signal_is_taken_once(client, uid):
    signal_id = f"once-{uid}"
    client.signal(signal_id, "only one")
    first = client.start(wf.wait_with_timeout, signal_id, "30s", workflow_id=f"once-a-{uid}")
    assert first.result(timeout=30) == "only one"
    second = client.start(wf.wait_with_timeout, signal_id, "300ms", workflow_id=f"once-b-{uid}")
    assert second.result(timeout=30) is False


def test_many_waits_all_signalled_before_they_register(client, uid):
    n = 30
    prefix = f"pre-{uid}"
    for i in range(n):
        assert client.signal(f"{prefix}-{i}", {"i": i}) == 0
    handle = client.start(wf.many_waits, prefix, n, workflow_id=f"pre-{uid}")
    assert handle.result(timeout=30) == [{"i": i} for i in range(n)]
    assert history_rows(handle) == [(i + 1, "wait", f"{prefix}-{i}", "completed")
                                    for i in range(n)]


def test_many_waits_signalled_concurrently_after_they_register(client, uid):
    n = 25
    prefix = f"post-{uid}"
    handle = client.start(wf.many_waits, prefix, n, workflow_id=f"post-{uid}")
    wait_until(lambda: len(handle.history()) == n, what="all waits registered")
    delivered: list[int] = []

    def send(i: int) -> None:
        from django.db import connection

        try:
            delivered.append(client.signal(f"{prefix}-{i}", i * 10))
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert delivered == [1] * n
    assert handle.result(timeout=30) == [i * 10 for i in range(n)]


def test_signal_reaches_every_current_waiter(client, uid):
    signal_id = f"all-{uid}"
    handles = [client.start(wf.wait_with_timeout, signal_id, "30s",
                            workflow_id=f"all-{i}-{uid}") for i in range(3)]
    for handle in handles:
        wait_until(lambda h=handle: history_rows(h) == [(1, "wait", signal_id, "scheduled")],
                   what="every wait registered")
    assert client.signal(signal_id, "broadcast") == 3
    assert [h.result(timeout=30) for h in handles] == ["broadcast"] * 3


def test_workflow_signals_itself(client, uid):
    signal_id = f"self-{uid}"
    handle = client.start(wf.signal_self, signal_id, workflow_id=f"self-{uid}")
    assert handle.result(timeout=30) == [signal_id, {"to": "self"}, ["again", f"{signal_id}-2"]]
    assert history_rows(handle) == [
        (1, "signal", signal_id, "completed"), (2, "wait", signal_id, "completed"),
        (3, "wait", f"{signal_id}-2", "completed"), (4, "signal", f"{signal_id}-2", "completed")]
