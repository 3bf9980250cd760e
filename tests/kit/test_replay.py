"""Replay checking: current code against exported histories, without a database.

Runs are recorded by the embedded worker with the registered (first) version of a workflow,
exported as the CLI exports them (``export_run`` as JSON text), then replayed against changed
versions of the function.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from durable_celery import InvalidArgumentError, NonDeterminismError, workflow
from durable_celery.store.executions import export_run, get_execution
from durable_celery.testing import replay
from tests.kit import workflows as kw


def _export(workflow_id: str) -> dict[str, Any]:
    """What ``manage.py durable export`` prints for the run, read back."""
    return json.loads(json.dumps(export_run(get_execution("durable", workflow_id))))


@pytest.fixture
def completed_order(durable_env, uid) -> dict[str, Any]:
    handle = durable_env.start(kw.kit_order, uid, workflow_id=f"done-{uid}")
    durable_env.signal(f"approve-{uid}", "yes")
    durable_env.result(handle)
    return _export(handle.workflow_id)


@pytest.fixture
def sleeping_order(durable_env, uid) -> dict[str, Any]:
    """A run in flight: charged, now sleeping its 30 days."""
    handle = durable_env.start(kw.kit_order, uid, workflow_id=f"flight-{uid}")
    return _export(handle.workflow_id)


# -- versions of kit_order, as a later deploy might change it -------------------------------


async def order_charges_something_else(key: str) -> dict[str, Any]:
    acts = workflow.proxy_activities()
    receipt = await acts.kit_refund(key)  # was kit_charge
    await workflow.sleep_for("30 days")
    return {"receipt": receipt, "decision": await workflow.wait_for(f"approve-{key}")}


async def order_sleeps_first(key: str) -> dict[str, Any]:
    acts = workflow.proxy_activities()
    await workflow.sleep_for("30 days")  # moved before the charge
    receipt = await acts.kit_charge(key, 9.99)
    return {"receipt": receipt, "decision": await workflow.wait_for(f"approve-{key}")}


async def order_refunds_at_the_end(key: str) -> dict[str, Any]:
    acts = workflow.proxy_activities()
    receipt = await acts.kit_charge(key, 9.99)
    slept = await workflow.sleep_for("30 days")
    decision = await workflow.wait_for(f"approve-{key}")
    now = workflow.now().isoformat()
    return {"receipt": receipt, "slept": slept, "decision": decision, "decided_at": now,
            "refund": await acts.kit_refund(key)}  # a call added after the last one


async def order_skips_the_approval(key: str) -> dict[str, Any]:
    acts = workflow.proxy_activities()
    receipt = await acts.kit_charge(key, 9.99)
    await workflow.sleep_for("30 days")
    return {"receipt": receipt}  # no wait any more


async def racing_one_after_the_other(slow: str, fast: str) -> list[Any]:
    first = await workflow.sleep_for(slow)  # the recorded run slept both at once
    return [first, await workflow.sleep_for(fast)]


# -- passing ------------------------------------------------------------------------------------


def test_unchanged_code_fits_a_completed_run(completed_order, django_db_blocker):
    with django_db_blocker.block():  # replay reads no database
        [result] = replay(kw.kit_order, completed_order)
    assert (result.workflow_id, result.run_id) == (completed_order["workflow_id"],
                                                   completed_order["run_id"])
    assert (result.recorded_status, result.outcome, result.positions) == ("completed",
                                                                          "completed", 4)
    assert result.next_calls == []


def test_a_history_that_ends_mid_run_fits_and_reports_the_next_calls(sleeping_order, uid):
    assert sleeping_order["status"] == "running"
    [result] = replay(kw.kit_order, sleeping_order)
    assert (result.outcome, result.positions) == ("suspended", 2)
    assert result.next_calls == []  # it waits for the recorded sleep

    # an added call after the last recorded position is what the next step will do: fine
    [later] = replay(order_refunds_at_the_end, sleeping_order)
    assert later.outcome == "suspended"


def test_a_run_whose_outcome_arrived_unseen_replays_into_its_next_step(durable_env, uid):
    handle = durable_env.start(kw.kit_order, uid, workflow_id=f"unseen-{uid}")
    export = _export(handle.workflow_id)
    sleep = export["history"][1]
    sleep.update(status="completed", result=30 * 86400.0, observed_step=None)  # timer fired
    [result] = replay(kw.kit_order, export)
    assert result.outcome == "suspended"
    assert result.next_calls == [(3, "wait", f"approve-{uid}")]


# -- diverging ----------------------------------------------------------------------------------


def test_a_changed_activity_fails_naming_position_recorded_and_current_call(completed_order):
    with pytest.raises(NonDeterminismError) as info:
        replay(order_charges_something_else, completed_order)
    message = info.value.message
    assert "position 1" in message
    assert "history recorded activity 'kit_charge'" in message
    assert "the code now calls activity 'kit_refund'" in message
    assert completed_order["run_id"] in message and completed_order["workflow_id"] in message


def test_a_moved_call_fails_on_a_run_in_flight(sleeping_order):
    with pytest.raises(NonDeterminismError,
                       match="position 1.*recorded activity 'kit_charge'.*calls sleep ''"):
        replay(order_sleeps_first, sleeping_order)


def test_a_call_added_after_a_completed_run_fails(completed_order):
    with pytest.raises(NonDeterminismError) as info:
        replay(order_refunds_at_the_end, completed_order)
    assert ("position 5: history ends with the workflow completed after position 4, but the "
            "code now calls activity 'kit_refund'") in info.value.message


def test_code_that_returns_before_the_recorded_calls_fails(completed_order):
    with pytest.raises(NonDeterminismError) as info:
        replay(order_skips_the_approval, completed_order)
    assert ("position 3: history recorded wait 'approve-" in info.value.message
            and "but the code returns after position 2 and never calls it" in info.value.message)


def test_code_that_waits_before_a_recorded_call_fails(durable_env, uid):
    handle = durable_env.start(kw.kit_racing, "7 days", "1 hour", workflow_id=f"gather-{uid}")
    export = _export(handle.workflow_id)  # both sleeps scheduled together
    with pytest.raises(NonDeterminismError) as info:
        replay(racing_one_after_the_other, export)
    assert ("position 2: history recorded sleep '', but the code waits for position 1 after "
            "position 1 and never calls it") in info.value.message


# -- many runs, files, directories --------------------------------------------------------------


def test_a_directory_of_exports_checks_every_run(completed_order, sleeping_order, tmp_path):
    (tmp_path / "done.json").write_text(json.dumps(completed_order))
    (tmp_path / "flight.json").write_text(json.dumps(sleeping_order))
    (tmp_path / "notes.txt").write_text("not an export")

    results = replay(None, tmp_path)  # each export's workflow found by its recorded name
    assert [r.workflow_id for r in results] == [completed_order["workflow_id"],
                                                sleeping_order["workflow_id"]]
    assert [r.source for r in results] == [str(tmp_path / "done.json"),
                                           str(tmp_path / "flight.json")]
    assert replay(kw.kit_order, [str(tmp_path / "done.json"), json.dumps(sleeping_order)])

    with pytest.raises(NonDeterminismError) as info:
        replay(order_sleeps_first, tmp_path)
    message = info.value.message
    assert message.startswith("2 of 2 runs do not fit the current code")
    assert "done.json" in message and "flight.json" in message
    assert [run["workflow_id"] for run in info.value.details["runs"]] == [
        completed_order["workflow_id"], sleeping_order["workflow_id"]]


def test_what_is_not_an_export_is_refused_clearly(completed_order, tmp_path):
    with pytest.raises(InvalidArgumentError, match="format 1 .*format is 2"):
        replay(kw.kit_order, {**completed_order, "format": 2})
    with pytest.raises(InvalidArgumentError, match="lacks history"):
        replay(kw.kit_order, {k: v for k, v in completed_order.items() if k != "history"})
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        replay(kw.kit_order, str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="broken.json: not JSON"):
        replay(kw.kit_order, tmp_path / "broken.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="no run export found"):
        replay(kw.kit_order, tmp_path / "empty")
    with pytest.raises(InvalidArgumentError, match="is not a run export"):
        replay(kw.kit_order, 42)  # type: ignore[arg-type]
