"""The step path: a constant number of statements per step, eager and local activities,
heartbeats and timeouts, completion from elsewhere — on real workers."""

from __future__ import annotations

import pytest

from tests.e2e import liveness_workflows as lw
from tests.e2e.helpers import capture_publishes, history_rows, wait_until
from tests.support.counters import count, get

RUN_ACTIVITY = "durable_celery.run_activity"


def _pk(handle) -> int:
    from durable_celery.models import WorkflowExecution

    return WorkflowExecution.objects.get(workflow_id=handle.workflow_id).pk


def test_a_sequential_step_costs_the_same_statements_at_history_10_and_500(client, uid):
    """This process drives the workflow itself (its queue has no worker): each delivered
    attempt is claimed, run, and recorded together with the next step. The statements of one
    such step do not depend on how long the history is — neither with the run in memory nor
    when it must be replayed from history (one query reads the whole history)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from durable_celery.store.steps import run_cache, run_replay_step
    from durable_celery.transport.activities import run_delivered_attempt
    from durable_celery.transport.worker import current_worker_id

    n = 505
    handle = client.start(lw.lv_sequence, n, workflow_id=f"stmts-{uid}", task_queue=f"i-{uid}")
    in_memory: dict[int, int] = {}
    from_history: dict[int, int] = {}
    with capture_publishes(send=False) as sent:
        run_replay_step(_pk(handle), current_worker_id())
        for position in range(1, n + 1):
            message = sent[-1][2][0]
            assert sent[-1][0] == RUN_ACTIVITY and message["seq"] == position
            measured = in_memory if position in (10, 500) else None
            if position in (11, 501):
                run_cache().clear()  # this step must replay the history from the top
                measured = from_history
            with CaptureQueriesContext(connection) as queries:
                assert run_delivered_attempt(message, f"d{position}")["outcome"] == "completed"
            if measured is not None:
                measured[position] = len(queries.captured_queries)
    assert handle.result(timeout=10) == n
    assert in_memory[10] == in_memory[500], in_memory
    assert from_history[11] == from_history[501], from_history
    assert len(handle.history()) == n


def test_catching_up_on_a_missed_step_costs_the_same_statements_at_history_10_and_500(
        client, uid):
    """As above, but each attempt is recorded by the other of two "processes" (two run caches,
    as two pool processes have): every step finds its run one step behind and catches up.
    Its statements do not depend on the history's length, and the code runs from the top once
    per process."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from durable_celery.engine.cache import RunCache
    from durable_celery.store import steps
    from durable_celery.transport.activities import run_delivered_attempt
    from durable_celery.transport.worker import current_worker_id

    n = 505
    handle = client.start(lw.lv_sequence_counting_replays, n, workflow_id=f"behind-{uid}",
                          task_queue=f"i-{uid}")
    caches = [RunCache(10), RunCache(10)]
    measured: dict[int, int] = {}
    try:
        with capture_publishes(send=False) as sent:
            steps._cache = caches[0]
            steps.run_replay_step(_pk(handle), current_worker_id())
            for position in range(1, n + 1):
                steps._cache = caches[position % 2]
                message = sent[-1][2][0]
                assert message["seq"] == position
                connection.queries_log.clear()  # a full log (9,000 entries) captures nothing
                with CaptureQueriesContext(connection) as queries:
                    assert run_delivered_attempt(message, f"d{position}")["outcome"] == \
                        "completed"
                if position in (10, 500):
                    measured[position] = len(queries.captured_queries)
    finally:
        steps._cache = None
        for cache in caches:
            cache.clear()
    assert handle.result(timeout=10) == sum(range(n))
    assert measured[10] == measured[500], measured
    assert count(f"top-behind-{uid}") == 2
    assert count(f"seq-behind-{uid}") == n


def test_a_run_in_memory_catches_up_on_steps_another_process_took(client, uid, start_worker):
    """Eager execution off, two pool processes: each activity goes through the broker to
    either process, so the process finishing one often did not take the run's last step. Its
    run in memory catches up on the steps it missed instead of replaying from the top — the
    workflow's code runs from the top about once per process, not once per switch."""
    queue = f"catch-{uid}"
    start_worker([queue, f"{queue}-activity"], concurrency=2,
                 env={"DURABLE_EAGER_ACTIVITIES": "false"})
    n = 30
    handle = client.start(lw.lv_sequence_counting_replays, n, workflow_id=f"catch-{uid}",
                          task_queue=queue)
    assert handle.result(timeout=60) == sum(range(n))
    assert count(f"seq-catch-{uid}") == n  # every activity ran once
    # Once per process; one more if a sweeper's step ever raced an activity's (a replay from
    # the top is what it falls back to). A process switch that replayed from the top would
    # make this about n/2.
    assert count(f"top-catch-{uid}") <= 3


