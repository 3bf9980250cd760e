"""The embedded worker: workflows, activities, signals and children run in the test's process
through the store functions the Celery tasks use, and the environment cleans up after itself."""

from __future__ import annotations

from datetime import timedelta

import pytest

from durable_celery import DurableClient, DurableMaxedError, RetryPolicy, clock
from durable_celery.models import ActivityAttempt, HistoryEvent, Worker, WorkflowExecution
from durable_celery.store import outbox
from durable_celery.store.executions import get_execution
from durable_celery.testing import TestClock, WorkflowEnvironment
from durable_celery.transport.worker import current_worker_id
from tests.e2e.helpers import history_rows
from tests.kit import workflows as kw
from tests.support.counters import count


def test_order_flow_with_a_signal_from_the_test(durable_env, uid):
    handle = durable_env.start(kw.kit_order, uid, workflow_id=f"order-{uid}")
    assert history_rows(handle) == [(1, "activity", "kit_charge", "completed"),
                                    (2, "sleep", "", "scheduled")]
    # the signal arrives while the workflow sleeps: it is kept for the wait
    assert durable_env.signal(f"approve-{uid}", {"approved": True}) == 0

    result = durable_env.result(handle)

    assert result["receipt"] == f"receipt-{uid}-9.99"
    assert result["decision"] == {"approved": True}
    assert result["slept"] == 30 * 86400.0
    assert count(f"{uid}-charge") == 1  # nothing ran twice
    assert history_rows(handle) == [(1, "activity", "kit_charge", "completed"),
                                    (2, "sleep", "", "completed"),
                                    (3, "wait", f"approve-{uid}", "completed"),
                                    (4, "now", "", "completed")]
    charge = HistoryEvent.objects.get(execution__workflow_id=handle.workflow_id, seq=1)
    assert charge.worker_id is not None and charge.celery_task_id  # run by the embedded worker
    assert Worker.objects.get(pk=charge.worker_id).pid > 0


def test_every_message_delivered_twice_changes_nothing(durable_env, uid):
    """At-least-once delivery through the embedded worker: a duplicate step or attempt is
    absorbed by the history, as with a real broker."""
    deliver_once = durable_env.broker.publish

    def deliver_twice(task_name: str, queue: str, args: list) -> None:
        deliver_once(task_name, queue, args)
        deliver_once(task_name, queue, args)

    outbox.set_publisher(deliver_twice)
    handle = durable_env.start(kw.kit_steps, uid, workflow_id=f"twice-{uid}")
    assert durable_env.result(handle) == [3600.0, f"receipt-{uid}-1.00", 7200.0,
                                          f"receipt-{uid}-2.00"]
    assert count(f"{uid}-charge") == 2  # two activity calls, each run once
    assert [row["attempts"] for row in handle.history() if row["kind"] == "activity"] == [1, 1]
    assert durable_env.delivered["completed"] == 2
    assert durable_env.delivered["skipped"] == 2  # the copy of each attempt ran nothing


def test_signal_sent_to_a_waiting_workflow_wakes_it(durable_env, uid):
    handle = durable_env.start(kw.kit_waiter, f"go-{uid}", "30 days", workflow_id=f"go-{uid}")
    assert history_rows(handle) == [(1, "wait", f"go-{uid}", "scheduled")]
    assert durable_env.signal(f"go-{uid}", [1, 2, 3]) == 1
    assert handle.status() == "completed"  # run before signal() returned
    assert durable_env.result(handle) == [1, 2, 3]


def test_activity_failure_reaches_the_workflow_as_a_typed_error(durable_env, uid):
    handle = durable_env.start(kw.kit_compensating, uid, workflow_id=f"comp-{uid}")
    result = durable_env.result(handle)
    assert result["class"] == "DurableMaxedError"
    assert result["type"] == "KeyError"
    assert "no account" in result["message"]
    assert result["refund"] == f"refund-{uid}"
    assert (count(f"{uid}-broken"), count(f"{uid}-refund")) == (3, 1)
    event = HistoryEvent.objects.get(execution__workflow_id=handle.workflow_id, seq=1)
    assert (event.status, event.attempts) == ("failed", 3)
    delays = list(ActivityAttempt.objects.filter(event=event).order_by("number")
                  .values_list("retry_delay", flat=True))
    assert delays[:2] == [600.0, 1200.0]  # both back-offs skipped, as recorded


