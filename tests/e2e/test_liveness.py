"""Liveness and bounded failure: a dead worker's work resumes in seconds, a finished activity
never runs twice, and nothing loops forever.

Kill tests use workers of their own (``start_worker``) on queues of their own, and assert with
counters what ran how often. Recovery bounds are generous (the machine may be busy); the figures
measured on a quiet machine are in bench/README.md (``python bench/faults.py``).
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e import liveness_workflows as lw
from tests.e2e.helpers import capture_publishes, history_rows, wait_until
from tests.support.backends import current_backend
from tests.support.counters import count
from tests.support.redis_server import PrivateRedis, redis_server_problem

RUN_ACTIVITY = "durable_celery.run_activity"

#: A dead worker's work must move again well before any lease (600 s) or visibility timeout.
RECOVERY_BOUND = 60.0


def _row(handle, seq: int) -> dict:
    return next((h for h in handle.history() if h["seq"] == seq), {})


def _attempt_log(handle, seq: int) -> list[tuple[int, str]]:
    from durable_celery.models import ActivityAttempt

    return list(ActivityAttempt.objects.filter(
        event__execution__workflow_id=handle.workflow_id, event__seq=seq)
        .order_by("number").values_list("number", "outcome"))


@pytest.mark.transport
def test_whole_worker_killed_mid_activity_without_timeout_resumes_in_seconds(
        client, uid, start_worker):
    queue = f"kill-{uid}"
    worker = start_worker([queue, f"{queue}-activity"])
    handle = _killed_mid_activity_and_recovered(client, uid, queue, worker, start_worker)
    assert _row(handle, 2)["attempts"] == 2


def _killed_mid_activity_and_recovered(client, uid, queue, worker, start_worker):
    """Start a run whose second call is a 4-second activity on ``queue``, SIGKILL ``worker``
    while it runs, start a new worker: the run completes in seconds, the killed activity ran
    again and every finished one ran once. Returns the run's handle."""
    handle = client.start(lw.lv_around_slow, uid, 4.0, workflow_id=f"{queue}-run",
                          task_queue=queue)
    wait_until(lambda: count(f"{uid}-started") == 1, timeout=30, what="the slow activity")
    worker.kill()
    killed = time.monotonic()
    assert count(f"{uid}-finished") == 0, "the kill came too late to interrupt the activity"
    start_worker([queue, f"{queue}-activity"])
    assert handle.result(timeout=RECOVERY_BOUND) == [1, "slept 4.0", 3]
    assert time.monotonic() - killed < RECOVERY_BOUND
    assert (count(f"{uid}-first"), count(f"{uid}-last")) == (1, 1)  # finished ones: once
    assert (count(f"{uid}-started"), count(f"{uid}-finished")) == (2, 1)
    assert _attempt_log(handle, 2) == [(1, "worker_lost")]
    return handle


def _main_row(worker):
    from durable_celery.models import Worker

    return Worker.objects.filter(pid=worker.process.pid, parent__isnull=True,
                                 name__startswith=f"{worker.name}@").order_by("-pk").first()


@pytest.mark.heavy
def test_a_worker_taken_for_dead_while_paused_lives_again_and_its_later_death_is_recovered(
        client, uid, start_worker):
    """SIGSTOP a worker past the stale limit: a live worker's sweeper takes it for dead. On
    SIGCONT its heartbeat clears the mark (it used to stay "stopped" for good while it worked,
    so that when it really died later nothing it held was ever taken back). Then it is killed
    mid-activity, and its attempt is recovered in seconds like any dead worker's."""
    from django.db.models import Q

    from durable_celery.models import Worker

    queue = f"pause-{uid}"
    worker = start_worker([queue, f"{queue}-activity"])
    warm = client.start(lw.lv_around_slow, f"{uid}-warm", 0.1, workflow_id=f"warm-{uid}",
                        task_queue=queue)
    assert warm.result(timeout=30) == [1, "slept 0.1", 3]  # its pool processes have rows now
    row = wait_until(lambda: _main_row(worker), timeout=30, what="the worker's registry row")
    pool = list(Worker.objects.filter(parent_id=row.pk).values_list("pk", flat=True))
    assert pool
    worker.pause()
    try:
        wait_until(lambda: Worker.objects.get(pk=row.pk).stopped_at is not None, timeout=60,
                   what="the paused worker taken for dead by another worker's sweeper")
    finally:
        worker.resume()

    def alive_again() -> bool:
        rows = Worker.objects.filter(pk__in=[row.pk, *pool])
        return not rows.filter(Q(stopped_at__isnull=False) | Q(recovered_at__isnull=False)) \
            .exists()

    wait_until(alive_again, timeout=30, what="the resumed worker's heartbeat reviving its rows")
    # its log names it as an operator knows it: host and pid
    named = f"pid {worker.process.pid} (registry row {row.pk}) was taken for dead"
    wait_until(lambda: named in worker.log_path.read_text(errors="replace"), timeout=10,
               what="the revival logged with the worker's pid")
    _killed_mid_activity_and_recovered(client, uid, queue, worker, start_worker)


