"""Child workflows, hooks and interrupts, end to end with real workers.

That an interrupted sleep's timer never fires and that a workflow interrupting itself stops
there are checked on the test clock in tests/kit/test_interrupts.py.
"""

from __future__ import annotations

import time

import pytest

from durable_celery import DurableInterruptedError, InvalidArgumentError
from tests.e2e import composition_workflows as cw
from tests.e2e.helpers import wait_until
from tests.support.counters import count


def _status(client, workflow_id: str) -> str:
    try:
        return client.get_handle(workflow_id).status()
    except Exception:  # noqa: BLE001 - not created yet
        return "absent"


# --- children ----------------------------------------------------------------------------------


def test_parent_awaits_children_returning_nothing_and_a_string(client, uid):
    handle = client.start(cw.parent_of_two, workflow_id=f"parent-{uid}")
    assert handle.result(timeout=30) == [None, "Hello, kid!"]
    kinds = [(h["seq"], h["kind"], h["name"], h["status"]) for h in handle.history()]
    assert kinds == [(1, "child", "child_returns_nothing", "completed"),
                     (2, "child", "child_greets", "completed")]
    from durable_celery.models import WorkflowExecution

    assert WorkflowExecution.objects.filter(parent_workflow_id=f"parent-{uid}").count() == 2


def test_fan_out_of_children_with_workflow_all(client, uid):
    names = [f"n{i}" for i in range(6)]
    handle = client.start(cw.fan_out_children, names, workflow_id=f"fan-{uid}")
    assert handle.result(timeout=40) == [f"Hello, {n}!" for n in names]
    assert [h["seq"] for h in handle.history()] == list(range(1, 7))


def test_start_child_returns_id_and_child_finishes_on_its_own(client, uid):
    key = f"ff-{uid}"
    handle = client.start(cw.fire_and_forget, "1s", key, workflow_id=f"ff-{uid}")
    child_id = handle.result(timeout=20)
    assert child_id.startswith("child_sleeps-")
    child = client.get_handle(child_id)
    assert child.status() in ("pending", "running")
    assert child.result(timeout=20) == "woke"
    assert count(key) == 1
    assert child.describe()["parent_workflow_id"] == f"ff-{uid}"
    assert handle.history()[0]["kind"] == "start"


def test_children_waiting_for_signals_through_their_handles(client, uid):
    ids = [f"kid-a-{uid}", f"kid-b-{uid}"]
    handle = client.start(cw.parent_of_waiting_children, f"sa-{uid}", f"sb-{uid}", ids,
                          workflow_id=f"waiters-{uid}")
    wait_until(lambda: all(_status(client, i) == "running" for i in ids), what="children")
    client.get_handle(ids[1]).signal(f"sb-{uid}", {"n": 2})
    client.get_handle(ids[0]).signal(f"sa-{uid}", {"n": 1})
    assert handle.result(timeout=20) == [{"n": 1}, {"n": 2}]


def test_lineage_three_levels_deep_and_through_a_parallel_group(client, uid):
    root, middle, leaf = f"root-{uid}", f"middle-{uid}", f"leaf-{uid}"
    handle = client.start(cw.lineage_root, middle, leaf, f"lin-{uid}", workflow_id=root)
    wait_until(lambda: _status(client, middle) == "completed", what="middle child")
    client.signal(f"lin-{uid}", "go")
    result = handle.result(timeout=20)
    assert result[1] == "go"
    assert result[0]["me"] == {"id": middle, "parent": root, "origin": root}
    assert result[0]["leaf"] == {"id": leaf, "parent": middle, "origin": root}
    assert client.get_handle(leaf).describe()["origin_workflow_id"] == root
    assert client.get_handle(middle).describe()["parent_workflow_id"] == root
    assert handle.describe()["parent_workflow_id"] is None


@pytest.mark.parametrize("kind, expected, code", [
    ("fatal", "DurableFatalError", 598),
    ("maxed", "DurableMaxedError", 597),
    ("timeout", "DurableTimeoutError", 596),
    ("plain", "DurableMaxedError", 597),
    ("retry", "DurableMaxedError", 597),
])
def test_child_failure_reaches_parent_as_typed_error(client, uid, kind, expected, code):
    handle = client.start(cw.parent_sees_child_error, kind, f"{kind} broke {uid}",
                          workflow_id=f"cerr-{kind}-{uid}")
    assert handle.result(timeout=30) == {"type": expected, "message": f"{kind} broke {uid}",
                                         "code": code}


def test_child_failure_returned_with_throw_on_error_false(client, uid):
    handle = client.start(cw.parent_returns_child_error, f"soft {uid}",
                          workflow_id=f"csoft-{uid}")
    assert handle.result(timeout=30) == {"type": "DurableFatalError", "message": f"soft {uid}"}