def test_child_workflows_run_in_process_and_wait_for_their_own_timers(durable_env, uid):
    handle = durable_env.start(kw.kit_parent, uid, workflow_id=f"parent-{uid}")
    with pytest.raises(TimeoutError) as info:  # the third child waits for its signal ...
        durable_env.result(handle, timeout="5 days")
    assert "child workflow 'kit_waiter'" in str(info.value)
    children = WorkflowExecution.objects.filter(parent_workflow_id=handle.workflow_id)
    assert sorted(children.values_list("workflow_id", "status")) == [
        (f"{uid}-a", "completed"), (f"{uid}-b", "completed"), (f"{uid}-c", "running")]

    durable_env.signal(f"go-{uid}", "went")  # ... which the test sends
    assert durable_env.result(handle) == [f"{uid}-a after 3 days", f"{uid}-b after 1 days",
                                          "went"]
    assert get_execution("durable", f"{uid}-c").status == "completed"


def test_waiting_for_a_signal_nobody_sends_is_a_clear_timeout(durable_env, uid):
    handle = durable_env.start(kw.kit_order, uid, workflow_id=f"stuck-{uid}")
    with pytest.raises(TimeoutError) as info:
        durable_env.result(handle)
    message = str(info.value)
    assert f"workflow 'stuck-{uid}' (running) waits for a signal 'approve-{uid}' (position 3)" \
        in message
    assert "nothing else can happen" in message and "env.signal" in message


def test_get_handle_takes_a_run_id_and_a_namespace_like_the_client(durable_env, uid):
    """``env.get_handle(id, run_id=..., namespace=...)``: the second positional argument is a run
    id, as for ``DurableClient.get_handle``; a namespace is never taken for one."""
    from durable_celery.errors import WorkflowNotFoundError

    first = durable_env.start(kw.kit_sleeper, "1 hour", workflow_id=f"gh-{uid}",
                              namespace=f"ns-{uid}")
    run_id = first.describe()["run_id"]
    by_run = durable_env.get_handle(f"gh-{uid}", run_id, namespace=f"ns-{uid}")
    assert by_run.describe()["run_id"] == run_id
    assert durable_env.get_handle(f"gh-{uid}", namespace=f"ns-{uid}").status() == "running"
    with pytest.raises(WorkflowNotFoundError):
        durable_env.get_handle(f"gh-{uid}").status()  # the environment's own namespace
    assert durable_env.result(by_run)[0] == 3600.0


def test_emitted_events_are_collected(durable_env, uid):
    assert durable_env.execute(kw.kit_announcer, uid, workflow_id=f"emit-{uid}") is True
    assert durable_env.emitted == [(f"orders.{uid}", {"state": "charged"}),
                                   (f"orders.{uid}", {"state": "shipped"})]


@pytest.mark.durable_env(replay_every_step=True)
def test_replay_every_step_replays_the_workflow_from_history(durable_env, uid):
    assert durable_env.execute(kw.kit_counted_body, uid, workflow_id=f"replays-{uid}") >= 4
    assert count(f"{uid}-charge") == 2  # replays return recorded outcomes; nothing ran twice


def test_runs_are_kept_in_memory_by_default(durable_env, uid):
    assert durable_env.execute(kw.kit_counted_body, uid, workflow_id=f"kept-{uid}") == 1


@pytest.mark.django_db
def test_inside_a_test_transaction_that_is_rolled_back(durable_env, uid):
    """pytest-django's default: nothing commits, yet every message is delivered."""
    handle = durable_env.start(kw.kit_order, uid, workflow_id=f"rolled-{uid}")
    durable_env.advance("30 days")
    assert durable_env.signal(f"approve-{uid}", "ok") == 1
    assert durable_env.result(handle)["decision"] == "ok"
    assert count(f"{uid}-charge") == 1


