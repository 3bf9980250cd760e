"""Fan-in: the results of a wide ``workflow.all`` are recorded without a step each, and the run
steps once when the group is complete — never later, and never losing a result to a crash."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.e2e import workflows as wf
from tests.e2e.helpers import capture_publishes, wait_until
from tests.e2e.test_liveness import RECOVERY_BOUND
from tests.support.counters import count

REPLAY_STEP = "durable_celery.replay_step"

#: The suite's other workflow modules register an activity interceptor, and an intercepted call
#: is awaited by the interceptor's code, which may act on each result: it is never held back.
WITHOUT_INTERCEPTORS = {"DURABLE_IMPORTS": "tests.e2e.workflows"}


@pytest.fixture(autouse=True)
def _no_activity_interceptors(monkeypatch):
    """Steps this process takes run without the activity interceptor other test modules
    register (see ``WITHOUT_INTERCEPTORS``)."""
    from durable_celery import interceptors

    monkeypatch.setattr(interceptors, "_activity", [])


def _execution(handle):
    from durable_celery.models import WorkflowExecution

    return WorkflowExecution.objects.get(workflow_id=handle.workflow_id)


def _stand_ins(n: int) -> list[int]:
    from durable_celery.models import Worker

    return [Worker.objects.create(name=f"fan{i}@test", hostname="test", pid=10_000 + i,
                                  heartbeat_at=timezone.now()).pk for i in range(n)]


def _first_step(client, uid: str, names: list[str]):
    """Start ``parallel_fetch`` on a queue no worker consumes and take its first step here:
    returns the handle and the activity messages it sent."""
    from durable_celery.store.steps import run_replay_step

    handle = client.start(wf.parallel_fetch, names, workflow_id=f"fan-{uid}",
                          task_queue=f"idle-{uid}")
    with capture_publishes(send=False) as sent:
        run_replay_step(_execution(handle).pk, _stand_ins(1)[0])
    messages = [args[0] for _, _, args in sent]
    assert len(messages) == len(names)
    return handle, messages


def _steps_requested_for(pk: int, sent) -> int:
    return sum(1 for task, _, args in sent if task == REPLAY_STEP and args == [pk])


def test_results_of_a_wide_all_are_held_back_until_the_group_is_complete(client, uid):
    """Every result but the last is recorded on its own — one statement on PostgreSQL, no step,
    no step requested, nothing for the sweeper to re-drive — whether the recording process holds
    the run in memory or not. The last one steps the run once, which delivers them all."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from durable_celery.models import HistoryEvent
    from durable_celery.store.sequential import record_activity_outcome
    from durable_celery.store.steps import has_news, run_cache
    from durable_celery.store.sweeper import request_missed_steps

    names = [f"n{i}" for i in range(8)]
    handle, messages = _first_step(client, uid, names)
    pk = _execution(handle).pk
    workers = _stand_ins(len(messages))
    with capture_publishes(send=False) as sent:
        for i, message in enumerate(messages[:-1]):
            if i % 2:  # every other result is recorded by a process without the run in memory
                entry = run_cache().take(pk)
                if entry is not None:
                    entry.close()
            with CaptureQueriesContext(connection) as queries:
                record_activity_outcome(message, holder=None, stepper=workers[i],
                                        result=f"Hello, {message['args'][0]}!")
            if connection.vendor == "postgresql":
                assert len(queries) == 1, [q["sql"] for q in queries]
            execution = _execution(handle)
            assert execution.step_count == 1, f"result {i} stepped the run"
            assert (execution.outcomes_settled, execution.wake_at) == (i + 1, len(names))
            assert not has_news(pk)
        assert not HistoryEvent.objects.news().filter(execution_id=pk).exists()
        assert HistoryEvent.objects.unobserved().filter(execution_id=pk).count() == 7
        request_missed_steps(everything=True)
        assert _steps_requested_for(pk, sent) == 0
        record_activity_outcome(messages[-1], holder=None, stepper=workers[-1],
                                result=f"Hello, {messages[-1]['args'][0]}!")
    assert handle.result(timeout=5) == [f"Hello, {n}!" for n in names]
    assert _execution(handle).step_count == 2
    assert set(HistoryEvent.objects.filter(execution_id=pk).values_list(
        "observed_step", flat=True)) == {2}
    assert _steps_requested_for(pk, sent) == 0  # (the sweeper may re-drive other tests' runs)