def test_eager_execution_does_not_starve_a_second_workflow(client, uid, start_worker):
    """One process, a 300-step workflow running its activities eagerly, and a second workflow
    started after it: the eager budget hands the next activity to the broker, so the second
    finishes while the first is still running."""
    queue = f"starve-{uid}"
    start_worker([queue, f"{queue}-activity"], concurrency=1)
    first = client.start(lw.lv_sequence, 300, workflow_id=f"long-{uid}", task_queue=queue)
    second = client.start(lw.lv_one, uid, workflow_id=f"short-{uid}", task_queue=queue)
    wait_until(lambda: second.status() == "completed", timeout=60, what="the second workflow")
    assert first.status() == "running"
    assert first.result(timeout=60) == 300
    assert count(uid) == 1 and count(f"seq-long-{uid}") == 300


def test_no_eager_run_for_a_queue_the_stepping_worker_does_not_consume(client, uid,
                                                                       start_worker):
    from durable_celery.models import HistoryEvent, Worker

    queue = f"split-{uid}"
    steps = start_worker([queue])
    activities = start_worker([f"{queue}-activity"])
    handle = client.start(lw.lv_where_flow, uid, workflow_id=f"split-{uid}", task_queue=queue)
    where = handle.result(timeout=30)
    assert where["routing_key"] == f"{queue}-activity"
    row = HistoryEvent.objects.get(execution__workflow_id=handle.workflow_id, seq=1)
    assert Worker.objects.get(pk=row.worker_id).name.startswith(activities.name)
    assert steps.name != activities.name


def test_local_activities_run_in_the_stepping_worker_and_retry_there(client, uid,
                                                                    start_worker):
    queue = f"local-{uid}"
    start_worker([queue])  # no activity queue at all: nothing could go through the broker
    handle = client.start(lw.lv_local_flow, uid, workflow_id=f"local-{uid}", task_queue=queue)
    where, runs = handle.result(timeout=30)
    assert where["routing_key"] == queue  # ran inside the replay step's task
    assert runs == 2 and count(f"{uid}-flaky") == 2  # one failure, retried by its policy
    assert count(f"{uid}-where") == 1
    history = handle.history()
    assert [(h["kind"], h["input"].get("local"), h["attempts"]) for h in history] == [
        ("activity", True, 1), ("activity", True, 2)]


def test_missed_heartbeat_is_a_failed_attempt_and_the_next_resumes_from_its_details(
        client, uid):
    from durable_celery.models import ActivityAttempt

    handle = client.start(lw.lv_heartbeat_flow, uid, 6, 2.5, workflow_id=f"hb-{uid}")
    assert handle.result(timeout=60) == {"resumed_from": 1, "attempt": 2}
    assert count(f"{uid}-attempt") == 2
    (failed,) = ActivityAttempt.objects.filter(event__execution__workflow_id=f"hb-{uid}")
    assert (failed.number, failed.outcome) == (1, "timed_out")
    assert "heartbeat_timeout" in failed.error["message"]


def test_steady_heartbeats_keep_a_long_attempt_alive(client, uid):
    handle = client.start(lw.lv_heartbeat_flow, uid, 30, 0, workflow_id=f"hbok-{uid}")
    assert handle.result(timeout=60) == {"resumed_from": 0, "attempt": 1}
    assert count(f"{uid}-attempt") == 1


def test_schedule_to_close_timeout_bounds_all_attempts(client, uid):
    from durable_celery import DurableTimeoutError

    handle = client.start(lw.lv_schedule_to_close, uid, workflow_id=f"s2c-{uid}")
    with pytest.raises(DurableTimeoutError) as info:
        handle.result(timeout=30)
    assert "schedule_to_close_timeout" in info.value.message
    assert 2 <= count(uid) <= 4  # a few tries within one second, then no more


def _token(key: str, attempt: int) -> str:
    return wait_until(lambda: get(f"{key}-token-{attempt}"), timeout=30,
                      what=f"the task token of attempt {attempt}")


