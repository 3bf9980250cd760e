"""Cancellation, continue-as-new, patches and child_result in the pure engine: every scenario is
driven twice — replayed from history at each step, and kept in memory between steps — and both
must decide the same, step by step; a replay of the final history must reach the same end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from durable_celery import workflow
from durable_celery.engine import StepOutcome, StepStatus
from durable_celery.errors import (
    ContinueAsNewError,
    DurableInterruptedError,
    DurableMaxedError,
    InvalidArgumentError,
    NonDeterminismError,
    did_interrupt,
)

from .engine_sim import Sim, record, run_step

MAXED = {"class": "DurableMaxedError", "type": "KeyError", "message": "boom", "code": 597}


def acts() -> Any:
    return workflow.proxy_activities()


def _summary(outcome: StepOutcome) -> tuple[Any, ...]:
    return (outcome.status, [(c.seq, c.kind, c.name) for c in outcome.commands],
            outcome.result, outcome.cancelled,
            type(outcome.error).__name__ if outcome.error else None)


class StartsChildren:
    """Storage's side of ``start_child`` in these tests: the child's id is the outcome."""

    def perform(self, kind: str, operation: str, spec: dict[str, Any]) -> Any:
        assert kind == "start", kind
        return spec["workflow_id"]


def both_ways(function: Callable[..., Any], script: Callable[[Sim], None],
              args: tuple[Any, ...] = ()) -> Sim:
    """Run ``script`` on a replaying Sim, on a Sim that keeps the run in memory, and on Sims
    whose steps alternate between two and three processes that each keep a run (catching up on
    the steps they missed); assert they decided the same at every step and that replaying the
    final history agrees. Returns the replaying Sim."""
    port = StartsChildren()
    replayed, *others = [Sim(function, args, port=port),
                         Sim(function, args, keep=True, port=port),
                         Sim(function, args, keep=True, port=port, processes=2),
                         Sim(function, args, keep=True, port=port, processes=3)]
    for sim in [replayed, *others]:
        script(sim)
    for kept in others:
        kept.close()
        assert [_summary(o) for o in replayed.outcomes] == [_summary(o) for o in kept.outcomes]
        assert replayed.records == kept.records
    final = replayed.replay()
    last = replayed.outcomes[-1]
    assert (final.status, final.result, final.commands) == (last.status, last.result, [])
    return replayed


# -- cancel ----------------------------------------------------------------------------------


async def cleanup_flow() -> Any:
    a = acts()
    try:
        await a.work()
    finally:
        await a.cleanup()
    return "finished"


def test_cancel_raises_at_the_pending_call_and_cleanup_runs_normally() -> None:
    def script(sim: Sim) -> None:
        assert sim.step().status == StepStatus.SUSPENDED
        sim.cancel("operator said stop")
        second = sim.step()
        assert second.status == StepStatus.SUSPENDED
        assert [(c.seq, c.name) for c in second.commands] == [(2, "cleanup")]
        assert second.cancelled == [1]
        sim.complete("cleanup", "cleaned")
        third = sim.step()
        assert third.status == StepStatus.CANCELLED and third.cancelled == []
        assert isinstance(third.error, DurableInterruptedError)
        assert third.error.type == "CancelledError"
        assert "operator said stop" in third.error.message

    sim = both_ways(cleanup_flow, script)
    assert [(r.seq, r.kind, r.name, r.status) for r in sorted(sim.records.values(),
                                                            key=lambda r: r.seq)] == [
        (0, "cancel", "", "completed"), (1, "activity", "work", "cancelled"),
        (2, "activity", "cleanup", "completed")]


def test_a_workflow_that_handles_the_cancellation_completes_with_its_value() -> None:
    async def flow() -> Any:
        try:
            await workflow.wait_for("never")
        except asyncio.CancelledError as cancelled:
            done = await acts().undo()
            return ["undone", done, str(cancelled)]
        return "not cancelled"

    def script(sim: Sim) -> None:
        sim.step()
        sim.cancel("changed my mind")
        assert [c.name for c in sim.step().commands] == ["undo"]
        sim.complete("undo", 7)
        outcome = sim.step()
        assert (outcome.status, outcome.result) == (StepStatus.COMPLETED,
                                                    ["undone", 7, "changed my mind"])

    both_ways(flow, script)


def test_outcomes_of_the_cancelling_step_arrive_before_the_cancellation() -> None:
    async def flow() -> Any:
        a = acts()
        first, second = a.first(), a.second()
        got: list[Any] = []
        try:
            got.append(await first)
            got.append(await second)
        except asyncio.CancelledError:
            got.append("cancelled")
        return got

    def script(sim: Sim) -> None:
        sim.step()
        sim.complete("first", "F")
        sim.cancel()
        outcome = sim.step()
        assert (outcome.status, outcome.result, outcome.cancelled) == (
            StepStatus.COMPLETED, ["F", "cancelled"], [2])

    both_ways(flow, script)


def test_an_outcome_after_the_cancellation_is_ignored_on_replay_too() -> None:
    async def flow() -> Any:
        a = acts()
        try:
            await a.slow()
        except asyncio.CancelledError:
            return await a.compensate()
        return "slow won"

    def script(sim: Sim) -> None:
        sim.step()
        sim.cancel()
        assert sim.step().cancelled == [1]
        # the activity finished anyway; storage refuses a cancelled call's outcome, but even a
        # recorded one must not reach the workflow
        sim.records[1] = record(1, "activity", "slow", result="late", observed_step=None)
        sim.complete("compensate", "C")
        assert (sim.step().status, sim.outcomes[-1].result) == (StepStatus.COMPLETED, "C")

    both_ways(flow, script)


def test_cancel_reaches_asyncio_sleep_and_parallel_branches() -> None:
    async def flow() -> Any:
        try:
            await asyncio.gather(asyncio.sleep(60), workflow.wait_for("x"), acts().a())
        except asyncio.CancelledError:
            await workflow.sleep_for(1)
            raise

    def script(sim: Sim) -> None:
        # asyncio.sleep takes its position when gather first runs it, after the other two
        assert [c.kind for c in sim.step().commands] == ["wait", "activity", "sleep"]
        sim.cancel()
        outcome = sim.step()
        assert outcome.cancelled == [1, 2, 3]
        assert [(c.seq, c.kind) for c in outcome.commands] == [(4, "sleep")]
        sim.complete("", 1.0, kind="sleep", seq=4)
        assert sim.step().status == StepStatus.CANCELLED

    both_ways(flow, script)


def test_cancel_before_the_first_step_hits_the_first_call() -> None:
    def script(sim: Sim) -> None:
        sim.cancel("early")
        outcome = sim.step()
        assert [(c.seq, c.name) for c in outcome.commands] == [(1, "work"), (2, "cleanup")]
        assert outcome.cancelled == [1]
        sim.complete("cleanup")
        assert sim.step().status == StepStatus.CANCELLED

    both_ways(cleanup_flow, script)


def test_a_second_cancel_after_delivery_changes_nothing() -> None:
    async def flow() -> Any:
        try:
            await acts().a()
        except asyncio.CancelledError:
            pass
        return await acts().b()

    def script(sim: Sim) -> None:
        sim.step()
        sim.cancel()
        sim.step()
        assert [r.name for r in sim.records.values() if r.status == "scheduled"] == ["b"]
        sim.complete("b", "B")
        assert (sim.step().status, sim.outcomes[-1].result) == (StepStatus.COMPLETED, "B")

    both_ways(flow, script)


# -- continue as new ------------------------------------------------------------------------


async def poller(n: int, limit: int) -> Any:
    await acts().poll(n)
    if n < limit:
        workflow.continue_as_new(n + 1, limit)
    return n


def test_continue_as_new_ends_the_run_with_the_next_arguments() -> None:
    def script(sim: Sim) -> None:
        sim.step()
        sim.complete("poll")
        outcome = sim.step()
        assert (outcome.status, outcome.result, outcome.commands) == (
            StepStatus.CONTINUED, [4, 9], [])

    both_ways(poller, script, args=(3, 9))
    finished = Sim(poller, (9, 9))
    finished.step()
    finished.complete("poll")
    assert (finished.step().status, finished.outcomes[-1].result) == (StepStatus.COMPLETED, 9)


def test_continue_as_new_cannot_be_swallowed_and_later_calls_raise_it_again() -> None:
    async def flow() -> Any:
        try:
            workflow.continue_as_new("next")
        except BaseException as error:  # noqa: BLE001 - what careless user code does
            assert did_interrupt(error) and isinstance(error, ContinueAsNewError)
            try:
                await acts().after()
            except ContinueAsNewError:
                return "swallowed twice"
        return "unreachable"

    outcome = run_step(flow)
    assert (outcome.status, outcome.result, outcome.commands) == (
        StepStatus.CONTINUED, ["next"], [])


def test_continue_as_new_with_calls_in_flight_continues_and_records_them() -> None:
    async def flow() -> Any:
        pending = acts().background()
        workflow.continue_as_new()
        await pending

    outcome = run_step(flow)
    assert outcome.status == StepStatus.CONTINUED and outcome.result == []
    assert [c.name for c in outcome.commands] == ["background"]


# -- patches --------------------------------------------------------------------------------


async def patched_flow() -> Any:
    a = acts()
    if workflow.patched("new-charge"):
        first = await a.charge_v2()
    else:
        first = await a.charge()
    return [first, await a.ship()]


def test_a_new_run_records_the_marker_and_takes_the_new_branch() -> None:
    def script(sim: Sim) -> None:
        outcome = sim.step()
        assert [(c.seq, c.kind, c.name, c.status) for c in outcome.commands] == [
            (1, "patch", "new-charge", "completed"), (2, "activity", "charge_v2", "scheduled")]
        sim.complete("charge_v2", "c2")
        sim.step()
        sim.complete("ship", "s")
        assert sim.step().result == ["c2", "s"]

    both_ways(patched_flow, script)


def test_history_from_before_the_patch_takes_the_old_branch_without_a_position() -> None:
    old_history = [record(1, "activity", "charge", result="c1"),
                   record(2, "activity", "ship", status="scheduled", observed_step=None)]
    outcome = run_step(patched_flow, old_history)
    assert (outcome.status, outcome.commands) == (StepStatus.SUSPENDED, [])
    done = [old_history[0], record(2, "activity", "ship", result="s", observed_step=2)]
    assert run_step(patched_flow, done).result == ["c1", "s"]


def test_a_run_reaching_the_patch_for_the_first_time_under_new_code_takes_the_new_branch() -> None:
    async def flow() -> Any:
        a = acts()
        await a.before()
        if workflow.patched("later"):
            return await a.new_tail()
        return await a.old_tail()

    # started under code without the patch; suspended before the patch point
    history = [record(1, "activity", "before", result="b", observed_step=None)]
    outcome = run_step(flow, history)
    assert [(c.seq, c.kind, c.name) for c in outcome.commands] == [
        (2, "patch", "later"), (3, "activity", "new_tail")]


def test_deprecate_patch_accepts_the_marker_and_its_absence() -> None:
    async def flow() -> Any:
        workflow.deprecate_patch("new-charge")
        return [await acts().charge_v2(), workflow.get_context().counter]

    with_marker = [record(1, "patch", "new-charge", result=True),
                   record(2, "activity", "charge_v2", result="c2", observed_step=2)]
    assert run_step(flow, with_marker).result == ["c2", 2]
    without = [record(1, "activity", "charge_v2", result="c2", observed_step=2)]
    assert run_step(flow, without).result == ["c2", 1]
    fresh = run_step(flow)
    assert [(c.kind, c.name) for c in fresh.commands] == [("patch", "new-charge"),
                                                          ("activity", "charge_v2")]


def test_a_marker_the_code_lost_is_named_in_the_non_determinism_error() -> None:
    async def lost_then_other_call() -> Any:
        return await acts().charge()

    history = [record(1, "patch", "new-charge", result=True),
               record(2, "activity", "charge", result="c", observed_step=2)]
    outcome = run_step(lost_then_other_call, history)
    assert isinstance(outcome.error, NonDeterminismError)
    assert "patch 'new-charge'" in outcome.error.message
    assert "deprecate_patch('new-charge')" in outcome.error.message

    async def lost_at_the_end() -> Any:
        return "nothing"

    outcome = run_step(lost_at_the_end, history[:1])
    assert isinstance(outcome.error, NonDeterminismError)
    assert "patch 'new-charge'" in outcome.error.message


def test_patch_ids_are_checked() -> None:
    async def flow() -> Any:
        return workflow.patched("")

    outcome = run_step(flow)
    assert isinstance(outcome.error, InvalidArgumentError)


# -- child_result ---------------------------------------------------------------------------


async def fan_out() -> Any:
    child = await workflow.start_child("kid", args=[1], workflow_id="kid-1")
    return await workflow.child_result(child)


def test_child_result_waits_then_returns_the_stored_outcome() -> None:
    def script(sim: Sim) -> None:
        outcome = sim.step()
        assert [(c.seq, c.kind, c.name) for c in outcome.commands] == [
            (1, "start", "kid"), (2, "child_result", "kid-1")]
        assert outcome.commands[1].input == {"workflow_id": "kid-1"}
        sim.complete("kid-1", {"ok": 1}, kind="child_result")
        assert sim.step().result == {"ok": 1}

    both_ways(fan_out, script)


def test_child_result_raises_the_childs_typed_error() -> None:
    history = [record(1, "start", "kid", result="kid-1"),
               record(2, "child_result", "kid-1", status="failed", error=MAXED, observed_step=2)]
    outcome = run_step(fan_out, history)
    assert isinstance(outcome.error, DurableMaxedError) and outcome.error.message == "boom"


@pytest.mark.parametrize("bad", ["", None, 3])
def test_child_result_needs_a_workflow_id(bad: Any) -> None:
    async def flow() -> Any:
        return await workflow.child_result(bad)

    assert isinstance(run_step(flow).error, TypeError)
