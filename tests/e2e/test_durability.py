"""Durability: killed workers, duplicate deliveries, concurrent steps, lost messages."""

from __future__ import annotations

import threading

import pytest
from django.utils import timezone

from tests.e2e import workflows as wf
from tests.e2e.helpers import capture_publishes, history_rows, wait_until
from tests.support.counters import count

RUN_ACTIVITY = "durable_celery.run_activity"
REPLAY_STEP = "durable_celery.replay_step"


def _execution(workflow_id: str):
    from durable_celery.models import WorkflowExecution

    return WorkflowExecution.objects.get(namespace="durable", workflow_id=workflow_id)


def _outbox_rows_of(execution_pk: int) -> int:
    from durable_celery.models import OutboxMessage

    return sum(1 for m in OutboxMessage.objects.all()
               if m.args == [execution_pk] or (m.args and isinstance(m.args[0], dict)
                                               and m.args[0].get("execution") == execution_pk))


@pytest.mark.transport
def test_worker_killed_during_activity(client, uid, start_worker):
    queue = f"crash-{uid}"
    worker = start_worker([queue, f"{queue}-activity"])
    handle = client.start(wf.crash_survivor_fast, uid, 1.5, workflow_id=f"crash-{uid}",
                          task_queue=queue)
    wait_until(lambda: count(f"{uid}-started") == 1, timeout=30, what="the slow activity")
    worker.kill()
    assert count(f"{uid}-finished") == 0, "the kill came too late to interrupt the activity"
    start_worker([queue, f"{queue}-activity"])
    assert handle.result(timeout=45) == [1, "slept 1.5", 3]
    assert count(f"{uid}-first") == 1
    assert count(f"{uid}-started") >= 2
    assert count(f"{uid}-finished") >= 1
    assert count(f"{uid}-last") == 1
    assert history_rows(handle) == [(1, "activity", "counted", "completed"),
                                    (2, "activity", "slow", "completed"),
                                    (3, "activity", "counted", "completed")]
    attempts = [h["attempts"] for h in handle.history()]
    assert attempts[0] == 1 and attempts[2] == 1


def test_duplicate_activity_result_changes_nothing(client, uid):
    from durable_celery.store.sequential import record_activity_outcome
    from durable_celery.store.steps import run_replay_step
    from durable_celery.transport.activities import run_delivered_attempt
    from durable_celery.transport.worker import current_worker_id

    queue = f"idle-{uid}"  # no worker consumes it: this test drives every step itself
    handle = client.start(wf.sequence, 2, workflow_id=f"dup-{uid}", task_queue=queue)
    pk = _execution(handle.workflow_id).pk
    me = current_worker_id()
    with capture_publishes(send=False) as sent:
        assert run_replay_step(pk, me) == []  # this process consumes no queue: nothing eager
        assert [(t, q) for t, q, _ in sent] == [(RUN_ACTIVITY, f"{queue}-activity")]
        first = sent[0][2][0]
        assert run_delivered_attempt(first, "delivery-1")["outcome"] == "completed"
        assert [t for t, _, _ in sent] == [RUN_ACTIVITY, RUN_ACTIVITY]
        history_after_first = handle.history()
        # the same outcome recorded again, and the same message delivered again: nothing changes
        assert record_activity_outcome(first, holder=None, stepper=me, result=None) == []
        assert run_delivered_attempt(first, "delivery-2")["outcome"] == "skipped"
        assert run_replay_step(pk, me) == []
        assert [t for t, _, _ in sent] == [RUN_ACTIVITY, RUN_ACTIVITY]
        assert handle.history() == history_after_first
        assert history_rows(handle) == [(1, "activity", "noop", "completed"),
                                        (2, "activity", "noop", "scheduled")]
        assert handle.history()[0]["celery_task_id"] == "delivery-1"
        second = sent[1][2][0]
        assert second["event"] != first["event"]
        assert run_delivered_attempt(second, "delivery-4")["outcome"] == "completed"
        assert run_delivered_attempt(second, "delivery-5")["outcome"] == "skipped"
    assert handle.result(timeout=10) == 2
    assert [t for t, _, _ in sent] == [RUN_ACTIVITY, RUN_ACTIVITY]
    assert history_rows(handle) == [(1, "activity", "noop", "completed"),
                                    (2, "activity", "noop", "completed")]
    assert _outbox_rows_of(pk) == 0


