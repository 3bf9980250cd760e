"""The pure replay engine, driven with hand-made history: no database, no broker, no worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from durable_celery import RetryPolicy, workflow
from durable_celery.engine import ReplayStep, StepStatus, deterministic_random
from durable_celery.errors import (
    DurableFatalError,
    DurableMaxedError,
    DurableTimeoutError,
    InvalidArgumentError,
    NonDeterminismError,
    WorkflowSandboxError,
    describe_error,
    error_from_dict,
)

from .engine_sim import Sim, info, record, run_step

MAXED = {"type": "DurableMaxedError", "message": "card declined", "code": 597}


def acts(**options: Any) -> Any:
    return workflow.proxy_activities(**options)


# -- positions -------------------------------------------------------------------------------


def test_gather_members_take_positions_in_argument_order() -> None:
    async def flow() -> Any:
        a = acts()
        return await workflow.all(a.first(1), a.second(2), workflow.sleep_for("5s"),
                                  a.third(3))

    outcome = run_step(flow)
    assert outcome.status == StepStatus.SUSPENDED
    assert [(c.seq, c.kind, c.name) for c in outcome.commands] == [
        (1, "activity", "first"), (2, "activity", "second"), (3, "sleep", ""),
        (4, "activity", "third")]
    assert outcome.commands[0].input["args"] == [1]
    assert outcome.commands[2].input["seconds"] == 5.0


def test_asyncio_gather_numbers_like_workflow_all() -> None:
    async def flow() -> Any:
        a = acts()
        return await asyncio.gather(a.first(), a.second())

    assert [(c.seq, c.name) for c in run_step(flow).commands] == [(1, "first"), (2, "second")]


def test_position_is_taken_when_called_not_when_awaited() -> None:
    async def flow() -> Any:
        a = acts()
        early = a.early()
        late = a.late()
        return [await late, await early]

    assert [(c.seq, c.name) for c in run_step(flow).commands] == [(1, "early"), (2, "late")]
    history = [record(1, "activity", "early", result="E"),
               record(2, "activity", "late", result="L")]
    outcome = run_step(flow, history)
    assert (outcome.status, outcome.result) == (StepStatus.COMPLETED, ["L", "E"])


def test_replay_returns_stored_results_without_new_commands() -> None:
    async def flow(name: str) -> Any:
        a = acts()
        greeting = await a.greet(name)
        slept = await workflow.sleep_for(30)
        return [greeting, slept]

    history = [record(1, "activity", "greet", result="Hello, x!"),
               record(2, "sleep", "", result=30.0, observed_step=2)]
    outcome = run_step(flow, history, args=["x"])
    assert outcome.status == StepStatus.COMPLETED
    assert outcome.result == ["Hello, x!", 30.0]
    assert outcome.commands == []
    assert outcome.counter == 2


def test_partial_history_schedules_only_the_next_call() -> None:
    async def flow() -> Any:
        a = acts()
        await a.one()
        return await a.two()

    outcome = run_step(flow, [record(1, "activity", "one", result=1)])
    assert outcome.status == StepStatus.SUSPENDED
    assert [(c.seq, c.name) for c in outcome.commands] == [(2, "two")]


# -- stored failures -------------------------------------------------------------------------


def test_stored_failure_is_raised_with_class_code_and_message() -> None:
    async def flow() -> Any:
        try:
            await acts().charge("o-1")
        except DurableMaxedError as error:
            return [type(error).__name__, error.code, error.message]
        return "not raised"

    outcome = run_step(flow, [record(1, "activity", "charge", status="failed", error=MAXED)])
    assert outcome.result == ["DurableMaxedError", 597, "card declined"]


def test_stored_fatal_and_timeout_errors_keep_their_class() -> None:
    async def flow() -> Any:
        seen = []
        for name in ("a", "b"):
            try:
                await acts().__getattr__(name)()
            except (DurableFatalError, DurableTimeoutError) as error:
                seen.append([type(error).__name__, error.code, error.message])
        return seen

    history = [
        record(1, "activity", "a", status="failed",
               error={"type": "DurableFatalError", "message": "no", "code": 598}),
        record(2, "activity", "b", status="failed",
               error={"type": "DurableTimeoutError", "message": "slow", "code": 596}),
    ]
    assert run_step(flow, history).result == [["DurableFatalError", 598, "no"],
                                              ["DurableTimeoutError", 596, "slow"]]


def test_stored_failure_is_returned_when_throw_on_error_is_false() -> None:
    holder: dict[str, Any] = {}

    async def flow() -> Any:
        proxy = acts(retry_policy=RetryPolicy(throw_on_error=False))
        value = await proxy.charge("o-1")
        holder["value"] = value
        return "returned"

    outcome = run_step(flow, [record(1, "activity", "charge", status="failed", error=MAXED)])
    assert outcome.status == StepStatus.COMPLETED
    assert outcome.result == "returned"
    assert isinstance(holder["value"], DurableMaxedError)
    assert holder["value"].code == 597 and holder["value"].message == "card declined"


def test_uncaught_stored_failure_fails_the_workflow_without_retry() -> None:
    async def flow() -> Any:
        return await acts().charge("o-1")

    outcome = run_step(flow, [record(1, "activity", "charge", status="failed", error=MAXED)])
    assert outcome.status == StepStatus.FAILED
    assert isinstance(outcome.error, DurableMaxedError)
    assert outcome.retryable is False


# -- delivery order --------------------------------------------------------------------------


def test_concurrent_branches_number_calls_the_same_on_every_replay() -> None:
    """t1 = a -> b -> e and t2 = c -> d, where c's result arrives after a's and b's."""

    async def t1() -> list[Any]:
        a = acts()
        return [await a.a(), await a.b(), await a.e()]

    async def t2() -> list[Any]:
        a = acts()
        return [await a.c(), await a.d()]

    async def flow() -> Any:
        return await workflow.all(t1(), t2())

    sim = Sim(flow)
    assert sim.step().status == StepStatus.SUSPENDED
    assert sim.positions() == {"a": 1, "c": 2}
    sim.complete("a", "A")
    sim.step()
    assert sim.positions()["b"] == 3
    sim.complete("b", "B")
    sim.step()
    assert sim.positions()["e"] == 4
    sim.complete("c", "C")  # late: t2 only now goes on
    sim.step()
    assert sim.positions()["d"] == 5
    sim.complete("e", "E")
    sim.complete("d", "D")
    final = sim.step()
    assert final.status == StepStatus.COMPLETED, final.error
    assert final.result == [["A", "B", "E"], ["C", "D"]]
    assert sim.positions() == {"a": 1, "c": 2, "b": 3, "e": 4, "d": 5}
    for outcome in sim.outcomes:
        assert not isinstance(outcome.error, NonDeterminismError)

    # Replaying the complete history again gives the same answer and asks for nothing.
    again = run_step(flow, sorted(sim.records.values(), key=lambda r: r.seq))
    assert (again.status, again.result, again.commands) == (
        StepStatus.COMPLETED, final.result, [])