@pytest.mark.transport
@pytest.mark.heavy
def test_worker_killed_during_the_step_after_an_activity_keeps_its_result(
        client, uid, start_worker):
    """The activity returned; the workflow code after it takes long; the worker dies there. The
    result was recorded on its own meanwhile: the activity does not run again."""
    queue = f"kstep-{uid}"
    worker = start_worker([queue, f"{queue}-activity"])
    handle = client.start(lw.lv_slow_step, uid, 5.0, workflow_id=f"kstep-{uid}",
                          task_queue=queue)
    wait_until(lambda: _row(handle, 1).get("status") == "completed", timeout=30,
               what="the first activity's result, recorded while the step still runs")
    assert [h["seq"] for h in handle.history()] == [1], "the step already finished"
    worker.kill()
    start_worker([queue, f"{queue}-activity"])
    assert handle.result(timeout=RECOVERY_BOUND) == [1, 3]
    assert (count(f"{uid}-first"), count(f"{uid}-last")) == (1, 1)


@pytest.mark.heavy
def test_worker_killed_during_a_replay_step_from_history(client, uid, start_worker):
    """A worker that keeps no run in memory replays every step from history; killed during
    such a step, its claim on the run is taken back and another worker steps it."""
    queue = f"kreplay-{uid}"
    no_cache = {"DURABLE_WORKFLOW_CACHE_SIZE": "0"}
    worker = start_worker([queue, f"{queue}-activity"], env=no_cache)
    handle = client.start(lw.lv_slow_step, uid, 4.0, workflow_id=f"kreplay-{uid}",
                          task_queue=queue)
    wait_until(lambda: _row(handle, 1).get("status") == "completed", timeout=30,
               what="the first activity's result")
    worker.kill()
    start_worker([queue, f"{queue}-activity"], env=no_cache)
    assert handle.result(timeout=RECOVERY_BOUND) == [1, 3]
    assert (count(f"{uid}-first"), count(f"{uid}-last")) == (1, 1)


@pytest.mark.heavy
def test_activity_that_kills_its_own_process_fails_after_its_attempts(client, uid,
                                                                      start_worker):
    from durable_celery import DurableMaxedError

    queue = f"suicide-{uid}"
    start_worker([queue, f"{queue}-activity"], concurrency=2)
    handle = client.start(lw.lv_suicide, uid, workflow_id=f"suicide-{uid}", task_queue=queue)
    with pytest.raises(DurableMaxedError) as info:
        handle.result(timeout=2 * RECOVERY_BOUND)  # three deaths, each re-driven
    assert "died while running it" in info.value.message
    assert count(uid) == 3  # 1 + maximum_attempts, then it stops
    assert _row(handle, 1)["attempts"] == 3
    assert [outcome for _, outcome in _attempt_log(handle, 1)] == ["worker_lost"] * 3


@pytest.mark.heavy
def test_workflow_code_that_kills_its_process_fails_the_run_after_the_step_bound(
        client, uid, start_worker):
    """A replay step whose process dies is taken back and counted; past
    DURABLE_MAX_STEP_FAILURES (5) in a row the run fails naming why. It used to be stepped
    again forever."""
    from durable_celery import DurableFatalError

    queue = f"stepdeath-{uid}"
    start_worker([queue, f"{queue}-activity"], concurrency=2)
    handle = client.start(lw.lv_step_suicide, uid, workflow_id=f"stepdeath-{uid}",
                          task_queue=queue)
    with pytest.raises(DurableFatalError) as info:
        handle.result(timeout=2 * RECOVERY_BOUND)
    message = info.value.message
    assert "the worker process taking a replay step died 5 times in a row" in message, message
    assert "WorkerLostError" in message
    # each death is counted once it is taken back; a redelivered copy may rarely run in between
    assert 5 <= count(uid) <= 10
    assert handle.describe()["status"] == "failed"


