"""Bad input ends with a clear error, never a stuck or silently corrupted workflow."""

from __future__ import annotations

import os
import re

import pytest

from durable_celery import (
    DuplicateWorkflowError,
    NonDeterminismError,
    NotJSONSerializableError,
    UnknownActivityError,
    UnknownWorkflowError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from tests.e2e import workflows as wf
from tests.e2e.helpers import history_rows, wait_until


def _stored(workflow_id: str) -> bool:
    from durable_celery.models import WorkflowExecution

    return WorkflowExecution.objects.filter(workflow_id=workflow_id).exists()


def test_unknown_workflow_name_refused_at_start(client, uid):
    with pytest.raises(UnknownWorkflowError) as info:
        client.start(f"nope_{uid}", workflow_id=f"nope-{uid}")
    assert f"nope_{uid}" in info.value.message
    assert not _stored(f"nope-{uid}")


def test_unknown_workflow_name_with_task_queue_fails_on_worker(client, uid):
    handle = client.start(f"nope_{uid}", 1, workflow_id=f"nope-{uid}", task_queue="durable")
    with pytest.raises(UnknownWorkflowError) as info:
        handle.result(timeout=30)
    assert f"nope_{uid}" in info.value.message
    assert f"registered in process {os.getpid()} " not in info.value.message  # the worker's
    assert re.search(r"registered in process \d+ on ", info.value.message)
    assert handle.status() == "failed"


def test_unknown_activity_fails_workflow_clearly(client, uid):
    handle = client.start(wf.unknown_activity, workflow_id=f"noact-{uid}")
    with pytest.raises(UnknownActivityError) as info:
        handle.result(timeout=30)
    assert "no_such_activity" in info.value.message
    assert handle.status() == "failed"
    (row,) = handle.history()
    assert (row["kind"], row["name"], row["status"], row["attempts"]) == (
        "activity", "no_such_activity", "failed", 1)
    assert "no_such_activity" in row["error"]["message"]


def test_non_json_start_args_refused_and_nothing_stored(client, uid):
    with pytest.raises(TypeError) as info:
        client.start(wf.hello, {1, 2}, workflow_id=f"nonjson-{uid}")
    assert isinstance(info.value, NotJSONSerializableError)
    assert "hello" in str(info.value)
    assert not _stored(f"nonjson-{uid}")
    with pytest.raises(TypeError):
        client.start(wf.hello, object(), workflow_id=f"nonjson-{uid}")
    with pytest.raises(TypeError):
        client.start(wf.hello, float("nan"), workflow_id=f"nonjson-{uid}")
    assert not _stored(f"nonjson-{uid}")


def test_non_json_activity_args_fail_workflow(client, uid):
    handle = client.start(wf.non_json_activity_args, workflow_id=f"actjson-{uid}")
    with pytest.raises(NotJSONSerializableError) as info:
        handle.result(timeout=30)
    assert "greet" in info.value.message
    assert "JSON" in info.value.message
    assert handle.history() == []


def test_non_json_signal_refused(client, uid):
    with pytest.raises(TypeError):
        client.signal(f"sig-{uid}", {1, 2})


@pytest.mark.heavy
def test_changed_history_raises_non_determinism_naming_position(client, uid, start_worker):
    from durable_celery.models import HistoryEvent

    queue = f"nondet-{uid}"
    worker = start_worker([queue, f"{queue}-activity"])
    handle = client.start(wf.approval, uid, workflow_id=f"nondet-{uid}", task_queue=queue)
    wait_until(lambda: history_rows(handle) == [
        (1, "activity", "greet", "completed"), (2, "wait", f"approval-{uid}", "scheduled")],
        what="the approval wait")
    # a deploy: the worker stops (its runs in memory with it) and the code "changed" — history
    # now says position 1 called another activity than the code calls
    worker.stop()
    assert HistoryEvent.objects.filter(execution__workflow_id=handle.workflow_id, seq=1) \
        .update(name="greet_v1") == 1
    start_worker([queue, f"{queue}-activity"])
    assert client.signal(f"approval-{uid}", {"approved": True}) == 1
    with pytest.raises(NonDeterminismError) as info:
        handle.result(timeout=30)
    message = info.value.message
    assert "position 1" in message
    assert "greet_v1" in message and "'greet'" in message
    assert handle.status() == "failed"


def test_changed_call_kind_raises_non_determinism(client, uid):
    from durable_celery.models import HistoryEvent, WorkflowExecution

    handle = client.start(wf.approval, uid, workflow_id=f"nondet2-{uid}")
    wait_until(lambda: len(handle.history()) == 2, what="the approval wait")
    # the code "changed": position 2 used to be a sleep, now it is a wait
    HistoryEvent.objects.filter(execution__workflow_id=handle.workflow_id, seq=2).update(
        kind="sleep", name="", status="completed", result=1.0, observed_step=None)
    WorkflowExecution.objects.filter(workflow_id=handle.workflow_id).update(step_requested=True)
    from durable_celery.store.steps import run_replay_step
    from durable_celery.transport.worker import current_worker_id

    run_replay_step(WorkflowExecution.objects.get(workflow_id=handle.workflow_id).pk,
                    current_worker_id())
    with pytest.raises(NonDeterminismError) as info:
        handle.result(timeout=30)
    assert "position 2" in info.value.message
    assert "sleep" in info.value.message and "wait" in info.value.message


def test_signal_to_finished_workflow(client, uid):
    handle = client.start(wf.hello, "done", workflow_id=f"done-{uid}")
    assert handle.result(timeout=30) == "Hello, done!"
    with pytest.raises(WorkflowNotRunningError):
        handle.signal(f"late-{uid}", 1)


def test_handle_of_unknown_workflow(client, uid):
    handle = client.get_handle(f"ghost-{uid}")
    for use in (handle.status, handle.result, handle.describe, handle.history,
                lambda: handle.signal("x", 1)):
        with pytest.raises(WorkflowNotFoundError) as info:
            use()
        assert f"ghost-{uid}" in info.value.message


def test_duplicate_workflow_id_while_running(client, uid):
    workflow_id = f"dupid-{uid}"
    handle = client.start(wf.wait_with_timeout, f"dupid-{uid}", "30s", workflow_id=workflow_id)
    with pytest.raises(DuplicateWorkflowError) as info:
        client.start(wf.hello, "again", workflow_id=workflow_id)
    assert workflow_id in info.value.message
    client.signal(f"dupid-{uid}", "finish")
    assert handle.result(timeout=30) == "finish"
    # a finished id may be started again
    again = client.start(wf.hello, "again", workflow_id=workflow_id)
    assert again.result(timeout=30) == "Hello, again!"


def test_non_json_activity_result_fails_workflow_clearly(client, uid):
    handle = client.start(wf.non_json_activity_result, workflow_id=f"setres-{uid}")
    with pytest.raises(NotJSONSerializableError) as info:
        handle.result(timeout=30)
    assert "returns_set" in info.value.message
    (row,) = handle.history()
    assert (row["status"], row["attempts"]) == ("failed", 1)


def test_asyncio_sleep_in_workflow_is_a_durable_timer(client, uid):
    handle = client.start(wf.real_sleeper, workflow_id=f"realsleep-{uid}")
    assert handle.result(timeout=30) == "slept for real"
    assert [(h["kind"], h["input"]) for h in handle.history()] == [("sleep", {"seconds": 0.1})]


def test_real_time_timeout_in_workflow_fails_clearly(client, uid):
    from durable_celery import WorkflowSandboxError

    handle = client.start(wf.real_timeout, workflow_id=f"realtimeout-{uid}")
    with pytest.raises(WorkflowSandboxError) as info:
        handle.result(timeout=30)
    assert "asyncio.wait_for" in info.value.message and "sleep_for" in info.value.message


def test_messages_naming_rows_this_database_lacks_are_skipped_with_a_warning(db_access, uid,
                                                                             caplog):
    """A worker on the same broker but another database (a second deployment, a stale
    process) claims nothing from such messages and acknowledges them: the sending side's runs
    then wait on the sweeper forever. The skip says so, naming what was missing."""
    import logging

    from durable_celery.store.steps import run_replay_step
    from durable_celery.transport.activities import run_delivered_attempt
    from durable_celery.transport.worker import current_worker_id

    missing = 2**40
    with caplog.at_level(logging.WARNING, logger="durable_celery"):
        assert run_replay_step(missing, current_worker_id()) == []
        outcome = run_delivered_attempt(
            {"activity": "greet", "event": missing, "attempt": 1, "execution": missing,
             "workflow_id": f"elsewhere-{uid}", "seq": 1}, f"task-{uid}")
    assert outcome["outcome"] == "skipped"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"run {missing}, which this database does not hold" in w for w in warnings)
    assert any(f"call {missing} of workflow elsewhere-{uid}, which this database does not hold"
               in w for w in warnings)