@pytest.mark.parametrize("how", ["exec", "start"])
def test_duplicate_child_id_fails_the_parent_call_quickly(client, uid, how):
    child_id = f"taken-{how}-{uid}"
    client.start(cw.child_waits, "never", workflow_id=child_id)
    started = time.monotonic()
    handle = client.start(cw.duplicate_child, child_id, how, workflow_id=f"dup-{how}-{uid}")
    outcome = handle.result(timeout=20)
    assert outcome["type"] == "DuplicateWorkflowError"
    assert child_id in outcome["message"]
    assert time.monotonic() - started < 15
    client.get_handle(child_id).interrupt()


def test_worker_killed_while_child_runs_parent_still_gets_result(client, uid, start_worker):
    queue = f"kids-{uid}"
    worker = start_worker([queue, f"{queue}-activity"])
    key = f"slowkid-{uid}"
    handle = client.start(cw.parent_of_slow_child, key, queue, workflow_id=f"pk-{uid}")
    wait_until(lambda: count(f"{key}-started") >= 1, what="slow activity start")
    worker.kill()
    start_worker([queue, f"{queue}-activity"])
    assert handle.result(timeout=60) == "slept 2.0"
    assert count(f"{key}-finished") >= 1


# --- hooks -------------------------------------------------------------------------------------


def test_exec_hook_round_trip(client, uid):
    handle = client.start(cw.review, f"doc-{uid}", workflow_id=f"review-{uid}")
    result = handle.result(timeout=30)
    assert result["doc"] == f"doc-{uid}" and result["verdict"] == f"Hello, doc-{uid}!"
    assert result["thread"].startswith("h")
    history = handle.history()
    assert [(h["dimension"], h["seq"], h["kind"]) for h in history if h["dimension"] == ""] == [
        ("", 1, "hook"), ("", 2, "wait")]
    thread_rows = [(h["seq"], h["kind"]) for h in history if h["dimension"] == result["thread"]]
    assert thread_rows == [(1, "activity"), (2, "entity"), (3, "entity"), (4, "signal")]
    assert handle.describe()["entity"] == {
        "reviews": [{"doc": f"doc-{uid}", "verdict": f"Hello, doc-{uid}!"}]}


def test_exec_hook_batch_with_three_hooks(client, uid):
    docs = [f"a-{uid}", f"b-{uid}", f"c-{uid}"]
    handle = client.start(cw.review_batch, docs, workflow_id=f"batch-{uid}")
    result = handle.result(timeout=40)
    assert sorted(result) == sorted(docs)
    assert all(result[d]["verdict"] == f"Hello, {d}!" for d in docs)
    reviews = handle.describe()["entity"]["reviews"]
    assert sorted(r["doc"] for r in reviews) == sorted(docs)  # three threads, no lost append
    main = [(h["seq"], h["kind"]) for h in handle.history() if h["dimension"] == ""]
    assert main == [(1, "hook"), (2, "hook"), (3, "hook"), (4, "wait"), (5, "wait"), (6, "wait")]


def test_hook_that_would_loop_forever_is_refused(client, uid):
    handle = client.start(cw.loops_into_itself, workflow_id=f"loop-{uid}")
    with pytest.raises(InvalidArgumentError, match="endless loop"):
        handle.result(timeout=20)


def test_hook_fires_exactly_once_across_replays(client, uid):
    key = f"hookonce-{uid}"
    handle = client.start(cw.fire_hook_then_wait, key, f"hk-{uid}", workflow_id=f"hk-{uid}")
    wait_until(lambda: count(key) == 1, what="hook run")
    client.signal(f"hk-{uid}", "done")
    assert handle.result(timeout=20) == "done"
    assert count(key) == 1


def test_client_hook_runs_inside_a_running_workflow(client, uid):
    handle = client.start(cw.waits_for_outside_hook, f"oh-{uid}", workflow_id=f"oh-{uid}")
    wait_until(lambda: handle.status() == "running", what="workflow start")
    hook_id = client.hook(workflow_id=f"oh-{uid}", workflow_name="outside_hook",
                          args=[f"oh-{uid}", "x"])
    assert handle.result(timeout=20) == {"from": "hook", "value": "x"}
    assert any(h["dimension"] == hook_id for h in handle.history())


# --- interrupts --------------------------------------------------------------------------------


def test_interrupt_descend_reaches_children_and_grandchild(client, uid):
    ids = [f"c1-{uid}", f"c2-{uid}"]
    grandchild = f"gc-{uid}"
    handle = client.start(cw.parent_of_sleepers, ids, grandchild, workflow_id=f"tree-{uid}")
    wait_until(lambda: _status(client, grandchild) == "running", what="grandchild")
    interrupted = handle.interrupt(reason="shut down", descend=True)
    assert sorted(interrupted) == sorted([f"tree-{uid}", *ids, grandchild])
    for workflow_id in [f"tree-{uid}", *ids, grandchild]:
        assert client.get_handle(workflow_id).status() == "interrupted"
    with pytest.raises(DurableInterruptedError) as raised:
        handle.result(timeout=5)
    assert raised.value.code == 410 and raised.value.message == "shut down"