@pytest.mark.transport
def test_same_message_delivered_twice_with_one_task_id_runs_once(client, uid, start_worker):
    """What Redis does after a dropped connection: the same message, same task id, again,
    while the first copy still runs. The second finds the attempt held and runs nothing."""
    from celery import current_app
    from kombu.utils.uuid import uuid

    from durable_celery.store.steps import run_replay_step
    from durable_celery.transport.worker import current_worker_id

    queue = f"sameid-{uid}"
    handle = client.start(lw.lv_slow_once, uid, 1.5, workflow_id=f"sameid-{uid}",
                          task_queue=queue)
    pk = handle.describe()["run_id"] and _pk(handle)
    with capture_publishes(send=False) as sent:
        run_replay_step(pk, current_worker_id())
    ((task, activity_queue, args),) = sent
    task_id = uuid()
    for _ in range(2):
        message = current_app.amqp.create_task_message(task_id=task_id, name=task,
                                                       args=args, kwargs={})
        with current_app.producer_or_acquire() as producer:
            current_app.amqp.send_task_message(producer, task, message, queue=activity_queue,
                                               serializer="json")
    start_worker([queue, activity_queue], concurrency=2)  # both copies at once
    assert handle.result(timeout=30) == "slept 1.5"
    assert (count(f"{uid}-started"), count(f"{uid}-finished")) == (1, 1)
    assert _row(handle, 1)["attempts"] == 1


def _pk(handle) -> int:
    from durable_celery.models import WorkflowExecution

    return WorkflowExecution.objects.get(workflow_id=handle.workflow_id).pk


@pytest.mark.heavy
@pytest.mark.skipif(redis_server_problem() is not None, reason=str(redis_server_problem()))
def test_broker_restarting_empty_loses_no_queued_work(client, uid, start_worker):
    """Activity messages wait in a Redis that restarts empty (it keeps nothing on disk): the
    workers notice the broker lost its messages and send again what the database says is
    queued — without waiting for a lease or a visibility timeout."""
    if current_backend().name == "rabbitmq":
        pytest.skip("runs in the sqlite and postgres phases")
    broker = PrivateRedis().start()
    env = {"CELERY_BROKER_URL": broker.url}
    queue = f"empty-{uid}"
    keys = [f"{uid}-{i}" for i in range(5)]
    try:
        with capture_publishes(fail=True):  # the steps are asked for through the outbox
            handles = [client.start(lw.lv_one, key, workflow_id=f"empty-{key}",
                                    task_queue=queue) for key in keys]
        stepper = start_worker([queue], env=env)  # steps only: the activities wait in the broker

        def all_queued() -> bool:
            return all(h.history() and h.history()[0]["status"] == "scheduled"
                       for h in handles) and _pending_outbox(handles) == 0

        wait_until(all_queued, timeout=60, what="every activity message waiting in Redis")
        logged_before = len(stepper.log_path.read_bytes())
        broker.restart_empty()
        restarted = time.monotonic()
        runner = start_worker([queue, f"{queue}-activity"], env=env)
        assert [h.result(timeout=RECOVERY_BOUND) for h in handles] == ["done"] * len(keys)
        assert time.monotonic() - restarted < RECOVERY_BOUND
        assert [count(key) for key in keys] == [1] * len(keys)
        # the loss is reported with what was sent again (together, at least these attempts)
        def reported_again() -> int:
            since_restart = (stepper.log_path.read_bytes()[logged_before:]
                             + runner.log_path.read_bytes()).decode(errors="replace")
            return sum(int(n) for n in re.findall(
                r"holds none of the messages it was given .*?; sent (\d+) queued",
                since_restart))

        wait_until(lambda: reported_again() >= len(keys), timeout=30,
                   what="the broker's loss logged with what was sent again")
    finally:
        broker.kill()