# -- bad values given in workflow code fail the run at once (never retried for hours) --------


@pytest.mark.parametrize("case, message", [
    ("sleep_for_huge", "sleep_for duration is out of range"),
    ("search_incr_nan", "search().incr needs a finite number, got nan"),
    ("search_mult_inf", "search().mult needs a finite number, got -inf"),
    ("entity_nul_path", "entity path must not contain a NUL"),
    ("queue_nul", "task_queue must not contain a NUL"),
    ("queue_long", "task_queue is 300 characters long; at most 255"),
    ("queue_empty", "task_queue must not be empty"),
    ("activity_name_long", "activity name is 300 characters long"),
    ("interrupt_nul", "workflow.interrupt workflow_id must not contain a NUL"),
    ("interrupt_long", "workflow.interrupt workflow_id is 300 characters long"),
])
def test_bad_value_in_workflow_code_fails_the_run_at_once(client, uid, case, message):
    from durable_celery import InvalidArgumentError

    handle = client.start(wf.bad_call, case, workflow_id=f"badcall-{uid}")
    with pytest.raises(InvalidArgumentError) as info:
        handle.result(timeout=30)
    assert message in info.value.message
    assert handle.status() == "failed"
    assert [row["kind"] for row in handle.history()] in ([], ["search"], ["entity"])


