"""How many activity outcomes a suspended run needs before it could move (``outcomes_to_wake``):
the engine's answer that lets storage hold back the results of a ``workflow.all`` group.

It must never be too high — a run that could move but is not stepped would wait forever — so
every way of awaiting a call that is not "only as a member of one group" answers ``1``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from durable_celery import workflow
from durable_celery.engine import StepStatus

from .engine_sim import Sim


async def _group_of(n: int) -> list[Any]:
    acts = workflow.proxy_activities()
    return await workflow.all(*(acts.work(i) for i in range(n)))


def test_a_group_of_activities_wakes_on_its_last_member() -> None:
    sim = Sim(_group_of, [5], keep=True)
    assert sim.step().outcomes_to_wake == 5
    for i in range(1, 5):
        sim.complete("work", i, seq=i)
    outcome = sim.step()  # four delivered together: one member left
    assert outcome.status == StepStatus.SUSPENDED and outcome.outcomes_to_wake == 1
    assert sim.run is not None and not sim.run.defers(5)
    sim.complete("work", 5, seq=5)
    assert sim.step().result == [1, 2, 3, 4, 5]
    sim.close()


def test_held_back_outcomes_delivered_together_match_a_replay_from_history() -> None:
    """Storage delivers held-back results in one step; a replay from history groups them the
    same way (they share the step that observed them)."""
    sim = Sim(_group_of, [4], keep=True)
    sim.step()
    assert sim.run is not None and all(sim.run.defers(i) for i in range(1, 5))
    for i in range(1, 5):
        sim.complete("work", i * 10, seq=i)
    kept = sim.step()
    replayed = sim.replay()
    assert kept.result == replayed.result == [10, 20, 30, 40]
    sim.close()


def test_the_fewest_open_members_of_any_group_count() -> None:
    async def two_groups() -> Any:
        acts = workflow.proxy_activities()
        small = workflow.all(acts.a(), acts.b())
        large = workflow.all(acts.c(), acts.d(), acts.e(), acts.f())
        return await workflow.all(small, large)

    sim = Sim(two_groups, keep=True)
    assert sim.step().outcomes_to_wake == 2
    sim.close()


def test_a_call_awaited_on_its_own_wakes_on_any_outcome() -> None:
    async def group_and_single() -> Any:
        acts = workflow.proxy_activities()
        return await asyncio.gather(workflow.all(acts.a(), acts.b(), acts.c()), acts.d())

    sim = Sim(group_and_single, keep=True)
    assert sim.step().outcomes_to_wake == 1
    assert sim.run is not None and not sim.run.defers(4)
    sim.close()


def test_a_call_in_two_groups_or_awaited_again_is_never_held_back() -> None:
    async def shared() -> Any:
        acts = workflow.proxy_activities()
        a, b, c = acts.a(), acts.b(), acts.c()
        return await asyncio.gather(workflow.all(a, b, c), workflow.all(a, c))

    async def awaited_again() -> Any:
        acts = workflow.proxy_activities()
        a, b, c = acts.a(), acts.b(), acts.c()
        both = asyncio.ensure_future(workflow.all(a, b, c))
        first = await a
        return [first, await both]

    for function in (shared, awaited_again):
        sim = Sim(function, keep=True)
        assert sim.step().outcomes_to_wake == 1, function.__name__
        assert sim.run is not None and not sim.run.defers(1), function.__name__
        sim.close()


def test_calls_of_a_plain_gather_or_a_race_are_never_held_back() -> None:
    async def plain_gather() -> Any:
        acts = workflow.proxy_activities()
        return await asyncio.gather(acts.a(), acts.b(), acts.c())

    async def race() -> Any:
        acts = workflow.proxy_activities()
        done, _ = await asyncio.wait([asyncio.ensure_future(acts.a()),
                                      asyncio.ensure_future(acts.b())],
                                     return_when=asyncio.FIRST_COMPLETED)
        return [t.result() for t in done]

    for function in (plain_gather, race):
        sim = Sim(function, keep=True)
        assert sim.step().outcomes_to_wake == 1, function.__name__
        sim.close()


def test_non_activity_members_are_not_counted() -> None:
    """A sleep or a signal wait requests its own step when it resolves; only activity results
    are held back."""
    async def mixed() -> Any:
        acts = workflow.proxy_activities()
        return await workflow.all(acts.a(), acts.b(), acts.c(), workflow.sleep_for("1 minute"))

    sim = Sim(mixed, keep=True)
    assert sim.step().outcomes_to_wake == 3
    sim.close()


def test_a_run_that_completes_or_waits_on_nothing_else_wakes_on_one() -> None:
    async def single() -> Any:
        return await workflow.proxy_activities().a()

    sim = Sim(single, keep=True)
    assert sim.step().outcomes_to_wake == 1
    sim.complete("a", "x")
    outcome = sim.step()
    assert outcome.status == StepStatus.COMPLETED and outcome.outcomes_to_wake == 1
    sim.close()


def test_a_wide_group_is_counted_once_not_once_per_member() -> None:
    """``outcomes_to_wake`` over a 1000-wide ``workflow.all`` scans the group once: counting it
    for every member made a fan-out's first step quadratic (0.7 s of a 1000-wide one)."""
    from durable_celery.engine.calls import CallGroup, DurableCall, outcomes_to_wake

    class CountedGroup(CallGroup):
        scans = 0

        def waiting(self, enough: int | None = None) -> int:
            CountedGroup.scans += 1
            return super().waiting(enough)

    loop = asyncio.new_event_loop()
    try:
        group, calls = CountedGroup(), []
        for seq in range(1000):
            call = DurableCall(loop.create_future(), seq, "activity")
            call.in_group(group).close()  # the group's awaitable is not needed here
            calls.append(call)
        assert outcomes_to_wake(calls) == 1000
        assert CountedGroup.scans == 1
    finally:
        loop.close()