@pytest.mark.heavy
def test_a_worker_keeps_its_heartbeat_while_its_broker_is_down(client, uid, start_worker):
    """Recovery duties wait on the broker (the canary, re-publishing) when it is down; the
    heartbeat must not wait with them, or every live worker would be taken for dead (and its
    running work re-driven) during a broker outage."""
    if current_backend().name == "rabbitmq":
        pytest.skip("runs in the sqlite and postgres phases")
    from durable_celery import clock
    from durable_celery.models import Worker
    from durable_celery.store.workers import stale_before

    broker = PrivateRedis().start()
    try:
        worker = start_worker([f"brokerdown-{uid}"], env={"CELERY_BROKER_URL": broker.url})
        row = wait_until(lambda: _main_row(worker), timeout=30, what="the worker's row")
        broker.kill()
        down = time.monotonic()
        stale = []
        while time.monotonic() - down < 15:
            seen = Worker.objects.get(pk=row.pk)
            if seen.stopped_at is not None or seen.heartbeat_at < stale_before(clock.now()):
                stale.append(seen.heartbeat_at)
            time.sleep(0.2)
        assert not stale, f"the heartbeat went stale while the broker was down: {stale[:3]}"
    finally:
        broker.kill()


def _pending_outbox(handles) -> int:
    from durable_celery.models import OutboxMessage

    pks = {_pk(h) for h in handles}

    def run_of(args: list) -> object:
        first = args[0] if args else None
        return first.get("execution") if isinstance(first, dict) else first

    return sum(1 for m in OutboxMessage.objects.all() if run_of(m.args) in pks)


def _terminate_other_connections() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _needs_postgres() -> None:
    if current_backend().name != "postgres":
        pytest.skip("terminates PostgreSQL connections: runs in the postgres phase")


@pytest.mark.parametrize(("flow", "result", "counted"), [
    ("lv_slow_once", "slept 2.0", {"started": 1, "finished": 1}),
    # the failure is recorded on a fresh connection too (it used to raise out of the task,
    # leaving the attempt claimed by a live worker, with no lease: never retried)
    ("lv_slow_failing_once", "attempt 2", {"started": 2, "failed": 1}),
])
def test_database_connections_terminated_mid_activity(client, uid, start_worker, flow, result,
                                                      counted):
    _needs_postgres()
    queue = f"pgkill-{uid}"
    start_worker([queue, f"{queue}-activity"])
    handle = client.start(getattr(lw, flow), uid, 2.0, workflow_id=f"pgkill-{uid}",
                          task_queue=queue)
    wait_until(lambda: count(f"{uid}-started") == 1, timeout=30, what="the slow activity")
    assert _terminate_other_connections() >= 1
    assert handle.result(timeout=RECOVERY_BOUND) == result
    assert {key: count(f"{uid}-{key}") for key in counted} == counted


def test_a_refusal_by_the_database_is_not_taken_for_a_lost_connection(db_access):
    """PostgreSQL reports both "your connection was terminated" and "this index row is too
    large" as OperationalError. Only the first is worth a new connection; retrying the second
    (or re-driving a step that hits it) would loop forever, uncounted."""
    _needs_postgres()
    from django.db import OperationalError, connection

    from durable_celery.store.connection import connection_failed, with_fresh_connection

    tries = []

    def too_wide() -> None:
        tries.append(1)
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE IF NOT EXISTS wide (v text)")
            cursor.execute("CREATE INDEX IF NOT EXISTS wide_v ON wide (v)")
            cursor.execute("INSERT INTO wide SELECT string_agg(md5(g::text), '') "
                           "FROM generate_series(1, 200) g")  # 6400 bytes, incompressible

    with pytest.raises(OperationalError) as refused:
        with_fresh_connection(too_wide)
    assert getattr(refused.value.__cause__, "sqlstate", "").startswith("54")
    assert not connection_failed(refused.value) and tries == [1]  # not retried
    with pytest.raises(OperationalError) as terminated:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert connection_failed(terminated.value)
    connection.close()


