"""Schedules in the testing kit: a schedule made while the environment is open fires on the test
clock, each fire time once, with its overlap policy — a daily schedule's week takes
milliseconds. Every check reads what was recorded (run ids carry the fire time; counters; the
schedule's log), never a stopwatch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durable_celery.models import Schedule, WorkflowExecution
from tests.kit import workflows as kw
from tests.support.counters import count

START = datetime(2030, 1, 1, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _delete_the_schedules(durable_env, uid):
    """These tests commit (the kit's tests share the session's database): their schedules go."""
    yield
    Schedule.objects.filter(schedule_id__endswith=uid).delete()


def _runs(schedule_id: str) -> list[WorkflowExecution]:
    return list(WorkflowExecution.objects.filter(workflow_id__startswith=f"{schedule_id}-")
                .order_by("workflow_id"))


@pytest.mark.durable_env(start_time=START)
def test_advance_fires_a_daily_schedule_once_per_day_at_its_time(durable_env, uid):
    schedule = durable_env.client.schedule(kw.kit_scheduled, uid, schedule_id=f"daily-{uid}",
                                           cron="0 3 * * *")
    durable_env.advance("2 hours")
    assert _runs(f"daily-{uid}") == []  # 02:30: not yet

    durable_env.advance("3 days")  # to 4 Jan 02:30: the fires of 1, 2 and 3 January

    runs = _runs(f"daily-{uid}")
    fire_times = [datetime(2030, 1, day, 3, 0, tzinfo=UTC) for day in (1, 2, 3)]
    assert [run.workflow_id for run in runs] == \
        [f"daily-{uid}-{moment:%Y%m%dT%H%M%SZ}" for moment in fire_times]
    for run, moment in zip(runs, fire_times, strict=True):
        assert run.status == "completed", run.workflow_id
        workflow_id, started = run.result
        assert workflow_id == run.workflow_id
        # each run started at its own fire time on the test clock, not at the advance's end
        assert moment <= datetime.fromisoformat(started) < moment + timedelta(minutes=1)
        assert count(f"{uid}-{run.workflow_id}-charge") == 1
    info = schedule.describe()
    assert info["runs_started"] == 3 and info["fires_missed"] == 0
    assert info["next_runs"][0] == datetime(2030, 1, 4, 3, 0, tzinfo=UTC)


@pytest.mark.durable_env(start_time=START)
def test_overlap_skip_holds_on_the_test_clock(durable_env, uid):
    """Hourly fires of a run that naps 90 minutes: 01:00 runs until 02:30, so 02:00 is skipped;
    03:00 runs, 04:00 is skipped; 05:00 runs."""
    schedule = durable_env.client.schedule(kw.kit_scheduled, uid, "90 minutes",
                                           schedule_id=f"skip-{uid}", every="1 hour")
    durable_env.advance("4 hours 45 minutes")  # to 05:15

    runs = _runs(f"skip-{uid}")
    assert [run.workflow_id[-7:] for run in runs] == ["010000Z", "030000Z", "050000Z"]
    assert [run.status for run in runs] == ["completed", "completed", "running"]
    info = schedule.describe()
    skipped = [entry["fire_at"] for entry in info["log"] if entry["event"] == "skipped"]
    assert sorted(skipped) == ["2030-01-01T02:00:00+00:00", "2030-01-01T04:00:00+00:00"]
    schedule.pause()
    assert durable_env.result(runs[-1].workflow_id)[0] == runs[-1].workflow_id


@pytest.mark.durable_env(start_time=START)
def test_a_long_time_skip_of_result_makes_up_fires_within_the_catchup_window_only(
        durable_env, uid):
    """``result()`` jumps to the awaited workflow's own timers; hourly fires it jumps over are
    then made up as when no worker swept: those within ``catchup_window`` start, older ones are
    counted as missed."""
    schedule = durable_env.client.schedule(kw.kit_scheduled, uid, schedule_id=f"hourly-{uid}",
                                           every="1 hour", overlap="allow_all",
                                           catchup_window="2 hours")
    handle = durable_env.start(kw.kit_sleeper, "2 days", workflow_id=f"nap-{uid}")

    assert durable_env.result(handle)[0] == 2 * 86400.0

    info = schedule.describe()
    runs = _runs(f"hourly-{uid}")
    assert len(runs) == info["runs_started"] == 2  # the two fires of the last two hours
    assert info["fires_missed"] == 48 - 2
    durable_env.run_until_idle()
    assert all(run.status == "completed" for run in _runs(f"hourly-{uid}"))