def test_outcomes_seen_by_the_same_step_are_delivered_together() -> None:
    async def flow() -> Any:
        a = acts()
        first, second = await workflow.all(a.x(), a.y())
        return [first, second, await a.z()]

    sim = Sim(flow)
    sim.step()
    sim.complete("x", 1)
    sim.complete("y", 2)
    sim.step()
    assert sim.positions() == {"x": 1, "y": 2, "z": 3}
    sim.complete("z", 3)
    assert sim.step().result == [1, 2, 3]


# -- non-determinism -------------------------------------------------------------------------


def test_different_name_at_a_position_is_non_determinism() -> None:
    async def flow() -> Any:
        return await acts().charge()

    outcome = run_step(flow, [record(1, "activity", "greet", result="hi")])
    assert outcome.status == StepStatus.FAILED
    assert isinstance(outcome.error, NonDeterminismError)
    message = str(outcome.error)
    assert "position 1" in message
    assert "activity 'greet'" in message and "activity 'charge'" in message
    assert outcome.retryable is False


def test_different_kind_at_a_position_is_non_determinism() -> None:
    async def flow() -> Any:
        a = acts()
        await a.first()
        return await workflow.sleep_for(5)

    history = [record(1, "activity", "first", result=None),
               record(2, "wait", "approve", result="yes", observed_step=2)]
    outcome = run_step(flow, history)
    assert isinstance(outcome.error, NonDeterminismError)
    assert "position 2" in str(outcome.error)
    assert "wait 'approve'" in str(outcome.error) and "sleep" in str(outcome.error)