def test_database_connections_terminated_mid_step(client, uid, start_worker):
    _needs_postgres()
    queue = f"pgstep-{uid}"
    start_worker([queue, f"{queue}-activity"])
    handle = client.start(lw.lv_slow_step, uid, 2.0, workflow_id=f"pgstep-{uid}",
                          task_queue=queue)
    wait_until(lambda: _row(handle, 1).get("status") == "completed", timeout=30,
               what="the first result, while the step still runs")
    assert _terminate_other_connections() >= 1
    assert handle.result(timeout=RECOVERY_BOUND) == [1, 3]
    assert (count(f"{uid}-first"), count(f"{uid}-last")) == (1, 1)


def test_connections_the_database_dropped_between_tasks_are_replaced_before_use(
        client, uid, start_worker):
    """Workers keep their connection between tasks (CELERY_DB_REUSE_MAX, CONN_MAX_AGE) and do
    not ping it before each task. One the database dropped while the worker was idle fails the
    next task's claim, which retries on a new connection: no task fails on it, no attempt needs
    a second try."""
    from django_celery_results.models import TaskResult

    _needs_postgres()
    queue = f"pgidle-{uid}"
    start_worker([queue, f"{queue}-activity"], env={"DURABLE_EAGER_ACTIVITIES": "false"})
    first = client.start(lw.lv_sequence, 3, workflow_id=f"pgidle1-{uid}", task_queue=queue)
    assert first.result(timeout=30) == 3
    assert _terminate_other_connections() >= 1
    second = client.start(lw.lv_sequence, 3, workflow_id=f"pgidle2-{uid}", task_queue=queue)
    assert second.result(timeout=30) == 3
    assert count(f"seq-pgidle2-{uid}") == 3
    assert [row["attempts"] for row in second.history()] == [1, 1, 1]
    task_ids = [row["celery_task_id"] for row in second.history()]
    assert not TaskResult.objects.filter(task_id__in=task_ids).exclude(status="SUCCESS").exists()


# --- failures that must be recorded, once, with their cause -----------------------------------


def test_exception_whose_str_raises_is_recorded_at_once(client, uid):
    from durable_celery import DurableMaxedError

    handle = client.start(lw.lv_activity, "lv_unprintable", uid, workflow_id=f"unpr-{uid}")
    with pytest.raises(DurableMaxedError) as info:  # no retry allowed: recorded at once
        handle.result(timeout=30)
    assert info.value.message == "Unprintable('hidden')"
    assert info.value.type == "Unprintable"
    assert count(uid) == 1


def test_workflow_raising_an_unprintable_exception_fails_with_a_clear_error(client, uid):
    from durable_celery import DurableMaxedError, RetryPolicy

    handle = client.start(lw.lv_unprintable_workflow, uid, workflow_id=f"unprw-{uid}",
                          retry_policy=RetryPolicy(maximum_attempts=1, initial_interval="100ms"))
    with pytest.raises(DurableMaxedError) as info:
        handle.result(timeout=30)
    assert info.value.type == "Unprintable" and "Unprintable" in info.value.message
    assert handle.describe()["attempt"] == 2


def test_nul_in_a_result_fails_the_call_naming_the_cause(client, uid):
    from durable_celery import NotJSONSerializableError

    handle = client.start(lw.lv_activity, "lv_returns_nul", uid, 3, workflow_id=f"nul-{uid}")
    with pytest.raises(NotJSONSerializableError) as info:
        handle.result(timeout=30)
    assert "NUL" in info.value.message and "lv_returns_nul" in info.value.message
    assert count(uid) == 1  # not retried: the same result would be refused again


def test_nul_in_an_error_message_is_recorded(client, uid):
    from durable_celery import DurableMaxedError

    handle = client.start(lw.lv_activity, "lv_raises_nul", uid, workflow_id=f"nulerr-{uid}")
    with pytest.raises(DurableMaxedError) as info:
        handle.result(timeout=30)
    assert info.value.message == "bad\\x00byte" and info.value.type == "ValueError"


@pytest.mark.parametrize(("names", "runs"), [
    (["InvalidAccountError"], 1), (["ValueError"], 1),
    (["tests.e2e.liveness_workflows.InvalidAccountError"], 1), (["KeyError"], 6)])
