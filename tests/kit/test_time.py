"""Time skipping and the test clock: sleeps, wait timeouts and retry back-offs fire as soon as
nothing else can happen, and the test can move the clock itself.

Every check reads what the run recorded (history timestamps on the test clock, attempt rows,
timers), never a stopwatch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durable_celery.models import ActivityAttempt, HistoryEvent, Timer
from durable_celery.store.executions import get_execution
from tests.e2e.helpers import history_rows
from tests.kit import workflows as kw
from tests.support.counters import count

DAY = 86400.0


def _row(handle, seq: int) -> dict:
    return next(row for row in handle.history() if row["seq"] == seq)


def test_thirty_day_sleep_completes_at_once_on_the_test_clock(durable_env, uid):
    handle = durable_env.start(kw.kit_sleeper, "30 days", workflow_id=f"sleep30-{uid}")
    assert history_rows(handle) == [(1, "now", "", "completed"), (2, "sleep", "", "scheduled")]

    slept, seen = durable_env.result(handle)

    assert slept == 30 * DAY
    assert seen >= 30 * DAY  # workflow.now() after the sleep reads the test clock
    sleep = _row(handle, 2)
    recorded = sleep["completed_at"] - sleep["created_at"]
    # the timer was due 30 days after the step that scheduled it (a moment before the row's
    # insert), and fired when time skipping reached it
    assert timedelta(days=30) - timedelta(seconds=1) <= recorded
    # what the run recorded beyond the 30 skipped days is real time: a fraction of a second
    real_time = recorded - durable_env.clock.advanced
    assert real_time < timedelta(seconds=10), real_time
    execution = get_execution("durable", handle.workflow_id)
    assert execution.completed_at - execution.created_at >= timedelta(days=30) - \
        timedelta(seconds=1)
    assert not Timer.objects.filter(execution=execution).exists()


def test_asyncio_sleep_in_gather_branches_is_skipped_too(durable_env, uid):
    handle = durable_env.start(kw.kit_asyncio_sleeps, [3, 1, 2], workflow_id=f"naps-{uid}")
    assert durable_env.result(handle) == [3, 1, 2]
    sleeps = [row for row in handle.history() if row["kind"] == "sleep"]
    assert [row["input"]["seconds"] for row in sleeps] == [3 * DAY, DAY, 2 * DAY]
    assert durable_env.clock.advanced >= timedelta(days=3) - timedelta(seconds=1)


def test_advance_fires_the_timers_that_fall_due_in_order(durable_env, uid):
    handle = durable_env.start(kw.kit_steps, uid, workflow_id=f"steps-{uid}")
    start = durable_env.now()

    durable_env.advance("59 minutes")
    assert history_rows(handle) == [(1, "sleep", "", "scheduled")]

    durable_env.advance("2 minutes")  # the 1-hour sleep is due: charge, then the 2-hour sleep
    assert history_rows(handle) == [(1, "sleep", "", "completed"),
                                    (2, "activity", "kit_charge", "completed"),
                                    (3, "sleep", "", "scheduled")]
    assert count(f"{uid}-charge") == 1

    now = durable_env.advance("5 hours")  # passes the second sleep's due time on the way
    assert now - start >= timedelta(hours=6, minutes=1)
    assert handle.status() == "completed"
    assert durable_env.result(handle) == [3600.0, f"receipt-{uid}-1.00", 7200.0,
                                          f"receipt-{uid}-2.00"]
    assert count(f"{uid}-charge") == 2
    # the second sleep fired at its due time, not at the end of the advance
    second = _row(handle, 3)
    assert second["completed_at"] - second["created_at"] < timedelta(hours=2, minutes=1)


@pytest.mark.durable_env(skip_time=False)
def test_without_time_skipping_result_names_the_next_timer(durable_env, uid):
    handle = durable_env.start(kw.kit_sleeper, "2 hours", workflow_id=f"manual-{uid}")
    with pytest.raises(TimeoutError) as info:
        durable_env.result(handle)
    message = str(info.value)
    assert "time skipping is off" in message and "env.advance" in message
    assert f"manual-{uid}" in message and "a sleep (position 2)" in message

    durable_env.advance("2 hours")
    assert durable_env.result(handle)[0] == 7200.0


def test_result_timeout_is_measured_on_the_test_clock(durable_env, uid):
    handle = durable_env.start(kw.kit_sleeper, "30 days", workflow_id=f"limit-{uid}")
    start = durable_env.now()
    with pytest.raises(TimeoutError) as info:
        durable_env.result(handle, timeout="1 day")
    assert "after the timeout" in str(info.value)
    assert timedelta(days=1) <= durable_env.now() - start < timedelta(days=2)
    assert handle.status() == "running"
    assert durable_env.result(handle, timeout="31 days")[0] == 30 * DAY


def test_wait_timeout_fires_when_nothing_else_can_happen(durable_env, uid):
    handle = durable_env.start(kw.kit_waiter, f"never-{uid}", "7 days",
                               workflow_id=f"timeout-{uid}")
    assert durable_env.result(handle) is False
    wait = _row(handle, 1)
    assert (wait["kind"], wait["status"], wait["result"]) == ("wait", "completed", False)
    assert wait["completed_at"] - wait["created_at"] >= timedelta(days=7) - timedelta(seconds=1)
    # a signal arriving after the timeout is kept for a later wait, not given to this one
    assert durable_env.signal(f"never-{uid}", "too late") == 0
    assert durable_env.result(handle) is False


def test_signal_before_timeout_wins_and_the_cancelled_timeout_changes_nothing(durable_env,
                                                                               uid):
    handle = durable_env.start(kw.kit_waiter, f"race-{uid}", "7 days",
                               workflow_id=f"race-{uid}")
    execution = get_execution("durable", handle.workflow_id)
    assert Timer.objects.filter(execution=execution).count() == 1  # the wait's timeout

    durable_env.advance("1 day")
    assert durable_env.signal(f"race-{uid}", "in time") == 1
    assert durable_env.result(handle) == "in time"
    assert not Timer.objects.filter(execution=execution).exists()

    durable_env.advance("10 days")  # well past the timeout the signal cancelled
    assert durable_env.result(handle) == "in time"
    assert history_rows(handle) == [(1, "wait", f"race-{uid}", "completed")]
    wait = _row(handle, 1)
    assert timedelta(days=1) <= wait["completed_at"] - wait["created_at"] < timedelta(days=2)


def test_branches_take_positions_in_the_order_their_timers_fire(durable_env, uid):
    handle = durable_env.start(kw.kit_racing, "7 days", "1 hour", workflow_id=f"branches-{uid}")
    assert durable_env.result(handle) == [
        ["slow", 7 * DAY, f"receipt-slow-{7 * DAY:.2f}"],
        ["fast", 3600.0, "receipt-fast-3600.00"]]
    rows = handle.history()
    assert [(h["seq"], h["kind"]) for h in rows] == [
        (1, "sleep"), (2, "sleep"), (3, "activity"), (4, "activity")]
    assert [h["input"]["args"][0] for h in rows[2:]] == ["fast", "slow"]


def test_retry_backoff_is_skipped(durable_env, uid):
    handle = durable_env.start(kw.kit_retrying, uid, 2, workflow_id=f"backoff-{uid}")
    assert durable_env.result(handle) == 3
    assert count(f"{uid}-flaky") == 3
    event = HistoryEvent.objects.get(execution__workflow_id=handle.workflow_id, seq=1)
    attempts = list(ActivityAttempt.objects.filter(event=event).order_by("number"))
    assert [(a.number, a.outcome, a.retry_delay) for a in attempts] == [
        (1, "failed", 3600.0), (2, "failed", 7200.0)]
    assert attempts[0].error["type"] == "ConnectionError"
    # the third attempt started after both back-offs had passed on the test clock
    assert event.started_at - attempts[0].finished_at >= timedelta(hours=3)
    assert durable_env.clock.advanced >= timedelta(hours=3) - timedelta(seconds=1)


@pytest.mark.durable_env(start_time=datetime(2031, 3, 1, 9, 0, tzinfo=UTC))
def test_start_time_sets_the_test_clock(durable_env, uid):
    handle = durable_env.start(kw.kit_order, uid, workflow_id=f"start-{uid}")
    durable_env.signal(f"approve-{uid}", "yes")
    result = durable_env.result(handle)
    decided = datetime.fromisoformat(result["decided_at"])
    assert datetime(2031, 3, 31, 9, 0, tzinfo=UTC) <= decided < datetime(2031, 4, 1, tzinfo=UTC)
    assert get_execution("durable", handle.workflow_id).created_at.year == 2031


@pytest.mark.durable_env(max_deliveries=20)
def test_a_workflow_that_never_ends_is_an_error_not_a_hang(durable_env, uid):
    handle = durable_env.start(kw.kit_forever, uid, workflow_id=f"forever-{uid}")
    with pytest.raises(TimeoutError, match="still running after 20 jumps"):
        durable_env.result(handle)
    with pytest.raises(TimeoutError, match="20 timers fired on the way"):
        durable_env.advance("1 day")
    ticks = len(handle.history())
    durable_env.advance("15 minutes")  # within the bound, advancing works: one tick a minute
    # (14 or 15: the next tick was due up to a minute after the clock's time when it started)
    assert 14 <= len(handle.history()) - ticks <= 15
    assert handle.status() == "running"