def test_activity_completed_from_elsewhere(client, uid):
    from durable_celery import InvalidArgumentError

    handle = client.start(lw.lv_async_flow, uid, workflow_id=f"async-{uid}")
    token = _token(uid, 1)
    assert handle.status() == "running"
    client.complete_activity(token, {"approved": True})
    assert handle.result(timeout=30) == {"approved": True}
    with pytest.raises(InvalidArgumentError, match="no longer current"):
        client.complete_activity(token, "again")  # first writer won
    with pytest.raises(InvalidArgumentError, match="not valid"):
        client.complete_activity(token[:-3] + "abc", "forged")
    assert history_rows(handle) == [(1, "activity", "lv_async", "completed")]


def test_activity_failed_from_elsewhere_is_retried_by_its_policy(client, uid):
    from durable_celery.models import ActivityAttempt

    handle = client.start(lw.lv_async_flow, uid, workflow_id=f"asyncfail-{uid}")
    client.fail_activity(_token(uid, 1), "the remote side said no")
    client.complete_activity(_token(uid, 2), "second time lucky")
    assert handle.result(timeout=30) == "second time lucky"
    (failed,) = ActivityAttempt.objects.filter(event__execution__workflow_id=handle.workflow_id)
    assert failed.error["message"] == "the remote side said no"


def test_a_client_start_is_one_statement_and_a_duplicate_spoils_no_transaction(client, uid,
                                                                             monkeypatch):
    """A plain start is one INSERT (no BEGIN/COMMIT of its own, no look for a running run
    first: the one-active-run constraint answers that). A duplicate id still gets a clear
    error naming the running run, and inside the caller's transaction it costs only a
    savepoint: the caller's work goes on."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from durable_celery import DuplicateWorkflowError
    from durable_celery.models import WorkflowExecution
    from durable_celery.store import inspect

    wid = f"one-insert-{uid}"
    monkeypatch.setattr(inspect, "CONSUMER_CACHE_SECONDS", 3600.0)  # however slow the machine
    inspect.has_live_consumer(f"i-{uid}")  # the client asks once per queue and burst of starts
    with capture_publishes(send=False) as sent, CaptureQueriesContext(connection) as queries:
        client.start(lw.lv_sequence, 1, workflow_id=wid, task_queue=f"i-{uid}")
    assert [q["sql"].split()[0] for q in queries] == ["INSERT"], [q["sql"][:60] for q in queries]
    assert len(sent) == 1  # the step request, sent at once (autocommit)
    with capture_publishes(send=False) as sent:
        with transaction.atomic():
            with pytest.raises(DuplicateWorkflowError, match=r"already running .*lv_sequence"):
                client.start(lw.lv_sequence, 2, workflow_id=wid, task_queue=f"i-{uid}")
            other = client.start(lw.lv_sequence, 3, workflow_id=f"{wid}-b",
                                 task_queue=f"i-{uid}")
            assert sent == []  # the caller's transaction has not committed yet
        assert len(sent) == 1
    assert WorkflowExecution.objects.filter(workflow_id=wid).count() == 1
    assert WorkflowExecution.objects.get(workflow_id=other.workflow_id).args == [3]


@pytest.mark.parametrize(("backend", "activity_result"), [("django-db", True),
                                                         ("redis://127.0.0.1:6379/0", False)])
def test_a_message_says_whether_its_result_is_stored(uid, monkeypatch, backend,
                                                     activity_result):
    """Celery lets a message's ``ignore_result`` override the task's, so the replay step's own
    ``ignore_result=True`` held only when its message agreed: every step used to store a result
    (a GET, SETEX and PUBLISH on a Redis backend). Read back from the real broker: a step
    request says to store none; an activity attempt stores its result only in
    django-celery-results, whose rows the admin links from the history."""
    from celery import current_app

    from durable_celery.task_names import REPLAY_STEP_TASK, RUN_ACTIVITY_TASK
    from durable_celery.transport.publish import publish

    monkeypatch.setattr(current_app.conf, "result_backend", backend)
    queue = f"no-result-{uid}"
    with current_app.connection_for_read() as conn:
        inbox = conn.SimpleQueue(queue)
        try:
            publish(REPLAY_STEP_TASK, queue, [1])
            publish(RUN_ACTIVITY_TASK, queue, [{"activity": "greet", "event": 1, "attempt": 1}])
            received = [inbox.get(timeout=20) for _ in range(2)]
            for message in received:
                message.ack()
        finally:
            inbox.close()
    ignored = {m.headers["task"]: m.headers["ignore_result"] for m in received}
    assert ignored == {REPLAY_STEP_TASK: True, RUN_ACTIVITY_TASK: not activity_result}


def test_the_hot_statements_are_prepared_on_postgresql(client, uid):
    """With the recommended OPTIONS (``server_side_binding`` and ``prepare_threshold``; Django
    turns psycopg's preparing off without the latter) a statement run twice on a connection is
    prepared: PostgreSQL parses and plans it once per connection, not once per step."""
    from django.db import connection

    from durable_celery.store.fastpath import has_news_fast

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    handle = client.start(lw.lv_sequence, 1, workflow_id=f"prep-{uid}", task_queue=f"i-{uid}")
    for _ in range(3):
        has_news_fast(_pk(handle))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements "
                       "WHERE statement LIKE '%%e.step_requested OR%%'")
        (prepared,) = cursor.fetchone()
    assert prepared == 1


def test_a_one_activity_workflow_costs_the_worker_three_statements_on_postgresql(
        client, uid, monkeypatch):
    """Start to end in the worker, on PostgreSQL: the step's claim (which also says there are no
    hook threads and no history to read), the first step recorded with its activity claimed for
    this process (it also looks for news), and the result recorded with the run's completion.
    Elsewhere the same work is a few transactions; the result is the same."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from durable_celery.store.steps import run_replay_step
    from durable_celery.transport import activities
    from durable_celery.transport.activities import EagerBudget, run_claimed_attempts
    from durable_celery.transport.worker import current_worker_id

    handle = client.start(lw.lv_sequence, 1, workflow_id=f"three-{uid}", task_queue=f"i-{uid}")
    worker, pk = current_worker_id(), _pk(handle)
    monkeypatch.setattr(activities, "consumes", lambda queue: True)  # as the worker it stands for
    budget = EagerBudget(worker, f"task-{uid}")
    with capture_publishes(send=False) as sent, CaptureQueriesContext(connection) as queries:
        run_claimed_attempts(run_replay_step(pk, worker, budget), worker, budget)
    assert handle.result(timeout=5) == 1
    assert sent == []  # the activity ran here: no message, no outbox row
    if connection.vendor == "postgresql":
        assert len(queries) == 3, [q["sql"][:80] for q in queries]