def test_non_retryable_error_types(client, uid, names, runs):
    from durable_celery import DurableFatalError, DurableMaxedError

    handle = client.start(lw.lv_non_retryable, uid, names, workflow_id=f"nonretry-{uid}")
    expected = DurableFatalError if runs == 1 else DurableMaxedError
    with pytest.raises(expected) as info:
        handle.result(timeout=30)
    assert info.value.type == "InvalidAccountError"
    assert info.value.message == f"account of {uid} is closed"
    assert count(uid) == runs


def test_bad_values_in_workflow_code_fail_the_run_naming_the_cause(client, uid):
    from durable_celery import InvalidArgumentError

    too_long = client.start(lw.lv_bad_wait, 300, workflow_id=f"longwait-{uid}")
    with pytest.raises(InvalidArgumentError, match="300 characters"):
        too_long.result(timeout=30)
    forever = client.start(lw.lv_huge_sleep, 1e12, workflow_id=f"hugesleep-{uid}")
    with pytest.raises(InvalidArgumentError, match="100 years"):
        forever.result(timeout=30)
    assert too_long.describe()["attempt"] == forever.describe()["attempt"] == 1  # not retried
    # 2000 characters, within the length limit, but 6000 bytes that do not compress: too large
    # for the index (PostgreSQL refused the row at every step, forever, before the byte limit)
    text = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(2000))
    wide = client.start(lw.lv_wide_search, text, workflow_id=f"widesearch-{uid}")
    with pytest.raises(InvalidArgumentError, match="'note' takes 6004 bytes"):
        wide.result(timeout=30)


@pytest.mark.parametrize(("options", "field"), [
    ({"workflow_id": "w" * 300}, "workflow_id is 300 characters"),
    ({"workflow_id": "a\x00b"}, "workflow_id must not contain a NUL"),
    ({"workflow_id": ""}, "workflow_id must not be empty"),  # not taken for "generate one"
    ({"search": {"note": "x" * 10_000}}, "search field 'note' is 10000 characters"),
    ({"search": {"note": "界" * 1000}}, "search field 'note' takes 3004 bytes"),
    ({"task_queue": "q" * 256}, "task_queue is 256 characters"),
    ({"namespace": "n" * 101}, "namespace is 101 characters"),
])
def test_bad_values_at_start_are_refused_naming_field_and_limit(client, uid, options, field):
    from durable_celery import InvalidArgumentError
    from durable_celery.models import WorkflowExecution

    before = WorkflowExecution.objects.count()
    with pytest.raises(InvalidArgumentError) as info:
        client.start(lw.lv_one, uid, **options)
    assert field in info.value.message
    assert WorkflowExecution.objects.count() == before