def test_a_lost_wake_is_stepped_by_the_sweeper(client, uid):
    """The result that completes the group asks for a step, and that request is lost: the run
    now has news (the held-back results count up to its ``wake_at``), so the sweeper asks
    again and the step delivers every result."""
    from durable_celery.store.sequential import record_activity_outcome
    from durable_celery.store.steps import has_news, run_replay_step
    from durable_celery.store.sweeper import request_missed_steps

    names = [f"m{i}" for i in range(5)]
    handle, messages = _first_step(client, uid, names)
    pk = _execution(handle).pk
    workers = _stand_ins(1)
    for message in messages[:-1]:
        record_activity_outcome(message, holder=None, stepper=workers[0], result="held")
    with capture_publishes(send=False) as lost:  # completed from elsewhere: a step is asked for
        record_activity_outcome(messages[-1], holder=None, stepper=None, result="last")
    assert _steps_requested_for(pk, lost) == 1
    assert _execution(handle).step_count == 1 and has_news(pk)
    with capture_publishes(send=False) as sent:
        assert request_missed_steps(everything=True) >= 1
    assert _steps_requested_for(pk, sent) == 1
    run_replay_step(pk, workers[0])
    assert handle.result(timeout=5) == ["held"] * 4 + ["last"]


def test_a_failed_member_steps_the_run_at_once(client, uid):
    """A failure is never held back: the group fails as soon as one member does."""
    from durable_celery.store.sequential import record_activity_outcome

    handle, messages = _first_step(client, uid, ["a", "b", "c", "d"])
    workers = _stand_ins(1)
    record_activity_outcome(messages[0], holder=None, stepper=workers[0], result="ok")
    record_activity_outcome(messages[1], holder=None, stepper=workers[0], error={
        "class": "DurableFatalError", "type": "Boom", "message": "member failed", "code": 598})
    with pytest.raises(Exception, match="member failed"):
        handle.result(timeout=5)
    assert _execution(handle).step_count == 2


@pytest.mark.transport
def test_a_worker_killed_during_a_wide_all_loses_no_result_and_repeats_none(
        client, uid, start_worker):
    """Two results are held back in the database when the worker dies with two more activities
    running. A new worker runs the interrupted ones again; those that finished do not run
    again, and the group completes."""
    queue = f"fankill-{uid}"
    queues = [queue, f"{queue}-activity"]
    worker = start_worker(queues, concurrency=2, env=WITHOUT_INTERCEPTORS)
    handle = client.start(wf.wide_slow, uid, 4, 1.5, workflow_id=f"fankill-{uid}",
                          task_queue=queue)

    def finished() -> list[int]:
        return [i for i in range(4) if count(f"{uid}-{i}-finished")]

    def held_back() -> int:
        return sum(1 for h in handle.history() if h["status"] == "completed")

    wait_until(lambda: held_back() == 2 and sum(count(f"{uid}-{i}-started")
                                                for i in range(4)) == 4,
               timeout=30, what="two results recorded and the other two activities running")
    worker.kill()
    done_before = finished()  # read after the kill: nothing can finish any more
    assert 2 <= len(done_before) < 4, "the kill came too late to interrupt an activity"
    assert _execution(handle).step_count == 1
    start_worker(queues, env=WITHOUT_INTERCEPTORS)
    assert handle.result(timeout=RECOVERY_BOUND) == ["slept 1.5"] * 4
    for i in range(4):
        assert count(f"{uid}-{i}-finished") == 1, f"activity {i} finished more than once"
        assert count(f"{uid}-{i}-started") == (1 if i in done_before else 2)
