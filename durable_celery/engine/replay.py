"""``WorkflowRun``: run a workflow function against its history and decide what follows.

A run executes the coroutine on a private :class:`~durable_celery.engine.loop.ReplayEventLoop`.
Stored outcomes are handed back in the order they originally arrived (one delivery per earlier
step), so concurrent branches interleave exactly as they did the first time; then the outcomes
new to this step are delivered. When nothing can run any more the step ends: completed, failed,
or suspended on new commands. A suspended run may stay in memory and take the next step's
outcomes directly (:meth:`WorkflowRun.resume`) instead of replaying from the top.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import (
    DurableFatalError,
    DurableInterruptedError,
    DurableInterruption,
    DurableMaxedError,
    DurableTimeoutError,
    NonDeterminismError,
    WorkflowSandboxError,
    safe_str,
)
from .context import ReplayContext, WorkflowInfo
from .history import PATCH_KIND, Command, HistoryRecord, StepStatus
from .loop import ReplayEventLoop

__all__ = ["ReplayStep", "StepOutcome", "WorkflowInterceptor", "WorkflowRun"]

#: Failures that end a workflow at once; anything else is retried by the workflow's policy.
TERMINAL_FAILURES = (DurableFatalError, DurableTimeoutError, DurableMaxedError,
                     NonDeterminismError)


class WorkflowInterceptor(Protocol):
    """Wraps every run of a workflow function, on every replay."""

    async def execute(self, ctx: dict[str, Any],
                      next: Callable[[], Awaitable[Any]]) -> Any: ...  # noqa: A002


@dataclass
class StepOutcome:
    """What one replay step decided.

    Attributes:
        status: ``completed``, ``failed`` or ``suspended``.
        commands: New durable calls to record and act on (for any status).
        result: The workflow's return value when completed.
        error: The failure when failed.
        retryable: Whether the workflow's retry policy applies to ``error``.
        counter: Positions the thread used.
        cancelled: Positions of calls that a cancellation delivered in this step ended (the
            workflow no longer waits for them).
        outcomes_to_wake: For a suspended run, how many activity outcomes must arrive before
            the next one could move it (``1``: any may; more while it waits only for
            ``workflow.all`` groups).

    ``cancelled``: the function let the cancellation's ``asyncio.CancelledError`` propagate;
    ``error`` is the ``DurableInterruptedError`` the run ends with. ``continued``: ``result``
    holds the arguments of the next run.
    """

    status: str
    commands: list[Command] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None
    retryable: bool = False
    counter: int = 0
    cancelled: list[int] = field(default_factory=list)
    outcomes_to_wake: int = 1


class WorkflowRun:
    """One run of a workflow thread's coroutine, stepped through its history.

    :meth:`step` replays the function from the top against the records given (the first step of
    a run object) or, when the run is kept in memory between steps, delivers only the outcomes
    new to this step to the suspended coroutine (:meth:`resume`). Either way the outcome is the
    same: a run kept in memory is exactly where a replay from history would take the workflow.

    Args:
        function: The ``async def`` workflow function.
        args: Its arguments.
        info: Who the workflow is (``info.step`` is the first step this object runs).
        history: Stored records of this thread.
        interceptors: Workflow interceptors, outermost first.
        port: Storage's operations for calls computed in the step (see ``ReplayContext.port``).
        encode_result: Turns the function's return value into JSON (raising ``TypeError`` or
            ``ValueError`` when it cannot); default: plain JSON values only.
    """

    def __init__(self, function: Callable[..., Awaitable[Any]], args: Sequence[Any],
                 info: WorkflowInfo, history: Sequence[HistoryRecord],
                 interceptors: Sequence[WorkflowInterceptor] = (), port: Any = None,
                 encode_result: Callable[[Any], Any] | None = None) -> None:
        self.function = function
        self.args = list(args)
        self.encode_result = encode_result or _plain_json
        self.context = ReplayContext(info, {r.seq: r for r in history}, port=port)
        self.interceptors = list(interceptors)
        self._loop = ReplayEventLoop()
        self._task: asyncio.Task[Any] | None = None

    @property
    def resumable(self) -> bool:
        """Whether the coroutine is suspended on durable calls and can take new outcomes."""
        ctx = self.context
        return (self._task is not None and not self._task.done() and ctx.fatal is None
                and not ctx.unwinding and bool(ctx.pending_calls()))

    def waiting_for(self, seq: int) -> bool:
        """Whether the suspended coroutine waits for the outcome of position ``seq``."""
        return self.context.waiting_for(seq)

    def defers(self, seq: int) -> bool:
        """Whether the outcome of activity call ``seq`` alone cannot move the suspended
        coroutine (see :meth:`ReplayContext.defers`)."""
        return self.context.defers(seq)

    def start(self) -> StepOutcome:
        """First step of this object: run the function from the top against its history."""
        assert self._task is None, "start() runs once; use resume() afterwards"
        ctx = self.context
        token = ctx.activate()
        try:
            self._task = self._loop.create_task(self._invoke())
            self._loop.run_until_quiet()
            self._deliver_phases()
        finally:
            ctx.deactivate(token)
        return self._conclude()

    def catch_up(self, info: WorkflowInfo, records: Sequence[HistoryRecord], since: int,
                 port: Any = None) -> StepOutcome:
        """A later step of a run kept in memory at step ``since`` while other processes took
        the steps after it: replay what those steps recorded, then deliver what is new.

        The outcome is the one a replay from the top would reach, at a cost that grows with the
        steps missed rather than with the length of the history.

        Args:
            info: Identity, with the number of this step.
            records: This thread's records that steps after ``since`` observed or created
                (past the last position the run took), and its outcomes no step has seen yet.
            since: The step the run in memory is at.
            port: Storage's operations for this step.
        """
        assert self.resumable, "only a suspended run can catch up"

        def deliver() -> None:
            self.context.load_later_steps(list(records), since)
            self._deliver_phases()

        return self._later_step(info, port, deliver)

    def _deliver_phases(self) -> None:
        """Deliver stored outcomes step by step, letting the code run after each."""
        assert self._task is not None
        ctx = self.context
        while not self._task.done():
            phase = ctx.next_phase()
            if phase is None:
                break
            ctx.deliver(phase)
            self._loop.run_until_quiet()

    def resume(self, info: WorkflowInfo, records: Sequence[HistoryRecord],
               port: Any = None) -> StepOutcome:
        """A later step of a run kept in memory: deliver outcomes new to this step.

        Args:
            info: Identity, with the number of this step.
            records: Outcomes no step has seen yet (delivered together, in position order).
            port: Storage's operations for this step.
        """
        assert self.resumable, "only a suspended run can be resumed"

        def deliver() -> None:
            self.context.deliver_new(list(records))
            self._loop.run_until_quiet()

        return self._later_step(info, port, deliver)

    def _later_step(self, info: WorkflowInfo, port: Any,
                    deliver: Callable[[], None]) -> StepOutcome:
        """Run ``deliver`` as step ``info.step`` of the run kept in memory; conclude it."""
        ctx = self.context
        ctx.begin_step(info, port)
        token = ctx.activate()
        try:
            deliver()
        finally:
            ctx.deactivate(token)
        return self._conclude()

    def run(self) -> StepOutcome:
        """One step from history, then close: the outcome of a replay that is not kept."""
        try:
            return self.start()
        finally:
            self.close()

    def commit(self) -> None:
        """The store recorded this step: its commands become this run's history."""
        self.context.end_step()

    def close(self) -> None:
        """Unwind the coroutine (its pending calls raise their suspension) and free the loop."""
        if self._loop.is_closed():
            return
        ctx = self.context
        token = ctx.activate()
        try:
            if self._task is not None and not self._task.done():
                ctx.interrupt_pending()
                self._loop.run_until_quiet()
            for leftover in asyncio.all_tasks(self._loop):
                leftover.cancel()
            self._loop.run_until_quiet()
            if self._task is not None and self._task.done() and not self._task.cancelled():
                self._task.exception()  # retrieved: an unwound run has nothing to report
        finally:
            ctx.deactivate(token)
            self._loop.close()

    async def _invoke(self) -> Any:
        ctx = self.context

        async def call_workflow() -> Any:
            return await self.function(*self.args)

        chain: Callable[[], Awaitable[Any]] = call_workflow
        for interceptor in reversed(self.interceptors):
            chain = _bind(interceptor, _interceptor_view(ctx), chain)
        return await chain()

    def _conclude(self) -> StepOutcome:
        ctx = self.context
        task = self._task
        assert task is not None
        if not task.done() and not ctx.pending_calls() and ctx.fatal is None:
            ctx.fatal = WorkflowSandboxError(
                f"workflow {ctx.info.workflow_name!r} is waiting on something that is not a "
                f"durable call (an asyncio future or event nobody will set); only "
                f"durable_celery.workflow calls may suspend a workflow")
        outcome = self._classify(task)
        outcome.commands = list(ctx.commands)
        outcome.counter = ctx.counter
        outcome.cancelled = list(ctx.cancelled_now)
        if outcome.status == StepStatus.SUSPENDED:
            outcome.outcomes_to_wake = ctx.outcomes_to_wake()
        return outcome

    def _classify(self, task: asyncio.Task[Any]) -> StepOutcome:
        ctx = self.context
        if ctx.fatal is not None:
            return StepOutcome(StepStatus.FAILED, error=ctx.fatal)
        if ctx.continued is not None:  # however the function ends afterwards
            ended_early = self._ended_early("continued as new")
            if ended_early is not None:
                return ended_early
            return StepOutcome(StepStatus.CONTINUED, result=ctx.continued)
        if not task.done():
            return StepOutcome(StepStatus.SUSPENDED)
        if task.cancelled():
            if ctx.cancel_delivered:
                return StepOutcome(StepStatus.CANCELLED, error=DurableInterruptedError(
                    f"cancelled: {ctx.cancel_reason}", type="CancelledError"))
            return StepOutcome(StepStatus.SUSPENDED)
        error = task.exception()
        if error is None:
            result = task.result()
            ended_early = self._ended_early("returned")
            if ended_early is not None:
                return ended_early
            if ctx.pending_calls() or any(c.status == "scheduled" for c in ctx.commands):
                # The function returned while calls were still in flight (a swallowed
                # suspension); what it registered is still acted on, and it replays later.
                return StepOutcome(StepStatus.SUSPENDED)
            try:
                result = self.encode_result(result)
            except (TypeError, ValueError) as exc:
                return StepOutcome(StepStatus.FAILED, error=DurableFatalError(
                    f"the result of workflow {ctx.info.workflow_name!r} must be "
                    f"JSON-serialisable: {safe_str(exc)}"))
            return StepOutcome(StepStatus.COMPLETED, result=result)
        if isinstance(error, DurableInterruption):
            return StepOutcome(StepStatus.SUSPENDED)
        if isinstance(error, TERMINAL_FAILURES):
            return StepOutcome(StepStatus.FAILED, error=error)
        if isinstance(error, Exception):
            return StepOutcome(StepStatus.FAILED, error=error, retryable=True)
        return StepOutcome(StepStatus.FAILED, error=DurableFatalError(
            f"workflow raised {type(error).__name__}: {safe_str(error)}"))


    def _ended_early(self, how: str) -> StepOutcome | None:
        """A function that ends before the positions history recorded is not the code that
        made the history; name a patch marker it skipped, if that is what it skipped."""
        ctx = self.context
        if ctx.recorded_positions <= ctx.counter:
            return None
        skipped = ctx.history.get(ctx.counter + 1)
        lost = (f"; the code no longer has patch {skipped.name!r} (keep "
                f"workflow.deprecate_patch({skipped.name!r}) while runs that recorded it may "
                f"still replay)" if skipped is not None and skipped.kind == PATCH_KIND else "")
        return StepOutcome(StepStatus.FAILED, error=NonDeterminismError(
            f"workflow {ctx.info.workflow_name!r} (id {ctx.info.workflow_id!r}) is not "
            f"deterministic: it {how} after {ctx.counter} durable calls, but history recorded "
            f"{ctx.recorded_positions}{lost}"))


#: The name of a one-step run before runs could be kept in memory.
ReplayStep = WorkflowRun


def _plain_json(value: Any) -> Any:
    json.dumps(value, allow_nan=False)
    return value


def _interceptor_view(ctx: ReplayContext) -> dict[str, Any]:
    info = ctx.info
    return {
        "workflow_id": info.workflow_id, "workflow_name": info.workflow_name,
        "task_queue": info.task_queue, "namespace": info.namespace,
        "workflow_dimension": info.workflow_dimension,
        "parent_workflow_id": info.parent_workflow_id,
        "origin_workflow_id": info.origin_workflow_id, "expire": info.expire,
        "counter": ctx.counter, "replaying": ctx.replaying,
    }


def _bind(interceptor: WorkflowInterceptor, view: dict[str, Any],
          inner: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return await interceptor.execute(view, inner)
    return call
