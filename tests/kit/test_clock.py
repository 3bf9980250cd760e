"""The clock seam: every time the store records comes from ``durable_celery.clock``, which a test
can replace; the testing kit's ``TestClock`` only moves forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durable_celery import DurableClient, InvalidArgumentError, clock
from durable_celery.models import Timer, TimerKind, Worker
from durable_celery.store.executions import get_execution
from durable_celery.testing import TestClock, WorkflowEnvironment
from tests.kit import workflows as kw


def test_test_clock_moves_forward_only():
    test_clock = TestClock(datetime(2030, 1, 1, tzinfo=UTC))
    assert datetime(2030, 1, 1, tzinfo=UTC) <= test_clock.now() < datetime(2030, 1, 2, tzinfo=UTC)
    test_clock.advance("2 days")
    test_clock.advance(timedelta(hours=1))
    test_clock.advance(30)
    assert timedelta(days=2, hours=1, seconds=30) == test_clock.advanced
    assert test_clock.now() >= datetime(2030, 1, 3, 1, 0, 30, tzinfo=UTC)
    before = test_clock.now()
    assert test_clock.advance_to(datetime(2029, 1, 1, tzinfo=UTC)) >= before  # never back
    test_clock.advance_to(datetime(2031, 6, 1, tzinfo=UTC))
    assert test_clock.now() >= datetime(2031, 6, 1, tzinfo=UTC)
    with pytest.raises(InvalidArgumentError, match="clock advance cannot be negative"):
        test_clock.advance(-1)
    with pytest.raises(InvalidArgumentError, match="malformed clock advance"):
        test_clock.advance("soonish")
    with pytest.raises(InvalidArgumentError, match="timezone-aware"):
        TestClock(datetime(2030, 1, 1))


def test_system_clock_is_the_default():
    assert clock.current_clock() is None
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
    assert clock.now().tzinfo is not None


def test_auto_now_fields_read_the_installed_clock(db_access):
    previous = clock.install_clock(TestClock(datetime(2035, 5, 5, tzinfo=UTC)))
    try:
        worker = Worker.objects.create(name="clock-test", hostname="h", pid=1,
                                       heartbeat_at=clock.now(), stopped_at=clock.now())
        assert worker.started_at.year == 2035  # auto_now_add
    finally:
        assert isinstance(clock.install_clock(previous), TestClock)
    assert clock.current_clock() is previous


def test_time_skipping_leaves_timers_of_other_runs_alone(db_access, uid):
    # a run this environment does not drive (started before it opened, for a queue no worker
    # of the test session consumes), with a timer due in an hour
    foreign = DurableClient().start(kw.kit_sleeper, "1 hour", workflow_id=f"foreign-{uid}",
                                    task_queue=f"nobody-{uid}")
    execution = get_execution("durable", foreign.workflow_id)
    Timer.objects.create(execution=execution, kind=TimerKind.SLEEP,
                         due_at=clock.now() + timedelta(hours=1))
    try:
        with WorkflowEnvironment() as env:
            assert env.execute(kw.kit_sleeper, "1 day", workflow_id=f"own-{uid}")[0] == 86400
            assert env.clock.advanced >= timedelta(hours=23)
            # due on the test clock, yet not fired: it is not this environment's
            assert Timer.objects.filter(execution=execution).count() == 1
    finally:
        foreign.interrupt("end of test")
    assert not Timer.objects.filter(execution=execution).exists()
