"""What a team porting from Temporal or DBOS needs first, end to end on real workers:
deterministic ``now()``/``uuid4()``, dataclass and pydantic payloads, bound-method activities,
and arguments checked at the start."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

import pytest

from durable_celery import NotJSONSerializableError, PayloadConversionError
from tests.e2e import port_workflows as pw
from tests.e2e.helpers import history_rows, wait_until
from tests.support.counters import count


def _stored(workflow_id: str) -> bool:
    from durable_celery.models import WorkflowExecution

    return WorkflowExecution.objects.filter(workflow_id=workflow_id).exists()


# --- now() and uuid4() --------------------------------------------------------------------------


def _by_round(key: str) -> dict[int, set[tuple[str, str, int]]]:
    """What each replay saw at each round: ``{round: {(time, uuid, version), ...}}``."""
    seen: dict[int, set[tuple[str, str, int]]] = defaultdict(set)
    for index, moment, ident, version in pw.observations(key):
        seen[index].add((moment, ident, version))
    return seen


def test_now_and_uuid4_are_the_same_on_every_replay_and_differ_between_runs(client, uid,
                                                                          start_worker):
    rounds = 3
    queue = f"clock-{uid}"  # a worker that keeps no run in memory: every step replays
    start_worker([queue, f"{queue}-activity"], env={"DURABLE_WORKFLOW_CACHE_SIZE": "0"})
    one = client.start(pw.clock_and_ids, f"{uid}-a", rounds, workflow_id=f"clock-a-{uid}",
                       task_queue=queue)
    two = client.start(pw.clock_and_ids, f"{uid}-b", rounds, workflow_id=f"clock-b-{uid}",
                       task_queue=queue)
    first, second = one.result(timeout=30), two.result(timeout=30)
    for key, result in ((f"{uid}-a", first), (f"{uid}-b", second)):
        observed = pw.observations(key)
        # Round 0 ran in the first step and was replayed after each of the 3 activities.
        assert sum(1 for o in observed if o[0] == 0) >= rounds
        per_round = _by_round(key)
        assert sorted(per_round) == list(range(rounds))
        for index, values in per_round.items():
            assert len(values) == 1, f"round {index} saw different values on replay: {values}"
            ((moment, ident, version),) = values
            assert [moment, ident] == result[index] and version == 4
        assert count(f"{key}-activity") == rounds  # replays ran no activity twice
    times = [datetime.fromisoformat(moment) for moment, _ in first]
    assert times == sorted(times) and all(t.utcoffset().total_seconds() == 0 for t in times)
    ids = [uuid.UUID(i) for _, i in first + second]
    assert len(set(ids)) == 2 * rounds, "two runs shared an id"
    history = one.history()
    assert [h["kind"] for h in history] == ["now", "uuid4", "activity"] * rounds
    assert [h["result"] for h in history if h["kind"] == "now"] == [m for m, _ in first]
    assert [h["result"] for h in history if h["kind"] == "uuid4"] == [i for _, i in first]
    # an instant call's row is created and completed at the step's time, never completed first
    assert all(h["completed_at"] >= h["created_at"] for h in history + two.history())


def test_a_new_run_of_the_same_workflow_id_gets_new_ids(client, uid):
    workflow_id = f"clock-again-{uid}"
    first = client.start(pw.clock_and_ids, f"{uid}-1", 1, workflow_id=workflow_id)
    first_ids = {i for _, i in first.result(timeout=30)}
    second = client.start(pw.clock_and_ids, f"{uid}-2", 1, workflow_id=workflow_id)
    second_ids = {i for _, i in second.result(timeout=30)}
    assert len(first_ids) == len(second_ids) == 1 and not first_ids & second_ids


@pytest.mark.transport
def test_values_recorded_before_a_worker_is_killed_survive_it(client, uid, start_worker):
    queue = f"clock-crash-{uid}"
    worker = start_worker([queue, f"{queue}-activity"])
    handle = client.start(pw.clock_around_slow, uid, 1.5, workflow_id=f"clock-crash-{uid}",
                          task_queue=queue)
    wait_until(lambda: count(f"{uid}-started") == 1, timeout=30, what="the slow activity")
    worker.kill()
    assert count(f"{uid}-finished") == 0, "the kill came too late to interrupt the activity"
    start_worker([queue, f"{queue}-activity"])
    before, after = handle.result(timeout=45)
    observed = pw.observations(uid)
    befores = {tuple(o[1:]) for o in observed if o[0] == "before"}
    assert befores == {tuple(before)}, "a replay after the crash saw other values"
    assert sum(1 for o in observed if o[0] == "before") >= 2  # seen by both workers' steps
    assert {tuple(o[1:]) for o in observed if o[0] == "after"} == {tuple(after)}
    assert before[1] != after[1] and before[0] <= after[0]
    assert history_rows(handle) == [(1, "now", "", "completed"), (2, "uuid4", "", "completed"),
                                    (3, "activity", "slow", "completed"),
                                    (4, "now", "", "completed"), (5, "uuid4", "", "completed")]


# --- payloads beyond JSON -----------------------------------------------------------------------


def test_dataclasses_and_pydantic_models_travel_and_are_rebuilt(client, uid):
    shipment = pw.Shipment(f"s-{uid}", [pw.LineItem("a", 2), pw.LineItem("b", 1)])
    handle = client.start(pw.ship, shipment, workflow_id=f"ship-{uid}")
    report = handle.result(timeout=40)
    # handle.result() rebuilds the workflow's declared result type in this process.
    assert isinstance(report, pw.ShipmentReport)
    assert report.picked == [pw.PickedLine("a", "north-a", 2), pw.PickedLine("b", "north-b", 1)]
    assert isinstance(report.invoice, pw.Invoice)
    assert report.invoice.quotes == [pw.Quote(sku="a", totalCents=500),
                                     pw.Quote(sku="b", totalCents=250)]
    # Inside the workers, every value had its declared type: workflow argument, activity
    # arguments and results, child arguments and the child's result.
    assert report.seen_types == ["Shipment", "LineItem", "LineItem", "PickedLine", "PickedLine",
                                 "Invoice"]
    assert report.invoice.seen_types == ["PickedLine", "PickedLine", "Quote", "Quote"]
    # What is stored is plain JSON.
    described = handle.describe()
    assert described["result"]["invoice"]["quotes"][0] == {
        "sku": "a", "totalCents": 500, "currency": "EUR"}
    (pick, child) = handle.history()
    assert pick["result"] == [{"sku": "a", "bin": "north-a", "quantity": 2},
                              {"sku": "b", "bin": "north-b", "quantity": 1}]
    assert child["kind"] == "child" and child["status"] == "completed"
    from durable_celery.models import WorkflowExecution

    stored = WorkflowExecution.objects.get(workflow_id=f"ship-{uid}")
    assert stored.args == [{"shipment_id": f"s-{uid}", "lines": [
        {"sku": "a", "quantity": 2}, {"sku": "b", "quantity": 1}], "express": False}]


def test_a_workflow_argument_given_as_plain_json_is_rebuilt_too(client, uid):
    as_json = {"shipment_id": f"j-{uid}", "lines": [{"sku": "a", "quantity": 1}]}
    report = client.start(pw.ship, as_json, workflow_id=f"ship-json-{uid}").result(timeout=40)
    assert report.seen_types[:2] == ["Shipment", "LineItem"]
    assert report.picked == [pw.PickedLine("a", "north-a", 1)]


def test_a_client_without_the_definition_gets_the_plain_json(client, uid):
    from durable_celery import registry

    handle = client.start(pw.ship, pw.Shipment(f"n-{uid}", []), workflow_id=f"ship-name-{uid}")
    assert isinstance(handle.result(timeout=40), pw.ShipmentReport)
    definition = registry._workflows.pop("ship")  # as in a process that never imported it
    try:
        plain = client.get_handle(f"ship-name-{uid}").result(timeout=5)
    finally:
        registry._workflows["ship"] = definition
    assert isinstance(plain, dict) and plain["shipment_id"] == f"n-{uid}"


def test_stored_arguments_that_do_not_fit_fail_the_run_at_once(client, uid):
    from durable_celery import registry

    definition = registry._workflows.pop("ship")  # a client that only knows the name
    try:
        handle = client.start("ship", {"shipment_id": "x"}, task_queue="durable",
                              workflow_id=f"misfit-worker-{uid}")
    finally:
        registry._workflows["ship"] = definition
    with pytest.raises(PayloadConversionError) as failed:
        handle.result(timeout=30)
    assert "argument 'shipment' of workflow 'ship'" in failed.value.message
    assert "lines" in failed.value.message  # the missing field is named
    assert handle.describe()["error"]["code"] == 598  # fatal: not retried
    assert handle.history() == []


def test_non_convertible_values_are_refused_at_the_call_and_nothing_is_stored(client, uid):
    with pytest.raises(TypeError) as caught:
        client.start(pw.ship, pw.Shipment(f"x-{uid}", [pw.Wrapper(pw.Opaque())]),  # type: ignore[list-item]
                     workflow_id=f"opaque-{uid}")
    assert isinstance(caught.value, NotJSONSerializableError)
    assert "arguments of workflow 'ship'" in str(caught.value)
    assert not _stored(f"opaque-{uid}")
    # JSON, but not what the parameter's dataclass needs: refused before storing, too.
    with pytest.raises(TypeError) as caught:
        client.start(pw.ship, {"shipment_id": "x", "lines": [{"sku": "a"}]},
                     workflow_id=f"misfit-{uid}")
    assert isinstance(caught.value, PayloadConversionError)
    assert "argument 'shipment' of workflow 'ship'" in str(caught.value)
    assert "quantity" in str(caught.value)
    assert not _stored(f"misfit-{uid}")
    # Inside a workflow, an activity argument that is no JSON fails the run, recording no call.
    handle = client.start(pw.opaque_activity_arg, workflow_id=f"opaque-act-{uid}")
    with pytest.raises(NotJSONSerializableError) as failed:
        handle.result(timeout=30)
    assert "arguments of activity 'pick_lines'" in failed.value.message
    assert handle.history() == []


# --- bound-method activities --------------------------------------------------------------------


def test_a_bound_method_with_state_runs_as_an_activity(client, uid):
    counter = f"{uid}-locate"
    handle = client.start(pw.locate_all, ["a", "b", "zz"], counter,
                          workflow_id=f"locate-{uid}")
    found = handle.result(timeout=30)
    assert [(f["warehouse"], f["bin"]) for f in found] == [
        ("north", "A-01"), ("north", "B-07"), ("north", "overflow")]
    # Each call went to the method of the instance living in a worker process, which kept
    # counting across calls (a prefork worker has several such processes, one instance each).
    by_process: dict[int, list[int]] = defaultdict(list)
    for f in found:
        by_process[f["process"]].append(f["lookups_so_far"])
    assert all(n == sorted(set(n)) and n[0] >= 1 for n in by_process.values()), by_process
    assert count(counter) == 3
    assert [h["name"] for h in handle.history()] == ["locate_bin"] * 3
    assert pw.locate_bin.celery_task.name == "durable_celery.activity.payments.locate_bin"


# --- arguments checked at the start -------------------------------------------------------------


@pytest.mark.parametrize("how", ["client", "definition.start", "definition.delay", "by-name"])
def test_wrong_argument_count_is_refused_at_the_start(client, uid, how):
    from durable_celery.models import WorkflowExecution

    workflow_id = f"argc-{how}-{uid}"
    rows_before = WorkflowExecution.objects.filter(workflow_name="clock_and_ids").count()
    with pytest.raises(TypeError) as caught:
        if how == "client":
            client.start(pw.clock_and_ids, "only-one", workflow_id=workflow_id)
        elif how == "definition.start":
            pw.clock_and_ids.start("k", 1, "extra", workflow_id=workflow_id)
        elif how == "definition.delay":
            pw.clock_and_ids.delay()
        else:
            client.start("clock_and_ids", "k", 1, 2, 3, workflow_id=workflow_id)
    message = str(caught.value)
    assert "workflow 'clock_and_ids'" in message
    assert "argument" in message and "(key: 'str', rounds: 'int')" in message
    assert not _stored(workflow_id)
    assert WorkflowExecution.objects.filter(workflow_name="clock_and_ids").count() == rows_before


def test_a_child_with_wrong_arguments_is_refused_at_the_call(client, uid):
    child_id = f"bad-child-{uid}"
    handle = client.start(pw.child_with_wrong_args, child_id, workflow_id=f"bad-parent-{uid}")
    result = handle.result(timeout=30)
    assert result.startswith("refused: workflow 'price_shipment' cannot be called")
    assert "missing a required argument: 'picked'" in result
    assert handle.history() == []
    assert not _stored(child_id)