def test_duplicate_activity_message_via_transport(client, uid, start_worker):
    from durable_celery.store.steps import run_replay_step
    from durable_celery.transport.publish import publish
    from durable_celery.transport.worker import current_worker_id

    queue = f"dupt-{uid}"
    handle = client.start(wf.crash_survivor_fast, uid, 0.1, workflow_id=f"dupt-{uid}",
                          task_queue=queue)
    pk = _execution(handle.workflow_id).pk
    with capture_publishes(send=False) as sent:
        run_replay_step(pk, current_worker_id())
    ((task, activity_queue, args),) = sent
    publish(task, activity_queue, args)
    publish(task, activity_queue, args)  # the same attempt delivered twice
    start_worker([queue, f"{queue}-activity"], concurrency=2)  # the copies run side by side
    assert handle.result(timeout=30) == [1, "slept 0.1", 3]
    assert count(f"{uid}-first") == 1
    assert count(f"{uid}-started") == 1
    assert count(f"{uid}-last") == 1
    assert [h["attempts"] for h in handle.history()] == [1, 1, 1]


def test_concurrent_replay_steps_of_one_execution(client, uid):
    """Four processes' worth of steps at once: one claims the step, the others leave it."""
    from django.db import connection

    from durable_celery.models import Worker
    from durable_celery.store.steps import run_replay_step

    queue = f"idle-{uid}"
    names = [f"c{i}" for i in range(5)]
    handle = client.start(wf.parallel_fetch, names, workflow_id=f"conc-{uid}", task_queue=queue)
    pk = _execution(handle.workflow_id).pk
    stand_ins = [Worker.objects.create(name=f"t{i}@test", hostname="test", pid=i + 1,
                                       heartbeat_at=timezone.now()).pk for i in range(4)]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def step(worker_id: int) -> None:
        try:
            barrier.wait()
            run_replay_step(pk, worker_id)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    with capture_publishes(send=False) as sent:
        threads = [threading.Thread(target=step, args=(w,)) for w in stand_ins]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert sorted((t, q) for t, q, _ in sent) == [(RUN_ACTIVITY, f"{queue}-activity")] * 5
    assert sorted(args[0]["event"] for _, _, args in sent) == sorted(
        {args[0]["event"] for _, _, args in sent})
    assert history_rows(handle) == [(i + 1, "activity", "greet", "scheduled") for i in range(5)]
    assert _execution(handle.workflow_id).step_count == 1
    assert _execution(handle.workflow_id).step_claimed_by_id is None
    assert _outbox_rows_of(pk) == 0