def test_an_interrupt_reason_that_cannot_be_stored_fails_the_run_at_once(client, uid):
    handle = client.start(wf.bad_call, "interrupt_reason_set", workflow_id=f"badreason-{uid}")
    with pytest.raises(NotJSONSerializableError) as info:
        handle.result(timeout=30)
    assert "the reason given to workflow.interrupt()" in info.value.message
    assert handle.status() == "failed" and handle.history() == []


def test_asyncio_sleep_zero_in_a_workflow_only_yields(client, uid):
    handle = client.start(wf.sleeps_zero, workflow_id=f"sleep0-{uid}")
    assert handle.result(timeout=30) == "yielded"
    assert handle.history() == []


# -- bad values at the client raise at the call, naming the field; nothing is stored ---------


@pytest.mark.parametrize("name, message", [
    ("", "workflow name must not be empty"),
    ("a\x00b", "workflow name must not contain a NUL"),
    ("n" * 300, "workflow name is 300 characters long"),
])
def test_start_by_a_name_the_database_cannot_store_is_refused(client, uid, name, message):
    from durable_celery import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match=message):
        client.start(name, workflow_id=f"badname-{uid}", task_queue="durable")
    assert not _stored(f"badname-{uid}")


def test_start_search_that_is_not_a_dict_is_refused(client, uid):
    with pytest.raises(TypeError, match="search must be a dict"):
        client.start(wf.hello, "x", workflow_id=f"badsearch-{uid}", search=[("a", 1)])
    assert not _stored(f"badsearch-{uid}")


@pytest.mark.parametrize("namespace, message", [
    ("ns\x00", "namespace must not contain a NUL"),
    ("n" * 101, "namespace is 101 characters long; at most 100"),
])
def test_signal_to_a_namespace_the_database_cannot_store_is_refused(client, uid, namespace,
                                                                    message):
    from durable_celery import InvalidArgumentError
    from durable_celery.models import PendingSignal

    with pytest.raises(InvalidArgumentError, match=message):
        client.signal(f"sig-{uid}", 1, namespace=namespace)
    assert not PendingSignal.objects.filter(signal_id=f"sig-{uid}").exists()