def test_activity_finishing_after_interrupt_changes_nothing(client, uid):
    key = f"late-{uid}"
    handle = client.start(cw.slow_then_more, key, workflow_id=f"late-{uid}")
    wait_until(lambda: count(f"{key}-started") == 1, what="slow activity start")
    handle.interrupt()
    wait_until(lambda: count(f"{key}-finished") == 1, what="slow activity end")
    time.sleep(1.0)
    assert handle.status() == "interrupted"
    assert [h["status"] for h in handle.history()] == ["cancelled"]
    assert count(f"{key}-after") == 0


def test_workflow_interrupts_its_child_once(client, uid):
    child_id = f"sup-kid-{uid}"
    handle = client.start(cw.supervisor, child_id, f"supkey-{uid}", workflow_id=f"sup-{uid}")
    assert handle.result(timeout=20) == {"child": child_id, "interrupted": [child_id]}
    assert client.get_handle(child_id).status() == "interrupted"
    kinds = [h["kind"] for h in handle.history()]
    assert kinds == ["start", "sleep", "interrupt"]


def test_child_addressed_by_entity(client, uid):
    handle = client.start(cw.parent_by_entity, f"o-{uid}", f"order-{uid}",
                          workflow_id=f"ent-{uid}")
    assert handle.result(timeout=20) == {"order": f"o-{uid}", "task_queue": "orders",
                                         "name": "orders"}
    child = client.get_handle(f"order-{uid}").describe()
    assert child["entity_type"] == "orders" and child["parent_workflow_id"] == f"ent-{uid}"


def test_failed_hook_is_retried_by_its_policy(client, uid):
    from durable_celery.models import WorkflowThread

    key = f"flakyhook-{uid}"
    handle = client.start(cw.review_with_flaky_hook, key, 2, 3, workflow_id=f"fh-{uid}")
    assert handle.result(timeout=30) == "reviewed"
    assert count(key) == 3
    thread = WorkflowThread.objects.get(execution__workflow_id=f"fh-{uid}")
    assert (thread.status, thread.attempt) == ("completed", 3)


def test_hook_failing_for_good_reaches_the_waiting_exec_hook(client, uid):
    key = f"deadhook-{uid}"
    handle = client.start(cw.review_with_failing_hook, key, workflow_id=f"dh-{uid}")
    assert handle.result(timeout=30) == {"type": "DurableMaxedError",
                                         "message": "hook failure 2"}
    assert count(key) == 2  # the first run and its one retry


# --- arguments that do not fit ----------------------------------------------------------------


def test_exec_child_with_the_wrong_argument_count_fails_the_parent_at_once(client, uid):
    # Before: exec_child's plain TypeError failed the parent's step, retried for hours.
    from durable_celery import ArgumentMismatchError
    from durable_celery.models import WorkflowExecution

    handle = client.start(cw.parent_of_wrongly_called_child, workflow_id=f"wrong-kid-{uid}")
    with pytest.raises(ArgumentMismatchError) as info:
        handle.result(timeout=15)
    error = info.value
    assert isinstance(error, TypeError) and error.code == 598
    assert "workflow 'child_greets' cannot be called with 3 argument(s)" in error.message
    assert "too many positional arguments" in error.message
    assert "its signature is child_greets(name: 'str')" in error.message
    described = handle.describe()
    assert (described["status"], described["attempt"]) == ("failed", 1)
    assert described["error"]["class"] == "ArgumentMismatchError"
    assert handle.history() == []  # nothing recorded: no child was started
    assert not WorkflowExecution.objects.filter(parent_workflow_id=f"wrong-kid-{uid}").exists()


def test_hook_with_the_wrong_argument_count_fails_at_once_and_reaches_exec_hook(client, uid):
    # Before: the hook thread failed with a plain TypeError, retried up to 50 times while
    # exec_hook waited.
    from durable_celery.models import WorkflowThread

    key = f"wronghook-{uid}"
    handle = client.start(cw.review_with_wrongly_called_hook, key, workflow_id=f"wh-{uid}")
    result = handle.result(timeout=15)
    assert result["type"] == "ArgumentMismatchError"
    assert "workflow 'flaky_reviewer' cannot be called with 2 argument(s) (the last is the " \
        "reply address exec_hook adds)" in result["message"]
    assert "missing a required argument: 'info'" in result["message"]
    assert count(key) == 0  # the hook function never ran
    thread = WorkflowThread.objects.get(execution__workflow_id=f"wh-{uid}")
    assert (thread.status, thread.attempt) == ("failed", 1)
    assert thread.error["class"] == "ArgumentMismatchError" and thread.error["code"] == 598