def test_concurrent_activity_results_then_steps(client, uid):
    """Results recorded concurrently by several processes: every call resolves once, and the
    results coalesce into few steps (a result that finds the run being stepped leaves it to
    that step, which looks for news after it)."""
    from django.db import connection

    from durable_celery.models import Worker
    from durable_celery.store.sequential import record_activity_outcome
    from durable_celery.store.steps import run_replay_step

    queue = f"idle-{uid}"
    names = [f"r{i}" for i in range(6)]
    handle = client.start(wf.parallel_fetch, names, workflow_id=f"conc2-{uid}", task_queue=queue)
    pk = _execution(handle.workflow_id).pk
    stand_ins = [Worker.objects.create(name=f"t{i}@test", hostname="test", pid=i + 1,
                                       heartbeat_at=timezone.now()).pk for i in range(6)]
    with capture_publishes(send=False) as sent:
        run_replay_step(pk, stand_ins[0])
        messages = [args[0] for _, _, args in sent]
        assert len(messages) == 6
        barrier = threading.Barrier(len(messages))
        errors: list[BaseException] = []

        def deliver(message: dict, worker_id: int) -> None:
            try:
                barrier.wait()
                record_activity_outcome(message, holder=None, stepper=worker_id,
                                        result=f"Hello, {message['args'][0]}!")
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=deliver, args=(m, w))
                   for m, w in zip(messages, stand_ins, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
    assert handle.result(timeout=5) == [f"Hello, {n}!" for n in names]
    assert [t for t, _, _ in sent] == [RUN_ACTIVITY] * 6  # no step had to be asked for
    assert history_rows(handle) == [(i + 1, "activity", "greet", "completed") for i in range(6)]
    assert _execution(handle.workflow_id).step_count <= 7


def test_lost_outbox_message_is_resent_by_sweeper(client, uid, start_worker):
    """A step's activity message the broker did not take stays in the outbox; a worker's
    sweeper sends it again."""
    from durable_celery.models import OutboxMessage
    from durable_celery.store.steps import run_replay_step
    from durable_celery.transport.worker import current_worker_id

    queue = f"lost-{uid}"  # nobody consumes it until the worker below starts
    with capture_publishes(send=False):
        handle = client.start(wf.hello, "lost", workflow_id=f"lost-{uid}", task_queue=queue)
    pk = _execution(handle.workflow_id).pk
    with capture_publishes(fail=True):
        run_replay_step(pk, current_worker_id())
    (lost,) = [m for m in OutboxMessage.objects.filter(task_name=RUN_ACTIVITY)
               if m.args[0].get("execution") == pk]
    start_worker([queue, f"{queue}-activity"])
    assert handle.result(timeout=30) == "Hello, lost!"
    assert not OutboxMessage.objects.filter(pk=lost.pk).exists()
    assert history_rows(handle) == [(1, "activity", "greet", "completed")]


def test_start_whose_step_request_the_broker_refused_is_asked_for_again(client, uid):
    """A start stores the run with its step requested and sends the request without an outbox
    row: when the broker refuses it, the sweeper asks again."""
    from durable_celery.models import OutboxMessage

    with capture_publishes(fail=True):
        handle = client.start(wf.hello, "refused", workflow_id=f"refused-{uid}")
    pk = _execution(handle.workflow_id).pk
    assert _execution(handle.workflow_id).step_requested
    assert not OutboxMessage.objects.filter(task_name=REPLAY_STEP, args=[pk]).exists()
    assert handle.status() == "pending"
    assert handle.result(timeout=30) == "Hello, refused!"
    assert history_rows(handle) == [(1, "activity", "greet", "completed")]


def test_step_message_lost_after_publication_is_requested_again(client, uid):
    from durable_celery.models import OutboxMessage

    with capture_publishes(send=False) as sent:  # "published", then lost by the broker
        handle = client.start(wf.hello, "vanished", workflow_id=f"vanished-{uid}")
    pk = _execution(handle.workflow_id).pk
    assert sent == [(REPLAY_STEP, "durable", [pk])]
    assert not OutboxMessage.objects.filter(task_name=REPLAY_STEP, args=[pk]).exists()
    assert handle.status() == "pending"
    assert handle.result(timeout=30) == "Hello, vanished!"
    assert history_rows(handle) == [(1, "activity", "greet", "completed")]


def test_start_to_close_timeout_counts_from_start_not_from_scheduling(client, uid, start_worker):
    """Activities queued behind others (one busy worker) are not presumed lost while queued."""
    queue = f"backlog-{uid}"
    start_worker([queue, f"{queue}-activity"], concurrency=1)
    n = 8
    handle = client.start(wf.backlog, uid, n, 0.4, "1s", workflow_id=f"backlog-{uid}",
                          task_queue=queue)
    assert handle.result(timeout=45) == ["slept 0.4"] * n
    assert [count(f"{uid}-{i}-started") for i in range(n)] == [1] * n
    assert [h["attempts"] for h in handle.history()] == [1] * n


def test_acknowledgements_a_task_leaves_go_with_the_next_claim_or_after_a_second(client, uid):
    """A worker task that published leaves the outbox rows of its messages to the next claim
    of its process (PostgreSQL: deleted in the claim's own statement), and when no claim comes,
    a thread deletes them after ``ACK_IDLE_FLUSH`` seconds. SQLite deletes them at once."""
    from django.db import connection

    from durable_celery.models import OutboxMessage
    from durable_celery.store import outbox
    from durable_celery.store.steps import run_replay_step
    from durable_celery.transport.worker import current_worker_id

    def rows() -> set[int]:
        return {m.pk for m in OutboxMessage.objects.filter(task_name=RUN_ACTIVITY)
                if m.args[0].get("workflow_id", "").endswith(uid)}

    handles = [client.start(wf.hello, f"a{i}", workflow_id=f"ack{i}-{uid}",
                            task_queue=f"idle-{uid}") for i in range(2)]
    for handle in handles:
        outbox.defer_acknowledgements(True)  # as a worker task does
        try:
            with capture_publishes(send=False):
                run_replay_step(_execution(handle.workflow_id).pk, current_worker_id())
        finally:
            outbox.defer_acknowledgements(False)
        assert len(rows()) == 1, "the published message's row is held until later work"
        outbox.park_acknowledgements()
        if connection.vendor != "postgresql":
            assert rows() == set()
            continue
        if handle is handles[0]:
            assert len(rows()) == 1
            taken = outbox.take_acknowledgements()  # what the next claim deletes
            assert rows() <= set(taken)
            OutboxMessage.objects.acknowledge(taken)
        else:
            wait_until(lambda: not rows(), timeout=10, what="the idle flush")
    assert rows() == set()