@pytest.mark.parametrize("options, message", [
    ({"search": {"big": "x" * 3000}}, "search field 'big' is 3000 characters long"),
    ({"search": {"emoji": "\U0001f600" * 700}}, "takes 2805 bytes"),
    ({"search": "a=1"}, "search must be a dict"),
    ({"namespace": "n" * 101}, "namespace is 101 characters long"),
    ({"task_queue": "q\x00"}, "task_queue must not contain a NUL"),
    ({"entity": "e" * 300}, "entity is 300 characters long"),
    ({"schedule_id": "nul\x00"}, "schedule_id must not contain a NUL"),
])
def test_schedule_checks_its_identity_like_start(client, uid, options, message):
    from durable_celery.models import Schedule

    options = {**options, "schedule_id": f"badsched-{uid}{options.get('schedule_id', '')}"}
    with pytest.raises((TypeError, ValueError), match=message):
        client.schedule(wf.hello, "x", every="1h", **options)
    assert not Schedule.objects.filter(schedule_id__startswith=f"badsched-{uid}").exists()


def test_hook_checks_its_arguments_at_the_call(client, uid):
    from durable_celery import InvalidArgumentError
    from durable_celery.models import WorkflowThread

    handle = client.start(wf.wait_with_timeout, f"hookbad-{uid}", "30s",
                          workflow_id=f"hookbad-{uid}")
    wait_until(lambda: len(handle.history()) == 1, what="the wait")
    bad = [({"workflow_name": "a\x00b"}, InvalidArgumentError, "workflow_name must not"),
           ({"workflow_name": "hello", "task_queue": "q" * 300}, InvalidArgumentError,
            "task_queue is 300 characters long"),
           ({"workflow_name": "hello", "args": "x"}, TypeError, "must be a list or tuple"),
           ({"workflow_name": "hello", "args": []}, TypeError, "hello"),
           ({"workflow_name": "hello", "args": ["a", "b"]}, TypeError, "hello")]
    for options, error, message in bad:
        with pytest.raises(error, match=message):
            client.hook(workflow_id=handle.workflow_id, **options)
    with pytest.raises(InvalidArgumentError, match="workflow_id must not contain a NUL"):
        client.hook(workflow_id="w\x00", workflow_name="hello", args=["a"])
    assert WorkflowThread.objects.filter(execution__workflow_id=handle.workflow_id,
                                         workflow_name="hello").count() == 0
    client.signal(f"hookbad-{uid}", "finish")
    assert handle.result(timeout=30) == "finish"


def test_search_and_find_entities_refuse_bad_filters(client):
    with pytest.raises(ValueError, match="status must be one of pending, running, completed"):
        client.search(status="bogus")
    with pytest.raises(ValueError, match="status must be one of"):
        client.find_entities("user", status="done")
    with pytest.raises(ValueError, match="limit cannot be negative"):
        client.find_entities("user", limit=-1)
    with pytest.raises(TypeError, match="limit must be an int or None, got str"):
        client.find_entities("user", limit="x")
    with pytest.raises(TypeError, match="offset must be an int"):
        client.find_entities("user", offset=None)


@pytest.mark.parametrize("reason, message", [
    ({1, 2}, "must be JSON-serialisable"),
    (float("nan"), "must be JSON-serialisable"),
    ("why\x00", "holds a NUL character"),
    ("deep", "must be JSON-serialisable"),
    ("huge", "DURABLE_MAX_PAYLOAD_BYTES"),
])
def test_cancel_and_interrupt_refuse_a_reason_that_cannot_be_stored(client, uid, reason,
                                                                    message):
    from durable_celery.conf import durable_setting

    if reason == "deep":
        reason = []
        for _ in range(100_000):
            reason = [reason]
    elif reason == "huge":
        reason = "x" * (int(durable_setting("DURABLE_MAX_PAYLOAD_BYTES")) + 1)
    handle = client.start(wf.wait_with_timeout, f"reason-{uid}", "30s",
                          workflow_id=f"reason-{uid}")
    for call in (handle.cancel, handle.interrupt):
        with pytest.raises(NotJSONSerializableError, match=message):
            call(reason=reason)
    assert handle.status() in ("pending", "running")
    client.signal(f"reason-{uid}", "finish")
    assert handle.result(timeout=30) == "finish"
