"""Schedules end to end: real workers sweep, fire and run; counters prove each fire time ran once.

Every schedule a test makes is deleted after it (the shared worker sweeps the whole database).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e import schedule_workflows as sw
from tests.e2e.helpers import wait_until
from tests.support.backends import current_backend
from tests.support.counters import count

FAR_CRON = "0 0 1 1 *"  # once a year: never fires during a test


@pytest.fixture
def made(client: Any) -> Iterator[list[Any]]:
    """Schedules made by the test, deleted after it."""
    from durable_celery.errors import ScheduleNotFoundError

    handles: list[Any] = []
    yield handles
    for handle in handles:
        try:
            handle.delete()
        except ScheduleNotFoundError:
            pass


def make(client: Any, made: list[Any], *args: Any, **options: Any) -> Any:
    handle = client.schedule(*args, **options)
    made.append(handle)
    return handle


def fire_time(workflow_id: str) -> datetime:
    return datetime.strptime(workflow_id.rsplit("-", 1)[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def runs_of(client: Any, schedule_id: str) -> list[Any]:
    """Every run a schedule started (by its search field), oldest fire time first."""
    handles = client.search(durable_schedule_id=schedule_id)
    return sorted(handles, key=lambda h: fire_time(h.workflow_id))


def started(handle: Any, at_least: int, timeout: float = 60) -> dict[str, Any]:
    return wait_until(lambda: (info := handle.describe())["runs_started"] >= at_least and info,
                      timeout=timeout, what=f"{handle.schedule_id} to start {at_least} runs")


def events(info: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [entry for entry in info["log"] if entry["event"] == name]


def test_every_second_schedule_starts_runs_that_complete(client, made, uid):
    key = f"tick-{uid}"
    schedule = make(client, made, sw.scheduled_tick, key, schedule_id=f"tick-{uid}", every="1s")
    info = schedule.describe()
    assert (info["every"], info["cron"], info["paused"]) == (1, None, False)
    assert info["description"] == "every 1 second" and info["overlap"] == "skip"
    upcoming = info["next_runs"]
    assert len(upcoming) == 5 and all(t.tzinfo is not None and t.microsecond == 0
                                      for t in upcoming)
    assert all(b - a == timedelta(seconds=1) for a, b in zip(upcoming, upcoming[1:],
                                                             strict=False))

    def three_completed() -> list[dict[str, Any]] | None:
        done = [r for r in schedule.describe()["recent_runs"] if r["status"] == "completed"]
        return done if len(done) >= 3 else None

    done = wait_until(three_completed, timeout=60, what="three completed runs")
    schedule.pause()
    for run in done:
        workflow_id = run["workflow_id"]
        assert workflow_id == f"tick-{uid}-{run['fire_at']:%Y%m%dT%H%M%SZ}"
        handle = client.get_handle(workflow_id)
        assert handle.result(timeout=30) == workflow_id
        assert handle.describe()["search"] == {"durable_schedule_id": f"tick-{uid}"}
        assert count(f"{key}-{workflow_id}") == 1
    assert f"tick-{uid}" in [h.schedule_id for h in client.list_schedules()]


def test_two_sweeping_workers_start_one_run_per_fire_time(client, made, uid, start_worker):
    """Two sweepers race for every fire; one of them is killed mid-stream and replaced."""
    extra = start_worker(["sched-idle"])  # a second worker process: a second sweeper
    key = f"pair-{uid}"
    schedule = make(client, made, sw.scheduled_tick, key, schedule_id=f"pair-{uid}",
                    every="1s", overlap="allow_all")
    started(schedule, 4)
    extra.kill()  # SIGKILL, possibly inside a claim: its transaction must roll back whole
    start_worker(["sched-idle"])
    started(schedule, schedule.describe()["runs_started"] + 4)
    schedule.pause()
    info = schedule.describe()
    runs = runs_of(client, f"pair-{uid}")
    assert len(runs) == info["runs_started"] >= 8
    times = [fire_time(h.workflow_id) for h in runs]
    assert all(b - a == timedelta(seconds=1) for a, b in zip(times, times[1:], strict=False)), \
        times  # no fire time lost, none twice
    for handle in runs:
        assert handle.result(timeout=30) == handle.workflow_id
        assert count(f"{key}-{handle.workflow_id}") == 1
    assert count(key) == len(runs)
    assert not events(info, "already_started")


def test_concurrent_sweeps_claim_a_due_fire_once(client, made, uid):
    from django.db import connection
    from django.utils import timezone

    from durable_celery.models import Schedule
    from durable_celery.store.schedules import fire_due_schedules

    key = f"race-{uid}"
    schedule = make(client, made, sw.scheduled_tick, key, schedule_id=f"race-{uid}",
                    cron=FAR_CRON, overlap="allow_all")
    due = timezone.now().replace(microsecond=0) - timedelta(seconds=5)
    Schedule.objects.named("durable", f"race-{uid}").update(next_fire_at=due)
    barrier = threading.Barrier(6)
    failures: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(10)
            fire_due_schedules()
        except BaseException as error:  # reported below
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    workflow_id = f"race-{uid}-{due:%Y%m%dT%H%M%SZ}"
    # the shared worker's sweeper may have claimed the fire first (the threads then skip it):
    # its transaction commits when it commits
    wait_until(lambda: _run_exists(workflow_id), timeout=30, what="the fire's run")
    assert client.get_handle(workflow_id).result(timeout=30) == workflow_id
    info = schedule.describe()
    assert info["recent"] == [workflow_id] and info["runs_started"] == 1
    assert len(events(info, "started")) == 1 and not events(info, "already_started")
    assert info["next_runs"][0] == datetime(due.year + 1, 1, 1, tzinfo=UTC)
    assert count(key) == 1 and count(f"{key}-{workflow_id}") == 1


def test_a_failing_workflow_keeps_firing(client, made, uid):
    key = f"fail-{uid}"
    schedule = make(client, made, sw.scheduled_failure, key, schedule_id=f"fail-{uid}",
                    every="1s")

    def three_failed() -> list[dict[str, Any]] | None:
        failed = [r for r in schedule.describe()["recent_runs"] if r["status"] == "failed"]
        return failed if len(failed) >= 3 else None

    failed = wait_until(three_failed, timeout=60, what="three failed runs")
    schedule.pause()
    for run in failed:
        error = client.get_handle(run["workflow_id"]).describe()["error"]
        assert error["type"] == "DurableFatalError" and key in error["message"]
        assert count(f"{key}-{run['workflow_id']}") == 1


def test_pause_stops_firing_and_unpause_resumes(client, made, uid):
    from django.utils import timezone

    schedule = make(client, made, sw.scheduled_tick, f"pause-{uid}",
                    schedule_id=f"pause-{uid}", every="1s")
    control = make(client, made, sw.scheduled_tick, f"ctl-{uid}", schedule_id=f"ctl-{uid}",
                   every="1s")
    started(schedule, 1)
    schedule.pause(note="maintenance")
    paused_at = timezone.now()
    info = schedule.describe()
    frozen = info["runs_started"]
    assert info["paused"] is True and info["note"] == "maintenance" and info["next_runs"] == []
    assert events(info, "paused")[0]["note"] == "maintenance"
    started(control, control.describe()["runs_started"] + 3)  # three sweeps' worth of fires
    assert schedule.describe()["runs_started"] == frozen

    unpaused_at = timezone.now()
    schedule.unpause()
    started(schedule, frozen + 1)
    schedule.pause()
    later = [fire_time(h.workflow_id) for h in runs_of(client, f"pause-{uid}")][frozen:]
    assert later and all(t > unpaused_at for t in later)  # the paused stretch is not made up
    assert not [t for t in map(fire_time, (h.workflow_id for h in runs_of(
        client, f"pause-{uid}"))) if paused_at < t <= unpaused_at]
    assert [e["event"] for e in schedule.describe()["log"][:3]].count("unpaused") == 1


def test_trigger_fires_once_now_even_while_paused(client, made, uid):
    key = f"trig-{uid}"
    schedule = make(client, made, sw.scheduled_tick, key, schedule_id=f"trig-{uid}",
                    cron=FAR_CRON, paused=True)
    handle = schedule.trigger(user="alice")
    assert handle.workflow_id.startswith(f"trig-{uid}-")
    assert handle.result(timeout=30) == handle.workflow_id
    assert count(key) == 1
    info = schedule.describe()
    assert info["recent"] == [handle.workflow_id] and info["runs_started"] == 1
    assert info["paused"] is True
    assert events(info, "triggered")[0]["user"] == "alice"
    operator = [r for r in handle.history() if r["kind"] == "operator"]
    assert [(r["name"], r["input"]["user"]) for r in operator] == [("trigger", "alice")]


def test_delete_stops_firing(client, made, uid):
    from durable_celery.errors import ScheduleNotFoundError

    schedule = make(client, made, sw.scheduled_tick, f"del-{uid}", schedule_id=f"del-{uid}",
                    every="1s")
    control = make(client, made, sw.scheduled_tick, f"dctl-{uid}", schedule_id=f"dctl-{uid}",
                   every="1s")
    started(schedule, 1)
    schedule.delete()
    with pytest.raises(ScheduleNotFoundError, match=f"del-{uid}"):
        client.get_schedule(f"del-{uid}")
    with pytest.raises(ScheduleNotFoundError):
        schedule.describe()
    before = runs_of(client, f"del-{uid}")
    started(control, control.describe()["runs_started"] + 3)
    assert [h.workflow_id for h in runs_of(client, f"del-{uid}")] == \
        [h.workflow_id for h in before]
    for handle in before:  # its runs go on
        assert handle.result(timeout=30) == handle.workflow_id


def _execution(client: Any, workflow_id: str) -> dict[str, Any]:
    return client.get_handle(workflow_id).describe()


def test_overlap_skip_skips_fires_while_a_run_is_running(client, made, uid):
    key = f"skip-{uid}"
    schedule = make(client, made, sw.scheduled_sleeper, key, 3, schedule_id=f"skip-{uid}",
                    every="1s")
    started(schedule, 2)
    schedule.pause()
    info = schedule.describe()
    first, second = runs_of(client, f"skip-{uid}")[:2]
    one, two = _execution(client, first.workflow_id), _execution(client, second.workflow_id)
    assert one["status"] == "completed" and two["created_at"] >= one["completed_at"]
    skipped = [e for e in events(info, "skipped") if e["running"] == first.workflow_id]
    assert len(skipped) >= 2 and info["fires_skipped"] >= 2
    assert fire_time(second.workflow_id) - fire_time(first.workflow_id) >= timedelta(seconds=3)
    assert count(f"{key}-started-{first.workflow_id}") == 1
    assert count(f"{key}-finished-{first.workflow_id}") == 1


def test_overlap_buffer_one_starts_one_waiting_fire_when_the_run_ends(client, made, uid):
    """A fire that comes while a run runs waits (one at most); when that run ends, the waiting
    fire's run starts. Which fire gets buffered depends on when the sweeper passes (a busy
    machine may pass late and make up several due times at once), so the test follows the
    first buffered fire the log records rather than assuming it is the next second."""
    key = f"buf-{uid}"
    schedule = make(client, made, sw.scheduled_sleeper, key, 3, schedule_id=f"buf-{uid}",
                    every="1s", overlap="buffer_one")
    info = wait_until(lambda: (i := schedule.describe()) and events(i, "buffered") and i,
                      timeout=60, what="a fire buffered behind a running run")
    entry = events(info, "buffered")[0]
    running, fire_at = entry["running"], datetime.fromisoformat(entry["fire_at"])

    def run_of_buffered_fire() -> Any:
        return next((h for h in runs_of(client, f"buf-{uid}")
                     if fire_time(h.workflow_id) == fire_at), None)

    second = wait_until(run_of_buffered_fire, timeout=60, what="the buffered fire's run")
    schedule.pause()
    info = schedule.describe()
    assert fire_at > fire_time(running)
    one, two = _execution(client, running), _execution(client, second.workflow_id)
    assert two["created_at"] >= one["completed_at"]  # it waited for the previous run
    buffered = [e for e in events(info, "buffered") if e["running"] == running]
    assert [datetime.fromisoformat(e["fire_at"]) for e in buffered] == [fire_at]
    assert [e for e in events(info, "skipped") if e.get("buffered")]  # the buffer held one
    assert second.result(timeout=30) == second.workflow_id


def test_overlap_cancel_other_cancels_the_running_run_and_starts_after_its_cleanup(
        client, made, uid):
    """Temporal's CANCEL_OTHER: the running run is asked to cancel (its cleanup activity runs,
    once), and the new fire's run starts only once the old run has ended."""
    key = f"cancel-{uid}"
    schedule = make(client, made, sw.scheduled_cleaner, key, 60, schedule_id=f"cancel-{uid}",
                    every="2s", overlap="cancel_other")
    started(schedule, 2)
    schedule.pause()
    runs = runs_of(client, f"cancel-{uid}")
    first, second = (_execution(client, handle.workflow_id) for handle in runs[:2])
    assert first["status"] == "interrupted", first  # how a cancelled run that re-raised ends
    assert "cancel_other" in first["error"]["message"]
    assert count(f"{key}-cleaned-{runs[0].workflow_id}") == 1  # its cleanup ran, once
    assert second["created_at"] >= first["completed_at"]  # no overlap with the cleanup
    entry = next(e for e in events(schedule.describe(), "cancelled_previous")
                 if runs[0].workflow_id in e["cancelled"])
    assert fire_time(runs[1].workflow_id) >= datetime.fromisoformat(entry["fire_at"])
    for handle in runs[1:]:
        handle.interrupt()
    assert count(f"{key}-finished") == 0


