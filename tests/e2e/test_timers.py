"""Durable timers: sleep_for, wait_for timeouts and retry back-off all live in the database.

A signal that beats a wait's timeout, and the cancelled timeout changing nothing afterwards, is
checked on the test clock in tests/kit/test_time.py (no real time has to pass).
"""

from __future__ import annotations

import time

import pytest

from durable_celery import InvalidArgumentError
from tests.e2e import workflows as wf
from tests.e2e.helpers import history_rows


@pytest.mark.parametrize(("duration", "seconds"), [("300ms", 0.3), (0.2, 0.2), ("1s", 1.0)])
def test_sleep_for_durations(client, uid, duration, seconds):
    started = time.monotonic()
    handle = client.start(wf.sleeper, duration, workflow_id=f"sleep-{uid}")
    assert handle.result(timeout=30) == seconds
    assert time.monotonic() - started >= seconds
    assert history_rows(handle) == [(1, "sleep", "", "completed")]


def test_wait_for_timeout_elapses_without_signal(client, uid):
    started = time.monotonic()
    handle = client.start(wf.wait_with_timeout, f"late-{uid}", "500ms",
                          workflow_id=f"late-{uid}")
    assert handle.result(timeout=30) is False
    assert time.monotonic() - started >= 0.5
    # a signal arriving after the timeout is kept for a later wait, not delivered to this one
    assert client.signal(f"late-{uid}", "too late") == 0
    assert handle.result(timeout=1) is False


def test_malformed_duration_fails_clearly(client, uid):
    handle = client.start(wf.bad_duration, workflow_id=f"baddur-{uid}")
    with pytest.raises(InvalidArgumentError) as info:
        handle.result(timeout=30)
    assert "soon-ish" in info.value.message
    assert "sleep_for" in info.value.message
    assert handle.history() == []


def test_branches_take_positions_in_the_order_their_timers_fire(client, uid):
    handle = client.start(wf.racing_branches, "700ms", "100ms", workflow_id=f"race2-{uid}")
    assert handle.result(timeout=30) == [["slow", 0.7, "slow"], ["fast", 0.1, "fast"]]
    rows = handle.history()
    assert [(h["seq"], h["kind"]) for h in rows] == [
        (1, "sleep"), (2, "sleep"), (3, "activity"), (4, "activity")]
    assert [h["input"]["args"] for h in rows[2:]] == [["fast"], ["slow"]]
    assert [h["result"] for h in rows[2:]] == ["fast", "slow"]
