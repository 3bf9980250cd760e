"""Runs of a workflow id (never deleted, id reuse policies, handles on runs) and execution
timeouts, against real workers."""

from __future__ import annotations

import pytest

from tests.e2e import lifecycle_workflows as lw
from tests.e2e import workflows as wf
from tests.support.counters import count

# -- runs ------------------------------------------------------------------------------------


def test_starting_an_id_again_keeps_the_earlier_run(client, uid):
    from durable_celery import DuplicateWorkflowError

    wid = f"again-{uid}"
    first = client.start(wf.hello, "one", workflow_id=wid)
    assert len(first.run_id) == 32
    assert first.result(timeout=30) == "Hello, one!"
    with pytest.raises(DuplicateWorkflowError):
        client.start(wf.hello, "dup", workflow_id=wid, id_reuse_policy="reject_duplicate")
    second = client.start(wf.hello, "two", workflow_id=wid)
    assert second.run_id != first.run_id
    assert second.result(timeout=30) == "Hello, two!"
    # the earlier run and its history are intact and readable
    assert first.result(timeout=1) == "Hello, one!"
    assert first.describe()["run_id"] == first.run_id
    assert first.describe()["args"] == ["one"]
    assert [r["status"] for r in first.history()] == ["completed"]
    runs = client.list_runs(wid)
    assert [h.run_id for h in runs] == [second.run_id, first.run_id]
    assert [h.describe()["args"] for h in runs] == [["two"], ["one"]]
    latest = client.get_handle(wid)
    assert latest.run_id == second.run_id and latest.result(timeout=1) == "Hello, two!"
    assert client.get_handle(wid, run_id=first.run_id).describe()["args"] == ["one"]


def test_id_reuse_policies(client, uid):
    from durable_celery import DuplicateWorkflowError
    from durable_celery.models import WorkflowExecution

    wid = f"policy-{uid}"
    running = client.start(lw.waits_forever, uid, workflow_id=wid)
    with pytest.raises(DuplicateWorkflowError, match="already running"):
        client.start(lw.waits_forever, uid, workflow_id=wid)
    same = client.start(lw.waits_forever, "other", workflow_id=wid,
                        id_reuse_policy="return_existing")
    assert same.run_id == running.run_id
    running.interrupt()
    again = client.start(wf.hello, "x", workflow_id=wid, id_reuse_policy="return_existing")
    assert again.run_id == running.run_id and again.status() == "interrupted"
    with pytest.raises(DuplicateWorkflowError, match="reject_duplicate"):
        client.start(wf.hello, "x", workflow_id=wid, id_reuse_policy="reject_duplicate")
    with pytest.raises(ValueError, match="id_reuse_policy"):
        client.start(wf.hello, "x", workflow_id=f"bad-{uid}", id_reuse_policy="sometimes")
    assert WorkflowExecution.objects.filter(workflow_id__in=[wid, f"bad-{uid}"]).count() == 1
    fresh = client.start(wf.hello, "new", workflow_id=f"fresh-{uid}",
                         id_reuse_policy="reject_duplicate")
    assert fresh.result(timeout=30) == "Hello, new!"


def test_unknown_run_id_is_named(client, uid):
    from durable_celery import WorkflowNotFoundError

    handle = client.start(wf.hello, "r", workflow_id=f"named-{uid}")
    handle.result(timeout=30)
    ghost = client.get_handle(handle.workflow_id, run_id="0" * 32)
    with pytest.raises(WorkflowNotFoundError, match="0{32}"):
        ghost.describe()
    with pytest.raises(WorkflowNotFoundError):
        ghost.result(timeout=1)
    with pytest.raises(TypeError):
        client.get_handle(handle.workflow_id, run_id=7)


def test_a_handle_without_a_run_follows_the_latest_run(client, uid):
    wid = f"latest-{uid}"
    handle = client.get_handle(wid)
    first = client.start(wf.hello, "a", workflow_id=wid)
    assert handle.run_id == first.run_id
    first.result(timeout=30)
    second = client.start(wf.hello, "b", workflow_id=wid)
    assert handle.run_id == second.run_id
    assert handle.result(timeout=30) == "Hello, b!"