def test_non_determinism_cannot_be_swallowed_by_user_code() -> None:
    async def flow() -> Any:
        try:
            await acts().charge()
        except Exception:
            pass
        return "carried on"

    outcome = run_step(flow, [record(1, "activity", "greet", result="hi")])
    assert outcome.status == StepStatus.FAILED
    assert isinstance(outcome.error, NonDeterminismError)


def test_returning_after_fewer_calls_than_history_is_non_determinism() -> None:
    async def flow() -> Any:
        return await acts().one()

    history = [record(1, "activity", "one", result=1),
               record(2, "activity", "two", result=2, observed_step=2)]
    outcome = run_step(flow, history)
    assert outcome.status == StepStatus.FAILED
    assert isinstance(outcome.error, NonDeterminismError)
    assert "1" in str(outcome.error) and "2" in str(outcome.error)


# -- suspension and the sandbox --------------------------------------------------------------


def test_except_exception_does_not_swallow_suspension() -> None:
    reached: list[str] = []

    async def flow() -> Any:
        try:
            await acts().slow()
        except Exception:
            reached.append("swallowed")
            return "swallowed"
        return "done"

    outcome = run_step(flow)
    assert outcome.status == StepStatus.SUSPENDED
    assert [(c.seq, c.kind, c.name) for c in outcome.commands] == [(1, "activity", "slow")]
    assert reached == []


def test_hidden_suspension_still_records_the_commands() -> None:
    async def flow() -> Any:
        try:
            await acts().slow()
        except BaseException:  # noqa: BLE001 - the point of the test
            return "hidden"
        return "done"

    outcome = run_step(flow)
    assert outcome.status == StepStatus.SUSPENDED
    assert [c.name for c in outcome.commands] == ["slow"]


def test_asyncio_sleep_is_a_durable_timer() -> None:
    async def flow() -> Any:
        return await asyncio.sleep(90, result="slept")

    first = run_step(flow)
    assert first.status == StepStatus.SUSPENDED
    assert [(c.kind, c.input) for c in first.commands] == [("sleep", {"seconds": 90.0})]
    done = run_step(flow, [record(1, "sleep", result=90.0)])
    assert (done.status, done.result) == (StepStatus.COMPLETED, "slept")


def test_asyncio_sleep_in_gather_branches_takes_positions_in_order() -> None:
    async def flow() -> Any:
        return await asyncio.gather(asyncio.sleep(1, "a"), asyncio.sleep(2, "b"))

    first = run_step(flow)
    assert [c.input["seconds"] for c in first.commands] == [1.0, 2.0]
    done = run_step(flow, [record(1, "sleep", result=1.0), record(2, "sleep", result=2.0)])
    assert done.result == ["a", "b"]


def test_real_time_timers_other_than_sleep_are_refused() -> None:
    async def flow() -> Any:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        return await asyncio.wait_for(future, timeout=1)

    outcome = run_step(flow)
    assert outcome.status == StepStatus.FAILED
    assert isinstance(outcome.error, WorkflowSandboxError)
    assert "asyncio.sleep" in str(outcome.error) and "wait_for" in str(outcome.error)
    assert outcome.retryable is False


@pytest.mark.parametrize("seconds", [float("inf"), 1e12])
def test_asyncio_sleep_out_of_range_fails_clearly(seconds: float) -> None:
    async def flow() -> Any:
        await asyncio.sleep(seconds)

    outcome = run_step(flow)
    assert outcome.status == StepStatus.FAILED
    assert "100 years" in str(outcome.error)


def test_asyncio_sleep_zero_is_allowed() -> None:
    async def flow() -> Any:
        await asyncio.sleep(0)
        return "ok"

    assert run_step(flow).result == "ok"


def test_waiting_on_an_event_nobody_sets_fails_clearly() -> None:
    async def flow() -> Any:
        await asyncio.Event().wait()
        return "never"

    outcome = run_step(flow)
    assert outcome.status == StepStatus.FAILED
    assert isinstance(outcome.error, WorkflowSandboxError)
    assert "not a durable call" in str(outcome.error)


# -- deterministic helpers -------------------------------------------------------------------


def test_random_values_follow_positions() -> None:
    seen: list[float] = []

    async def flow() -> Any:
        r1 = workflow.random()
        seen.append(r1)
        g = await acts().greet("x")
        r2 = workflow.random()
        return [r1, g, r2]

    sim = Sim(flow)
    first = sim.step()
    assert first.status == StepStatus.SUSPENDED
    assert [(c.seq, c.kind) for c in first.commands] == [(1, "random"), (2, "activity")]
    sim.complete("greet", "hi")
    final = sim.step()
    assert final.result == [0.7098480789645691, "hi", 0.20008059867222983]
    assert deterministic_random(1) == 0.7098480789645691
    assert deterministic_random(3) == 0.20008059867222983
    assert seen == [0.7098480789645691, 0.7098480789645691]