#: What a step, a claim or a settled fan-out member writes on its run's row.
_STEP_COLUMNS = {"step_count", "step_requested", "step_claimed_by_id", "step_claimed_until",
                 "step_failures", "outcomes_settled", "wake_at", "updated_at"}


def _execution_update_counts(cursor) -> tuple[int, int]:
    cursor.execute("SELECT pg_stat_clear_snapshot()")
    cursor.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                   "WHERE relname = 'durable_celery_workflowexecution'")
    return cursor.fetchone()


def test_a_step_updates_its_run_in_place_on_postgresql(client, uid):
    """No index of the execution table names a column a step changes (nor uses it in a
    condition), and the table leaves room on each page: PostgreSQL then updates the run's row
    in place (a HOT update) instead of writing an entry in each of its indexes for every step.
    Counted from PostgreSQL's own statistics over 60 steps this process records."""
    from django.db import connection

    from durable_celery.store.steps import run_replay_step
    from durable_celery.transport.activities import run_delivered_attempt
    from durable_celery.transport.worker import current_worker_id

    if connection.vendor != "postgresql":
        pytest.skip("HOT updates are PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT i.indexrelid::regclass::text, a.attname FROM pg_index i
              JOIN pg_attribute a ON a.attrelid = i.indrelid
             WHERE i.indrelid = 'durable_celery_workflowexecution'::regclass AND a.attnum > 0
               AND (a.attnum = ANY(i.indkey)
                    OR pg_get_expr(i.indpred, i.indrelid) LIKE '%%' || a.attname || '%%')""")
        named = {(index, column) for index, column in cursor.fetchall() if column in _STEP_COLUMNS
                 and not (column == "step_requested" and index == "durable_exec_stepreq_idx")}
        cursor.execute("SELECT reloptions FROM pg_class "
                       "WHERE oid = 'durable_celery_workflowexecution'::regclass")
        (options,) = cursor.fetchone()
    assert named == set(), "indexes that make every step write every index"
    assert any(option.startswith("fillfactor=") for option in options or [])

    n = 60
    handle = client.start(lw.lv_sequence, n, workflow_id=f"hot-{uid}", task_queue=f"i-{uid}")
    with connection.cursor() as cursor:
        _, hot_before = _execution_update_counts(cursor)
        with capture_publishes(send=False) as sent:
            run_replay_step(_pk(handle), current_worker_id())
            for position in range(1, n + 1):
                assert run_delivered_attempt(sent[-1][2][0], f"h{position}")["outcome"] == \
                    "completed"
        assert handle.result(timeout=10) == n
        cursor.execute("SELECT pg_stat_force_next_flush()")  # this backend's counts, next idle
        # The run's first step flips step_requested and its last sets the status (not HOT).
        wait_until(lambda: _execution_update_counts(cursor)[1] - hot_before >= n - 3,
                   timeout=30, what=f"{n - 3} of the run's {n + 2} updates counted as HOT")


def test_claim_statements_read_runs_as_django_raw_would(client, uid):
    """``fetch_models`` (the claims' reader) builds the same instance as ``objects.raw``: every
    field through its converters (JSON, dates, foreign keys), other columns as attributes."""
    from durable_celery.models import WorkflowExecution
    from durable_celery.store.rows import fetch_models

    handle = client.start(lw.lv_sequence, 3, workflow_id=f"rows-{uid}", task_queue=f"i-{uid}")
    WorkflowExecution.objects.filter(pk=_pk(handle)).update(
        document={"a": [1, {"b": None}]}, result={"x": "é"}, retry_policy={"maximum_attempts": 2})
    table = WorkflowExecution._meta.db_table
    sql = f"SELECT *, 41 + 1 AS durable_extra FROM {table} WHERE id = %s"
    (ours,) = fetch_models(WorkflowExecution, sql, [_pk(handle)])
    (theirs,) = WorkflowExecution.objects.raw(sql, [_pk(handle)])
    fields = [f.attname for f in WorkflowExecution._meta.concrete_fields]
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(theirs, f) for f in fields}
    assert ours.document == {"a": [1, {"b": None}]} and ours.args == [3]
    assert ours.durable_extra == theirs.durable_extra == 42
    assert not ours._state.adding
    assert fetch_models(WorkflowExecution, sql, [-1]) == []


def test_claims_do_not_wait_for_the_disk_and_change_nothing_else_on_the_connection(client, uid):
    """A claim — of a run's step, of an attempt delivered through the broker — is a lease: its
    statement turns ``synchronous_commit`` off for its own transaction (no disk flush before
    the commit returns), and the connection's setting is back afterwards, so the statements that
    record results still wait for the disk. The claim itself is committed and holds: a second
    delivery of the same message claims nothing, and the activity runs once."""
    from django.db import connection, transaction

    from durable_celery import clock
    from durable_celery.models import HistoryEvent
    from durable_celery.store.activities import claim_attempt
    from durable_celery.store.claims import claim_step_returning
    from durable_celery.store.steps import run_replay_step
    from durable_celery.transport.activities import run_delivered_attempt
    from durable_celery.transport.worker import current_worker_id

    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")

    def setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    class Undo(Exception):
        pass

    worker = current_worker_id()
    handle = client.start(lw.lv_sequence, 2, workflow_id=f"relaxed-{uid}", task_queue=f"i-{uid}")
    assert setting() == "on"
    now = clock.now()
    with pytest.raises(Undo), transaction.atomic():
        assert claim_step_returning(_pk(handle), worker, now, now) is not None
        assert setting() == "off"
        raise Undo  # leave the step to run_replay_step below
    assert setting() == "on"
    with capture_publishes(send=False) as sent:
        run_replay_step(_pk(handle), worker)
        first = sent[-1][2][0]
        with transaction.atomic():
            assert claim_attempt(first, worker, "first-copy") is not None
            assert setting() == "off"
        assert setting() == "on"
        assert HistoryEvent.objects.get(pk=first["event"]).celery_task_id == "first-copy"
        assert claim_attempt(first, worker, "second-copy") is None
        HistoryEvent.objects.filter(pk=first["event"]).update(worker=None, started_at=None)
        for position in (1, 2):
            assert run_delivered_attempt(sent[-1][2][0], f"r{position}")["outcome"] == \
                "completed"
            assert setting() == "on"
    assert handle.result(timeout=10) == 2
    assert count(f"seq-relaxed-{uid}") == 2  # each of the two activities ran once