def test_result_polls_read_only_the_outcome_soon_then_less_often(client, uid, settings):
    """``result()`` polls with one lookup of the run's status and outcome (no arguments,
    document or history), first after 2 ms, then after a twentieth of the time waited, never
    longer apart than ``DURABLE_RESULT_POLL_INTERVAL``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from durable_celery.handle import _poll_delay

    assert [_poll_delay(w, 0.05) for w in (0.0, 0.01, 0.2, 3.0)] == pytest.approx(
        [0.002, 0.002, 0.01, 0.05])
    settings.DURABLE_RESULT_POLL_INTERVAL = 0.01
    handle = client.start(wf.hello, "p", workflow_id=f"poll-{uid}", task_queue=f"idle-{uid}")
    with CaptureQueriesContext(connection) as queries, pytest.raises(TimeoutError):
        handle.result(timeout=0.2)
    polls = [q["sql"] for q in queries]
    assert len(polls) >= 10
    assert all("status" in sql and "args" not in sql and "document" not in sql
               for sql in polls), polls[0]


# -- execution timeout -----------------------------------------------------------------------


def test_execution_timeout_interrupts_the_run(client, uid):
    from durable_celery import DurableTimeoutError

    handle = client.start(lw.waits_forever, uid, workflow_id=f"limit-{uid}",
                          execution_timeout="1.5s")
    assert handle.describe()["timeout_at"] is not None
    with pytest.raises(DurableTimeoutError) as info:
        handle.result(timeout=30)
    assert info.value.code == 596 and "execution_timeout" in info.value.message
    assert handle.status() == "interrupted"
    assert count(f"{uid}-started") == 1
    assert [r["status"] for r in handle.history()] == ["completed", "cancelled"]


def test_a_child_timeout_reaches_the_parent_as_a_timeout(client, uid):
    parent = client.start(lw.parent_of_timed_child, uid, 1, workflow_id=f"tparent-{uid}")
    assert parent.result(timeout=30) == ["child timed out", 596, "DurableTimeoutError"]
    assert client.get_handle(f"{uid}-child").status() == "interrupted"


@pytest.mark.parametrize("bad", [-1, 0, "soon", "-5s", float("nan"), True])
def test_a_malformed_execution_timeout_is_refused_at_the_call(client, uid, bad):
    from durable_celery.models import WorkflowExecution

    with pytest.raises(ValueError, match="execution_timeout"):
        client.start(wf.hello, "x", workflow_id=f"badlimit-{uid}", execution_timeout=bad)
    assert not WorkflowExecution.objects.filter(workflow_id=f"badlimit-{uid}").exists()


def test_a_malformed_child_timeout_is_refused_in_the_workflow(client, uid):
    handle = client.start(lw.bad_child_timeout, uid, "whenever", workflow_id=f"badc-{uid}")
    result = handle.result(timeout=30)
    assert result.startswith("refused:") and "child execution_timeout" in result


def test_an_earlier_run_is_not_resumed_while_a_later_one_runs(client, uid):
    from durable_celery import OperationError

    wid = f"two-{uid}"
    first = client.start(lw.waits_forever, uid, workflow_id=wid)
    first.interrupt("first stop")
    second = client.start(lw.waits_forever, uid, workflow_id=wid)
    with pytest.raises(OperationError, match="later run"):
        first.resume()
    assert first.status() == "interrupted" and second.status() in ("pending", "running")
    second.interrupt()
    assert first.resume().status() == "running"  # no run of the id is active any more
    current = client.get_handle(wid)  # the active run, though a later one exists
    assert current.run_id == first.run_id and current.status() == "running"
    assert current.interrupt() == [wid]
    assert client.get_handle(wid).run_id == second.run_id  # none active: the newest