def test_tasks_left_behind_at_a_suspension_are_not_logged_but_real_errors_are(
        caplog: pytest.LogCaptureFixture) -> None:
    """``asyncio.wait``'s losers end with the suspension when the step unwinds: asyncio would
    log each as "Task exception was never retrieved" (with a traceback) on every suspended
    step. A left-behind task that failed on its own is still reported."""
    async def race_and_orphan() -> Any:
        acts = workflow.proxy_activities()

        async def broken() -> None:
            raise ValueError("left behind on purpose")

        asyncio.ensure_future(broken())
        done, _ = await asyncio.wait([asyncio.ensure_future(acts.a()),
                                      asyncio.ensure_future(acts.b())],
                                     return_when=asyncio.FIRST_COMPLETED)
        return [t.result() for t in done]

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        sim = Sim(race_and_orphan, keep=True)
        assert sim.step().status == StepStatus.SUSPENDED
        sim.close()
        del sim
        gc.collect()
    reported = [r.getMessage() + str(r.exc_info) for r in caplog.records]
    assert not any("not finished yet" in text for text in reported), reported
    assert any("left behind on purpose" in text for text in reported), reported


def test_a_group_suspends_with_wait_for_all_and_a_lone_call_with_its_own_kind() -> None:
    """What workflow code sees when a step suspends (API.md's error table): the calls of a
    ``workflow.all`` raise ``DurableWaitForAllError`` (589), a call awaited on its own the error
    of its kind; ``did_interrupt`` is true for both."""
    from durable_celery.errors import DurableProxyError, DurableWaitForAllError, did_interrupt

    seen: list[BaseException] = []

    async def group() -> Any:
        acts = workflow.proxy_activities()
        try:
            return await workflow.all(acts.a(), acts.b())
        except BaseException as error:
            seen.append(error)
            raise

    async def alone() -> Any:
        try:
            return await workflow.proxy_activities().a()
        except BaseException as error:
            seen.append(error)
            raise

    for function in (group, alone):
        sim = Sim(function, keep=True)
        assert sim.step().status == StepStatus.SUSPENDED
        sim.close()
    assert [type(error) for error in seen] == [DurableWaitForAllError, DurableProxyError]
    assert [error.code for error in seen] == [589, 591]
    assert all(did_interrupt(error) for error in seen)