def test_side_effect_is_allowed_on_first_run_only() -> None:
    seen: list[bool] = []

    async def flow() -> Any:
        seen.append(await workflow.is_side_effect_allowed("mail"))
        await acts().wait_a_bit()
        return "done"

    sim = Sim(flow)
    sim.step()
    sim.complete("wait_a_bit")
    assert sim.step().status == StepStatus.COMPLETED
    assert seen == [True, False]


def test_get_context_fields() -> None:
    contexts: list[dict[str, Any]] = []

    async def flow() -> Any:
        contexts.append(dict(workflow.get_context()))
        await acts().one()
        ctx = workflow.get_context()
        contexts.append(dict(ctx))
        return ctx.workflow_id

    outcome = run_step(flow, [record(1, "activity", "one", result=1)], parent_workflow_id="p-1",
                       origin_workflow_id="o-1", expire=60.0)
    assert outcome.result == "wf-1"
    first, second = contexts
    assert set(first) >= {"workflow_id", "workflow_name", "task_queue", "namespace", "counter",
                          "workflow_dimension", "parent_workflow_id", "origin_workflow_id",
                          "replaying", "expire"}
    assert first["workflow_name"] == "flow" and first["task_queue"] == "q"
    assert first["namespace"] == "ns" and first["workflow_dimension"] == ""
    assert first["parent_workflow_id"] == "p-1" and first["origin_workflow_id"] == "o-1"
    assert first["expire"] == 60.0
    assert (first["counter"], first["replaying"]) == (0, True)
    assert (second["counter"], second["replaying"]) == (1, False)


def test_fan_out_of_a_thousand_activities_is_one_step() -> None:
    async def flow() -> Any:
        a = acts()
        return await workflow.all(*(a.work(i) for i in range(1000)))

    outcome = run_step(flow)
    assert outcome.status == StepStatus.SUSPENDED
    assert len(outcome.commands) == 1000
    assert [c.seq for c in outcome.commands] == list(range(1, 1001))
    assert outcome.commands[999].input["args"] == [999]

    history = [record(i, "activity", "work", result=i * 2) for i in range(1, 1001)]
    done = run_step(flow, history)
    assert done.status == StepStatus.COMPLETED
    assert done.result == [i * 2 for i in range(1, 1001)]


# -- how a step ends -------------------------------------------------------------------------


def test_non_json_result_fails_the_workflow() -> None:
    async def flow() -> Any:
        return {1, 2}

    outcome = run_step(flow)
    assert outcome.status == StepStatus.FAILED
    assert isinstance(outcome.error, DurableFatalError)
    assert "JSON" in str(outcome.error)
    assert outcome.retryable is False


def test_plain_exception_fails_retryably() -> None:
    async def flow() -> Any:
        raise KeyError("missing")

    outcome = run_step(flow)
    assert outcome.status == StepStatus.FAILED
    assert isinstance(outcome.error, KeyError)
    assert outcome.retryable is True


def test_fatal_error_fails_without_retry() -> None:
    async def flow() -> Any:
        raise DurableFatalError("stop now")

    outcome = run_step(flow)
    assert outcome.status == StepStatus.FAILED
    assert isinstance(outcome.error, DurableFatalError)
    assert outcome.error.message == "stop now"
    assert outcome.retryable is False


def test_completed_workflow_returns_its_result() -> None:
    async def flow(x: int) -> Any:
        return {"double": x * 2}

    outcome = run_step(flow, args=[21])
    assert (outcome.status, outcome.result, outcome.commands) == (
        StepStatus.COMPLETED, {"double": 42}, [])


def test_non_json_activity_arguments_are_refused_at_the_call() -> None:
    async def flow() -> Any:
        return await acts().greet(object())

    outcome = run_step(flow)
    assert outcome.status == StepStatus.FAILED
    assert isinstance(outcome.error, TypeError)
    assert outcome.commands == []


