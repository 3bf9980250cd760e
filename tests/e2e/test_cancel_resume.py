"""``handle.cancel()`` (cooperative, with cleanup that runs normally) and ``handle.resume()``
(interrupted and failed runs continue where they stopped), against real workers."""

from __future__ import annotations

import pytest

from tests.e2e import lifecycle_workflows as lw
from tests.e2e.helpers import wait_until
from tests.support.counters import bump, count


def _rows(handle) -> list[tuple]:
    return [(r["dimension"], r["seq"], r["kind"], r["name"], r["status"])
            for r in handle.history()]


def _waiting(handle) -> bool:
    """Whether the run (which may not exist yet) has an open wait."""
    from durable_celery import WorkflowNotFoundError

    try:
        return any(r["kind"] == "wait" and r["status"] == "scheduled" for r in handle.history())
    except WorkflowNotFoundError:
        return False


def _main(handle) -> list[tuple]:
    return [(seq, kind, name, status) for dim, seq, kind, name, status in _rows(handle)
            if dim == ""]


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_runs_the_cleanup_and_tells_the_running_activity(client, uid):
    from durable_celery import DurableInterruptedError

    handle = client.start(lw.cancel_with_cleanup, uid, workflow_id=f"cancel-{uid}")
    wait_until(lambda: count(f"{uid}-started") == 1, timeout=30, what="the heartbeating work")
    assert handle.cancel("operator said stop") == [handle.workflow_id]
    with pytest.raises(DurableInterruptedError) as info:
        handle.result(timeout=30)
    assert info.value.code == 410 and "operator said stop" in info.value.message
    assert info.value.type == "CancelledError"
    assert handle.status() == "interrupted"
    wait_until(lambda: count(f"{uid}-told") == 1, timeout=10,
               what="the running activity to learn of the cancellation at a heartbeat")
    assert count(f"{uid}-worked") == 0
    assert count(f"{uid}-cleanup") == 1 and count(f"{uid}-cleanup-told") == 0
    assert _main(handle) == [(0, "cancel", "", "completed"),
                             (1, "activity", "lc_work", "cancelled"),
                             (2, "activity", "lc_cleanup", "completed")]
    work = handle.history()[1]
    assert work["error"]["type"] == "CancelledError"  # ended by the cancellation, not the end
    assert handle.describe()["cancel_requested_at"] is not None
    # a second cancel, and a cancel of the ended run, change nothing
    assert handle.cancel() == []
    assert handle.status() == "interrupted" and count(f"{uid}-cleanup") == 1


def test_a_workflow_that_handles_the_cancellation_completes(client, uid):
    handle = client.start(lw.cancel_and_compensate, uid, workflow_id=f"comp-{uid}")
    wait_until(lambda: _waiting(handle), timeout=30, what="the wait")
    handle.cancel("customer left")
    assert handle.result(timeout=30) == ["before", "cleaned", "customer left"]
    assert handle.status() == "completed"
    assert count(f"{uid}-cleanup") == 1 and count(f"{uid}-before") == 1
    assert _main(handle)[-2:] == [(2, "wait", f"never-{uid}", "cancelled"),
                                  (3, "activity", "lc_cleanup", "completed")]


def test_cancel_of_a_finished_run_is_a_no_op(client, uid):
    handle = client.start(lw.child_echo, uid, False, workflow_id=f"done-{uid}")
    assert handle.result(timeout=30) == f"echo {uid}"
    assert handle.cancel("too late") == []
    assert handle.status() == "completed"
    assert [r["kind"] for r in handle.history()] == ["activity"]


def test_worker_restart_between_cancel_and_cleanup(client, uid, start_worker):
    """The cancel is delivered to the run kept in memory by one worker; the cleanup's outcome
    reaches a new worker that keeps nothing in memory and replays from history: both must put
    the workflow in the same place."""
    queue, cleanup_queue = f"lc-{uid}", f"lc-{uid}-cleanup"
    first = start_worker([queue, f"{queue}-activity"])
    handle = client.start(lw.cancel_cleanup_elsewhere, uid, cleanup_queue,
                          workflow_id=f"restart-{uid}", task_queue=queue)
    wait_until(lambda: _waiting(handle), timeout=30, what="the wait")
    handle.cancel("shutting the shop")
    wait_until(lambda: any(r["name"] == "lc_cleanup" for r in handle.history()), timeout=30,
               what="the cleanup call")
    first.kill()
    assert count(f"{uid}-cleanup") == 0  # nobody consumes the cleanup queue yet
    start_worker([queue, f"{queue}-activity", f"{cleanup_queue}-activity"],
                 env={"DURABLE_WORKFLOW_CACHE_SIZE": "0"})
    from durable_celery import DurableInterruptedError

    with pytest.raises(DurableInterruptedError, match="shutting the shop"):
        handle.result(timeout=45)
    assert count(f"{uid}-before") == 1 and count(f"{uid}-cleanup") == 1
    assert count(f"{uid}-after-cleanup") == 1
    assert _main(handle) == [(0, "cancel", "", "completed"),
                             (1, "activity", "lc_step", "completed"),
                             (2, "wait", f"never-{uid}", "cancelled"),
                             (3, "activity", "lc_cleanup", "completed"),
                             (4, "activity", "lc_step", "completed")]


def test_cancel_with_descend_reaches_the_child(client, uid):
    from durable_celery import DurableInterruptedError

    parent = client.start(lw.cancel_parent, uid, workflow_id=uid)
    child = client.get_handle(f"{uid}-child")
    wait_until(lambda: _waiting(child), timeout=30, what="the child's wait")
    assert sorted(parent.cancel("stop all", descend=True)) == sorted([uid, f"{uid}-child"])
    for handle in (parent, child):
        with pytest.raises(DurableInterruptedError, match="stop all"):
            handle.result(timeout=30)
    assert count(f"{uid}-cleanup") == 1 and count(f"{uid}-child-cleanup") == 1