def test_missed_fires_are_made_up_within_the_catchup_window_only(client, made, uid):
    from django.utils import timezone

    from durable_celery.models import Schedule

    key = f"catch-{uid}"
    schedule = make(client, made, sw.scheduled_tick, key, schedule_id=f"catch-{uid}",
                    every="1s", overlap="allow_all", catchup_window="10s", paused=True)
    long_ago = (timezone.now() - timedelta(hours=1)).replace(microsecond=0)
    # as if no worker had run for an hour
    Schedule.objects.named("durable", f"catch-{uid}").update(next_fire_at=long_ago, paused=False)
    missed = wait_until(lambda: events(schedule.describe(), "missed"), timeout=30,
                        what="the catch-up")[0]
    schedule.pause()
    at, made_up_from = (datetime.fromisoformat(missed[k]) for k in ("at", "before"))
    assert datetime.fromisoformat(missed["first"]) == long_ago
    assert at - timedelta(seconds=10) <= made_up_from < at - timedelta(seconds=9)
    assert missed["count"] == (made_up_from - long_ago).total_seconds() >= 3580
    assert schedule.describe()["fires_missed"] == missed["count"]
    times = [fire_time(h.workflow_id) for h in runs_of(client, f"catch-{uid}")]
    assert times[0] == made_up_from  # nothing older than the window started
    window = int((at.replace(microsecond=0) - made_up_from).total_seconds()) + 1
    assert times[:window] == [made_up_from + timedelta(seconds=i) for i in range(window)]
    for handle in runs_of(client, f"catch-{uid}")[:window]:
        assert handle.result(timeout=60) == handle.workflow_id
        assert count(f"{key}-{handle.workflow_id}") == 1