@pytest.mark.parametrize("bad", ["soon", -1, "abc minutes"])
def test_malformed_sleep_duration_fails_the_workflow(bad: Any) -> None:
    async def flow() -> Any:
        return await workflow.sleep_for(bad)

    outcome = run_step(flow)
    assert outcome.status == StepStatus.FAILED
    assert isinstance(outcome.error, ValueError)
    assert repr(bad) in str(outcome.error)


# -- interceptors and error descriptions -----------------------------------------------------


def test_interceptors_wrap_every_run_outermost_first() -> None:
    calls: list[str] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        async def execute(self, ctx: dict[str, Any], next: Any) -> Any:  # noqa: A002
            calls.append(f"{self.name}:{ctx['workflow_id']}:{ctx['replaying']}")
            result = await next()
            calls.append(f"{self.name}:done")
            return result

    async def flow() -> Any:
        return await acts().one()

    step = ReplayStep(flow, [], info(), [record(1, "activity", "one", result=1)],
                      [Named("outer"), Named("inner")])
    assert step.run().result == 1
    assert calls == ["outer:wf-1:True", "inner:wf-1:True", "inner:done", "outer:done"]


def test_describe_error_keeps_durable_classes_and_codes() -> None:
    assert describe_error(DurableMaxedError("m")) == {
        "class": "DurableMaxedError", "type": "DurableMaxedError", "message": "m", "code": 597}
    assert describe_error(KeyError("k")) == {
        "class": "DurableRetryError", "type": "KeyError", "message": "'k'", "code": 599}


def _raise_key_error() -> None:
    {}["o-99"]


def test_describe_error_keeps_the_origin_and_traceback() -> None:
    try:
        _raise_key_error()
    except KeyError as error:
        stored = describe_error(error)
    assert (stored["type"], stored["message"], stored["class"]) == ("KeyError", "'o-99'",
                                                                   "DurableRetryError")
    assert "_raise_key_error" in stored["traceback"] and "KeyError" in stored["traceback"]
    rebuilt = error_from_dict(stored)
    assert (rebuilt.type, rebuilt.message, rebuilt.code) == ("KeyError", "'o-99'", 599)
    assert "_raise_key_error" in (rebuilt.traceback or "")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class _Unrepresentable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_describe_error_survives_exceptions_that_cannot_be_printed() -> None:
    assert describe_error(_Unprintable("x"))["message"] == "_Unprintable('x')"
    assert describe_error(_Unrepresentable("x"))["message"] == "_Unrepresentable"


def test_describe_error_removes_nul_and_bounds_length() -> None:
    stored = describe_error(ValueError("a\x00b" + "z" * 20_000))
    assert "\x00" not in stored["message"] and len(stored["message"]) < 10_100


def test_signal_and_wait_check_their_arguments() -> None:
    async def bad_payload() -> Any:
        return await workflow.signal("s", object())

    async def empty_id() -> Any:
        return await workflow.wait_for("")

    async def long_id() -> Any:
        return await workflow.wait_for("x" * 300)

    async def nul_id() -> Any:
        return await workflow.signal("a\x00b", 1)

    async def not_text() -> Any:
        return await workflow.wait_for(42)  # type: ignore[arg-type]

    assert isinstance(run_step(bad_payload).error, TypeError)
    for flow, words in ((empty_id, "must not be empty"), (long_id, "300 characters"),
                        (nul_id, "NUL")):
        outcome = run_step(flow)
        assert outcome.status == StepStatus.FAILED and not outcome.retryable
        assert isinstance(outcome.error, InvalidArgumentError) and words in str(outcome.error)
    assert isinstance(run_step(not_text).error, InvalidArgumentError)


def test_signal_is_recorded_once_and_not_resent_on_replay() -> None:
    async def flow() -> Any:
        sent = await workflow.signal("go", {"n": 1})
        got = await workflow.wait_for("back", timeout="1h")
        return [sent, got]

    first = run_step(flow)
    assert first.status == StepStatus.SUSPENDED
    assert [(c.seq, c.kind, c.name, c.status) for c in first.commands] == [
        (1, "signal", "go", "completed"), (2, "wait", "back", "scheduled")]
    assert first.commands[0].input == {"data": {"n": 1}}
    assert first.commands[1].input == {"timeout": 3600.0}
    history = [record(1, "signal", "go", result="go"),
               record(2, "wait", "back", result={"ok": True}, observed_step=2)]
    again = run_step(flow, history)
    assert (again.status, again.result, again.commands) == (
        StepStatus.COMPLETED, ["go", {"ok": True}], [])
