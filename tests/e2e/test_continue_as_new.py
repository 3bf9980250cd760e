"""``workflow.continue_as_new`` (a polling loop whose history stays small and whose per-step cost
stays flat) and ``workflow.child_result``, against real workers and the real store."""

from __future__ import annotations

import pytest

from tests.e2e import lifecycle_workflows as lw
from tests.e2e.helpers import capture_publishes, wait_until
from tests.support.counters import count


def _runs(workflow_id: str) -> list:
    from durable_celery.models import WorkflowExecution

    return list(WorkflowExecution.objects.filter(namespace="durable", workflow_id=workflow_id)
                .order_by("id"))


def _assert_chain(runs: list, limit: int) -> None:
    """One run per round, each linked to the one before, all but the last continued."""
    assert [run.args[-2] for run in runs] == list(range(limit + 1))
    assert runs[0].previous_run_id is None
    for before, after in zip(runs, runs[1:], strict=False):
        assert after.previous_run_id == before.run_id
        assert before.status == "continued" and before.completed_at is not None
    assert runs[-1].status == "completed" and runs[-1].result == limit


def test_a_polling_loop_continues_as_new_200_times_with_small_histories(client, uid):
    from durable_celery.models import HistoryEvent

    limit = 200
    handle = client.start(lw.poller, uid, 0, limit, workflow_id=f"poll-{uid}",
                          search={"job": uid})
    first_run = handle.run_id
    assert handle.result(timeout=240) == limit  # follows the chain from the run it started
    assert handle.run_id == first_run and handle.status() == "continued"
    runs = _runs(handle.workflow_id)
    assert len(runs) == limit + 1
    _assert_chain(runs, limit)
    sizes: dict[int, int] = {}
    for execution_id in HistoryEvent.objects.filter(execution__in=runs) \
            .values_list("execution_id", flat=True):
        sizes[execution_id] = sizes.get(execution_id, 0) + 1
    assert set(sizes.values()) == {1}, "every run holds one poll, whatever round it is"
    assert all(count(f"{uid}-poll-{n}") == 1 for n in range(limit + 1))
    assert [h.run_id for h in client.list_runs(handle.workflow_id)][-1] == first_run
    # the search fields move with the chain: the workflow is found once, at its last run
    (found,) = client.search(job=uid)
    assert found.run_id == runs[-1].run_id and found.result(timeout=1) == limit


def test_per_step_cost_stays_flat_across_continues(client, uid):
    """Each round is one step of one run; the statements a step issues are the same at round
    5 and at round 60 (a step never reads earlier runs)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from durable_celery.models import WorkflowExecution
    from durable_celery.store.steps import run_replay_step
    from durable_celery.transport.worker import current_worker_id

    limit = 60
    queue = f"idle-{uid}"  # no worker consumes it: this test takes every step itself
    handle = client.start(lw.stamping_poller, 0, limit, workflow_id=f"flat-{uid}",
                          task_queue=queue)
    me = current_worker_id()
    statements: list[int] = []
    with capture_publishes(send=False):
        for _ in range(limit + 1):
            run = WorkflowExecution.objects.get(workflow_id=handle.workflow_id,
                                                status__in=["pending", "running"])
            with CaptureQueriesContext(connection) as queries:
                run_replay_step(run.pk, me)
            statements.append(len(queries))
    assert handle.result(timeout=5) == limit
    runs = _runs(handle.workflow_id)
    _assert_chain(runs, limit)
    assert {run.history.count() for run in runs} == {2}  # now + enrich, in every round
    assert len(set(statements[:-1])) == 1, statements  # every continuing step alike
    assert statements[-1] <= statements[1], statements  # the last one only completes


def test_a_parent_gets_the_last_result_of_a_child_that_continued(client, uid):
    parent = client.start(lw.parent_of_poller, uid, 3, workflow_id=uid)
    assert parent.result(timeout=60) == ["child returned", 3]
    assert [run.status for run in _runs(f"{uid}-child")] == ["continued"] * 3 + ["completed"]
    assert all(run.parent_workflow_id == uid for run in _runs(f"{uid}-child"))


@pytest.mark.transport
def test_a_chain_survives_a_killed_worker_without_gaps_or_doubles(client, uid, start_worker):
    queue = f"chain-{uid}"
    limit = 30
    worker = start_worker([queue, f"{queue}-activity"])
    handle = client.start(lw.poller, uid, 0, limit, workflow_id=f"chain-{uid}",
                          task_queue=queue)
    wait_until(lambda: len(_runs(handle.workflow_id)) >= 8, timeout=60, what="a few rounds")
    worker.kill()
    start_worker([queue, f"{queue}-activity"])
    assert handle.result(timeout=90) == limit
    runs = _runs(handle.workflow_id)
    assert len(runs) == limit + 1  # no round lost, no round started twice
    _assert_chain(runs, limit)
    assert all(count(f"{uid}-poll-{n}") >= 1 for n in range(limit + 1))


def test_child_result_collects_children_started_earlier(client, uid):
    handle = client.start(lw.collect_children, uid, workflow_id=uid)
    quick, failing = client.get_handle(f"{uid}-quick"), client.get_handle(f"{uid}-failing")
    wait_until(lambda: _status(quick) == "completed" and _status(failing) == "failed",
               timeout=30, what="the quick child to finish and the failing one to fail")
    client.signal(f"collect-{uid}", True)
    # the parent now waits on the child that is still waiting
    wait_until(lambda: any(r["kind"] == "child_result" and r["status"] == "scheduled"
                           for r in handle.history()), timeout=30, what="child_result to wait")
    client.signal(f"release-{uid}-waiting", True)
    assert handle.result(timeout=30) == [
        f"echo {uid}-quick", f"echo {uid}-waiting", ["DurableMaxedError", 597],
        ["WorkflowNotFoundError", None], f"echo {uid}-late"]
    kinds = [(r["kind"], r["name"], r["status"]) for r in handle.history()
             if r["kind"] == "child_result"]
    assert kinds == [("child_result", f"{uid}-quick", "completed"),
                     ("child_result", f"{uid}-waiting", "completed"),
                     ("child_result", f"{uid}-failing", "failed"),
                     ("child_result", f"{uid}-nobody", "failed"),
                     ("child_result", f"{uid}-late", "completed")]
    assert count(f"{uid}-quick-ran") == 1 and count(f"{uid}-late-ran") == 1


def _status(handle) -> str:
    from durable_celery import WorkflowNotFoundError

    try:
        return handle.status()
    except WorkflowNotFoundError:
        return "absent"