def _run_exists(workflow_id: str) -> bool:
    from durable_celery.models import WorkflowExecution

    return WorkflowExecution.objects.filter(workflow_id=workflow_id).exists()


@pytest.mark.skipif(current_backend().name == "sqlite",
                    reason="PostgreSQL refuses an index row over 2704 bytes; SQLite has no limit")
def test_a_schedule_the_database_refuses_is_paused_and_the_others_keep_firing(client, made,
                                                                              uid):
    """A stored schedule whose runs the database refuses to store (here a search value too
    large for its index, written past the API's checks) is paused with the error as its note;
    it holds up neither the other schedules nor the rest of the sweeper's pass."""
    import random
    import string

    from durable_celery.models import Schedule

    bad = make(client, made, sw.scheduled_tick, f"bad-{uid}", schedule_id=f"bad-{uid}",
               every="1s", paused=True)
    Schedule.objects.named("durable", f"bad-{uid}").update(
        search={"blob": "".join(random.choices(string.ascii_letters, k=3000))}, paused=False)
    good = make(client, made, sw.scheduled_tick, f"good-{uid}", schedule_id=f"good-{uid}",
                every="1s")
    started(good, at_least=2)
    info = wait_until(lambda: (i := bad.describe())["paused"] and i, timeout=60,
                      what="the refused schedule paused")
    assert info["note"].startswith("paused by the sweeper after an error") and \
        "index row size" in info["note"]
    assert info["runs_started"] == 0 and events(info, "failed")
    assert runs_of(client, f"bad-{uid}") == []