def test_the_environment_puts_publisher_and_clock_back(db_access, uid):
    before = outbox.set_publisher(None)
    outbox.set_publisher(before)
    assert clock.current_clock() is None
    with WorkflowEnvironment() as env:
        assert isinstance(clock.current_clock(), TestClock)
        assert outbox.set_publisher(before) == env.broker.publish
        outbox.set_publisher(env.broker.publish)
        handle = env.start(kw.kit_sleeper, "1 day", workflow_id=f"restore-{uid}")
        embedded = current_worker_id()
        assert Worker.objects.get(pk=embedded).pool == "embedded"
        with pytest.raises(RuntimeError, match="another WorkflowEnvironment is open"):
            WorkflowEnvironment().open()
    assert clock.current_clock() is None
    assert outbox.set_publisher(before) is before
    assert len(env.broker) == 0
    # the embedded worker's own row is stopped, and the process's worker id is its own again
    assert Worker.objects.get(pk=embedded).stopped_at is not None
    assert current_worker_id() != embedded
    with pytest.raises(RuntimeError, match="not open"):
        env.result(handle)
    # with the real publisher back, the run's remaining work waits for a real worker
    assert DurableClient().get_handle(handle.workflow_id).status() == "running"


def test_a_naive_start_time_is_refused():
    from datetime import datetime

    with pytest.raises(ValueError, match="timezone-aware"):
        WorkflowEnvironment(start_time=datetime(2030, 1, 1))


def test_workflow_retries_wait_on_the_test_clock_and_failures_reach_result(durable_env, uid):
    handle = durable_env.start(kw.kit_flaky_flow, uid, 2, workflow_id=f"wfretry-{uid}",
                               retry_policy=RetryPolicy(maximum_attempts=2,
                                                        initial_interval="1 hour",
                                                        maximum_interval="1 day"))
    assert durable_env.result(handle) == 3
    assert count(f"{uid}-flow") == 3
    assert durable_env.clock.advanced >= timedelta(hours=3) - timedelta(seconds=1)

    failing = durable_env.start(kw.kit_flaky_flow, f"{uid}-x", 5, workflow_id=f"wffail-{uid}",
                                retry_policy=RetryPolicy(maximum_attempts=1))
    with pytest.raises(DurableMaxedError, match="flow failure 2 of 5") as info:
        durable_env.result(failing)
    assert info.value.type == "RuntimeError"
    assert failing.status() == "failed"


def test_starting_a_workflow_logs_no_unconsumed_queue_warning(durable_env, uid, caplog):
    """The embedded worker serves every queue: a start through the kit is not taken for a start
    on a queue no worker consumes (outside the kit, the warning stays)."""
    with caplog.at_level("WARNING", logger="durable_celery"):
        handle = durable_env.start(kw.kit_steps, uid, workflow_id=f"quiet-{uid}")
    assert durable_env.result(handle)[1] == f"receipt-{uid}-1.00"
    assert not [r for r in caplog.records if "no live worker consumes" in r.getMessage()]


def test_an_attempt_the_broker_keeps_refusing_fails_its_call_once_the_sweeper_gives_up(
        durable_env, uid):
    """A message the broker refuses while it takes others (a queue name it cannot hold) is
    re-sent GIVE_UP_AFTER times, then given up: its call fails at once instead of waiting
    forever; while the broker does not answer, nothing is given up."""
    from durable_celery.models import OutboxMessage
    from durable_celery.store.sweeper import GIVE_UP_AFTER, republish_outbox

    deliver = durable_env.broker.publish

    def refusing(task_name: str, queue: str, args: list) -> None:
        if queue == "refused-activity":
            raise OSError(36, "File name too long")
        deliver(task_name, queue, args)

    outbox.set_publisher(refusing)
    handle = durable_env.start(kw.kit_refused, uid, workflow_id=f"refused-{uid}")
    stuck = OutboxMessage.objects.filter(queue="refused-activity")
    assert stuck.count() == 1
    later = clock.now() + timedelta(minutes=5)
    for _ in range(GIVE_UP_AFTER + 2):  # the broker does not answer: nothing is given up
        assert republish_outbox(later) == 0
    assert stuck.count() == 1
    for _ in range(GIVE_UP_AFTER - 1):
        republish_outbox(later, broker_reachable=True)
    assert stuck.count() == 1
    republish_outbox(later, broker_reachable=True)
    assert stuck.count() == 0

    result = durable_env.result(handle)
    assert result.startswith("refused: the attempt could not be sent to Celery queue "
                             "'refused-activity'") and "File name too long" in result
    assert count(f"{uid}-charge") == 0
    assert [row["attempts"] for row in handle.history() if row["kind"] == "activity"] == [1]