def test_publishing_never_waits_on_the_result_backend(client, uid, monkeypatch):
    """``send_task`` would subscribe to a Redis result channel (and block 19 s while that
    backend is down); the outbox publishes without touching the result backend at all."""
    from celery import current_app

    class DownBackend:
        def on_task_call(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("publishing touched the result backend")

    app = current_app._get_current_object()
    monkeypatch.setattr(type(app), "backend", property(lambda self: DownBackend()))
    handle = client.start(lw.lv_one, uid, workflow_id=f"nobackend-{uid}")
    assert client.signal(f"nobody-{uid}", 1) == 0
    monkeypatch.undo()
    assert handle.result(timeout=30) == "done"
    assert history_rows(handle) == [(1, "activity", "lv_counted", "completed")]


def test_a_dead_process_step_claim_is_taken_back_once_and_again_if_it_beat_again(client, uid):
    """A step claimed by a process that died is requested again; the sweeper then marks the
    process recovered, so later passes do not look through the runs for its claims (the
    claim has no index: that would make every step's update write every index). A process
    that beats again loses the mark, and its next death is handled like the first."""
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from durable_celery.models import Worker, WorkflowExecution
    from durable_celery.store.steps import claim_step
    from durable_celery.store.sweeper import recover_dead_workers
    from durable_celery.store.workers import beat, unrecovered_dead_ids

    handle = client.start(lw.lv_sequence, 1, workflow_id=f"deadclaim-{uid}",
                          task_queue=f"idle-{uid}")
    run = WorkflowExecution.objects.get(workflow_id=handle.workflow_id)
    main = Worker.objects.create(name=f"main-{uid}@test", hostname="test", pid=1,
                                 heartbeat_at=timezone.now())
    dead = Worker.objects.create(name=f"main-{uid}@test", hostname="test", pid=2, parent=main,
                                 heartbeat_at=timezone.now())  # a pool process

    def claimed_by_dead_process() -> None:
        assert claim_step(run.pk, dead.pk) is not None
        Worker.objects.filter(pk=dead.pk).update(
            heartbeat_at=timezone.now() - timedelta(seconds=120))

    def taken_back() -> bool:
        with capture_publishes():
            recover_dead_workers()
        run.refresh_from_db()
        return run.step_claimed_by_id is None and run.step_requested

    claimed_by_dead_process()
    Worker.objects.filter(pk=main.pk).update(stopped_at=timezone.now())  # not beating for it
    wait_until(taken_back, what="the dead process's claim released")
    assert dead.pk not in unrecovered_dead_ids()

    def a_pass_reads_no_run() -> bool:
        # Other tests' stand-in processes go stale now and then: each is looked for once.
        with CaptureQueriesContext(connection) as queries, capture_publishes():
            recover_dead_workers()
        return not any("workflowexecution" in q["sql"] for q in queries)

    wait_until(a_pass_reads_no_run, what="a sweeper pass that reads no run")

    beat(main.pk, [dead.pid], timezone.now())  # it was alive after all
    assert Worker.objects.get(pk=dead.pk).recovered_at is None
    claimed_by_dead_process()
    wait_until(taken_back, what="the second claim released")
    assert Worker.objects.get(pk=dead.pk).recovered_at is not None


def test_forgetting_old_workers_looks_at_no_run_but_the_active_ones(client, uid):
    """A worker row dead for over a day that holds nothing is deleted without a statement over
    every run: the step claim has no index, so it has no foreign-key constraint either (each
    deleted worker would make PostgreSQL look through every run) and Django sets nothing to
    NULL (a finished run holds no claim)."""
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from durable_celery.models import Worker, WorkflowExecution
    from durable_celery.store.workers import prune_workers

    long_ago = timezone.now() - timedelta(days=3)

    def forgotten_by_this_pass() -> list[str] | None:
        # A live worker's sweeper may forget the row first: then try again with a new one.
        old = Worker.objects.create(name=f"old-{uid}@test", hostname="test", pid=1,
                                    heartbeat_at=long_ago, stopped_at=long_ago)
        with CaptureQueriesContext(connection) as queries:
            pruned = prune_workers()
        assert not Worker.objects.filter(pk=old.pk).exists()
        return [q["sql"] for q in queries] if pruned else None

    statements = wait_until(forgotten_by_this_pass, what="an old worker forgotten by this pass")
    runs = [sql for sql in statements if WorkflowExecution._meta.db_table in sql]
    assert len(runs) == 1 and "IN ('pending', 'running')" in runs[0].replace('"', "'"), runs
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                           "AND conrelid = %s::regclass AND confrelid = %s::regclass",
                           [WorkflowExecution._meta.db_table, Worker._meta.db_table])
            assert cursor.fetchone() == (0,)


def test_a_message_the_broker_refuses_holds_up_nothing_and_its_call_fails(client, uid):
    """An activity queue the filesystem broker cannot hold (its file name is too long, though
    the database holds the name): the message neither blocks the other re-sends nor is sent
    again forever — the sweeper gives it up and the call fails, naming the queue."""
    if current_backend().name != "sqlite":
        pytest.skip("the filesystem broker of the sqlite phase refuses long queue names")
    refused_queue = "q" * 230  # 255 bytes at most in a file name: '<time>_<uuid>.<queue>.msg'
    refused = client.start(lw.lv_to_queue, f"{uid}-refused", refused_queue,
                           workflow_id=f"refused-{uid}")
    fine = [client.start(lw.lv_one, f"{uid}-{i}", workflow_id=f"fine-{uid}-{i}")
            for i in range(3)]
    assert [h.result(timeout=30) for h in fine] == ["done"] * 3  # not held up
    result = refused.result(timeout=60)
    assert result.startswith(f"refused: the attempt could not be sent to Celery queue "
                             f"'{refused_queue}-activity'"), result
    assert count(f"{uid}-refused") == 0
    from durable_celery.models import OutboxMessage

    assert not OutboxMessage.objects.filter(queue=f"{refused_queue}-activity").exists()