def test_cancel_without_descend_leaves_the_child_running(client, uid):
    from durable_celery import DurableInterruptedError

    parent = client.start(lw.cancel_parent, uid, workflow_id=uid)
    child = client.get_handle(f"{uid}-child")
    wait_until(lambda: _waiting(child), timeout=30, what="the child's wait")
    assert parent.cancel() == [uid]
    with pytest.raises(DurableInterruptedError):
        parent.result(timeout=30)
    assert child.status() == "running"
    client.signal(f"go-{uid}-child", "released")
    assert child.result(timeout=30) == "released"
    assert count(f"{uid}-cleanup") == 1 and count(f"{uid}-child-cleanup") == 1


# -- resume ----------------------------------------------------------------------------------


def test_resume_an_interrupted_run_at_each_open_call(client, uid):
    from durable_celery import OperationError

    handle = client.start(lw.resumable, uid, workflow_id=f"resume-{uid}")
    wait_until(lambda: _waiting(handle), timeout=30, what="the wait")
    with pytest.raises(OperationError, match="running"):
        handle.resume()
    handle.interrupt("maintenance")
    assert handle.status() == "interrupted"
    assert _main(handle)[-1] == (2, "wait", f"go-{uid}", "cancelled")
    assert handle.resume() is handle
    assert handle.status() == "running"
    assert _main(handle)[-1] == (2, "wait", f"go-{uid}", "scheduled")
    client.signal(f"go-{uid}", "go")
    # interrupted again while the slow activity runs: it is issued again on resume
    wait_until(lambda: count(f"{uid}-started") == 1, timeout=30, what="the slow activity")
    handle.interrupt()
    handle.resume()
    assert handle.result(timeout=45) == ["one", "go", "slept 1.5"]
    assert count(f"{uid}-first-first") == 0 and count(f"{uid}-first") == 1  # not run again
    assert count(f"{uid}-finished") >= 1
    operator = [r for r in handle.history() if r["kind"] == "operator"]
    assert [r["name"] for r in operator] == ["resume", "resume"]
    assert operator[0]["input"]["user"] == "client"
    assert operator[0]["input"]["reopened"] == [
        {"dimension": "", "seq": 2, "kind": "wait", "name": f"go-{uid}"}]
    # resuming a completed run does nothing
    handle.resume()
    assert handle.status() == "completed"
    assert len([r for r in handle.history() if r["kind"] == "operator"]) == 2


def test_resume_a_failed_run_from_its_failed_step(client, uid):
    handle = client.start(lw.fix_then_resume, uid, workflow_id=f"fixed-{uid}")
    wait_until(lambda: handle.status() == "failed", timeout=30, what="the failure")
    assert count(f"{uid}-tries") == 1
    bump(f"{uid}-fixed")
    handle.resume()
    assert handle.result(timeout=30) == ["one", "fixed"]
    assert count(f"{uid}-first") == 1 and count(f"{uid}-tries") == 2


def test_a_run_that_ended_with_its_cancellation_is_not_resumed(client, uid):
    from durable_celery import DurableInterruptedError, OperationError

    handle = client.start(lw.cancel_with_cleanup, uid, workflow_id=f"nores-{uid}")
    wait_until(lambda: count(f"{uid}-started") == 1, timeout=30, what="the work")
    handle.cancel()
    with pytest.raises(DurableInterruptedError):
        handle.result(timeout=30)
    with pytest.raises(OperationError, match="cancel"):
        handle.resume()
    assert handle.status() == "interrupted"


def test_cli_resume_cancel_and_runs(client, uid):
    import json
    from io import StringIO

    from django.core.management import CommandError, call_command

    def durable(*args: str) -> str:
        out = StringIO()
        call_command("durable", *args, stdout=out)
        return out.getvalue()

    handle = client.start(lw.resumable, uid, workflow_id=f"cli-{uid}")
    wait_until(lambda: _waiting(handle), timeout=30, what="the wait")
    handle.interrupt()
    out = json.loads(durable("resume", handle.workflow_id, "--json"))
    assert out["resumed"] is True and out["reopened"][0]["kind"] == "wait"
    assert handle.status() == "running"
    assert "cancellation requested" in durable("cancel", handle.workflow_id, "--reason", "cli")
    wait_until(lambda: handle.status() == "interrupted", timeout=30, what="the cancellation")
    runs = json.loads(durable("runs", handle.workflow_id, "--json"))
    assert [r["run_id"] for r in runs] == [handle.run_id]
    described = json.loads(durable("describe", handle.workflow_id, "--run", handle.run_id,
                                   "--json"))
    assert described["run_id"] == handle.run_id and described["status"] == "interrupted"
    history = json.loads(durable("history", handle.workflow_id, "--run", handle.run_id,
                                 "--json"))
    assert [r["kind"] for r in history if r["dimension"] == ""][0] == "cancel"
    # the shell user is recorded, as for every operator action; its row is not completed
    # before it was created
    operator = [r for r in history if r["dimension"] == "operator"]
    cancel = [r for r in operator if r["name"] == "cancel"]
    assert len(cancel) == 1 and cancel[0]["input"]["user"].startswith("cli:")
    assert cancel[0]["input"]["reason"] == "cli"
    assert all(r["completed_at"] >= r["created_at"] for r in operator)
    with pytest.raises(CommandError, match="OperationError: .* only a pending or running"):
        durable("cancel", handle.workflow_id)  # it has ended: refused, as in the admin
