"""A run kept in memory that missed steps taken by other processes catches up on them.

Prefork children take turns: the child that finishes an activity often is not the one that took
the last step, so its run in memory is behind the database. ``WorkflowRun.catch_up`` replays only
the steps it missed; these tests check it decides exactly what a replay from the top decides,
for the shapes that interleave (fan-in, races of timers and signals, cancellation), and that the
code before the missed steps does not run again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from durable_celery import workflow
from durable_celery.engine import StepStatus

from .engine_sim import Sim


def _summary(sim: Sim) -> list[tuple[Any, ...]]:
    return [(o.status, [(c.seq, c.kind, c.name) for c in o.commands], o.result, o.cancelled)
            for o in sim.outcomes]


def _same_everywhere(function: Any, script: Any, args: tuple[Any, ...] = ()) -> list[Sim]:
    """Run ``script`` replaying from the top, in one process's memory, and alternating between
    two and three processes; they must decide the same at every step."""
    sims = [Sim(function, args), Sim(function, args, keep=True),
            Sim(function, args, keep=True, processes=2),
            Sim(function, args, keep=True, processes=3)]
    for sim in sims:
        script(sim)
        sim.close()
    for other in sims[1:]:
        assert _summary(other) == _summary(sims[0])
        assert other.records == sims[0].records
    return sims


def test_fan_in_completed_in_batches_gives_results_in_argument_order() -> None:
    async def flow(n: int) -> list[Any]:
        acts = workflow.proxy_activities()
        first = await workflow.all(*(acts.work(i) for i in range(n)))
        second = await acts.after(len(first))
        return [first, second]

    def script(sim: Sim) -> None:
        assert sim.step().status == StepStatus.SUSPENDED
        for batch in ([3, 0], [5], [1, 2, 4]):
            for seq in batch:
                sim.complete("work", result=seq * 10, seq=seq + 1)
            sim.step()
        sim.complete("after", "done")
        assert sim.step().status == StepStatus.COMPLETED

    sims = _same_everywhere(flow, script, (6,))
    assert sims[2].outcomes[-1].result == [[0, 10, 20, 30, 40, 50], "done"]


def test_branches_that_interleave_across_missed_steps_keep_their_order() -> None:
    async def flow() -> list[str]:
        acts = workflow.proxy_activities()
        seen: list[str] = []

        async def branch(name: str, count: int) -> None:
            for i in range(count):
                seen.append(await acts.work(f"{name}{i}"))

        await asyncio.gather(branch("a", 3), branch("b", 2), workflow.sleep_for(5))
        seen.append(str(await workflow.wait_for("go")))
        return seen

    def script(sim: Sim) -> None:
        sim.step()  # the sleep (called first, as gather's argument) at 1, a0 at 2, b0 at 3
        for seq in (2, 3, 1, 5, 4, 6):  # a1 comes at 4, b1 at 5, a2 at 6
            sim.complete("", result=f"r{seq}", seq=seq)
            sim.step()
        sim.complete("go", {"ok": 1}, kind="wait")
        assert sim.step().status == StepStatus.COMPLETED

    sims = _same_everywhere(flow, script)
    assert sims[3].outcomes[-1].result == ["r2", "r3", "r5", "r4", "r6", "{'ok': 1}"]


def test_a_cancellation_seen_by_a_missed_step_is_delivered_where_it_was() -> None:
    async def flow() -> str:
        acts = workflow.proxy_activities()
        try:
            await workflow.all(acts.work(1), acts.work(2))
        except asyncio.CancelledError:
            return str(await acts.undo())
        return "finished"

    def script(sim: Sim) -> None:
        sim.step()
        sim.complete("work", 1, seq=1)
        sim.step()
        sim.cancel("stop")
        sim.step()
        sim.complete("undo", "undone")
        assert sim.step().status == StepStatus.COMPLETED

    sims = _same_everywhere(flow, script)
    assert sims[2].outcomes[-1].result == "undone"


def test_catching_up_runs_no_code_before_the_missed_steps_again() -> None:
    runs_of_the_top: list[int] = []

    async def flow() -> int:
        runs_of_the_top.append(1)
        acts = workflow.proxy_activities()
        total = 0
        for i in range(6):
            total += await acts.work(i)
        return total

    sim = Sim(flow, keep=True, processes=2)
    sim.step()
    for i in range(6):
        sim.complete("work", i, seq=i + 1)
        sim.step()
    sim.close()
    assert sim.outcomes[-1].result == 15
    # Each of the two processes ran the top of the function once; every later step of each
    # caught up from where its run was.
    assert len(runs_of_the_top) == 2
