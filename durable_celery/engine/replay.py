"""``ReplayStep``: run a workflow function from the top against its history and decide.

A step re-executes the coroutine on a fresh, private event loop. Stored outcomes are handed back in
the order they originally arrived (one delivery per earlier step), so concurrent branches
interleave exactly as they did the first time; then the outcomes new to this step are delivered.
When nothing can run any more the step ends: completed, failed, or suspended on new commands.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import (
    DurableError,
    DurableFatalError,
    DurableInterruption,
    DurableMaxedError,
    DurableTimeoutError,
    NonDeterminismError,
    WorkflowSandboxError,
)
from .context import ReplayContext, WorkflowInfo
from .history import Command, HistoryRecord, StepStatus

__all__ = ["ReplayEventLoop", "ReplayStep", "StepOutcome", "WorkflowInterceptor", "describe_error"]

#: Failures that end a workflow at once; anything else is retried by the workflow's policy.
TERMINAL_FAILURES = (DurableFatalError, DurableTimeoutError, DurableMaxedError,
                     NonDeterminismError)


class WorkflowInterceptor(Protocol):
    """Wraps every run of a workflow function, on every replay."""

    async def execute(self, ctx: dict[str, Any],
                      next: Callable[[], Awaitable[Any]]) -> Any: ...  # noqa: A002


class ReplayEventLoop(asyncio.SelectorEventLoop):
    """An event loop on which real time never passes: timers are refused with a clear error."""

    def call_at(  # type: ignore[override]
            self, when: float, callback: Callable[..., Any], *args: Any,
            context: Any = None) -> asyncio.TimerHandle:
        raise WorkflowSandboxError(
            "a workflow cannot use real timers (asyncio.sleep with a delay, asyncio.wait_for, "
            "loop.call_later): they would not survive a crash and are not replayed; use "
            "workflow.sleep_for(...) or workflow.wait_for(..., timeout=...)")

    def run_until_quiet(self) -> None:
        """Run callbacks until none is ready (every task is done or waiting)."""
        while True:
            self.call_soon(self.stop)
            self.run_forever()
            if not self._ready:  # type: ignore[attr-defined]  # CPython's ready queue
                return


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
    """

    status: str
    commands: list[Command] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None
    retryable: bool = False
    counter: int = 0


class ReplayStep:
    """Replays one workflow thread and returns its :class:`StepOutcome`.

    Args:
        function: The ``async def`` workflow function.
        args: Its arguments.
        info: Who the workflow is.
        history: Stored records of this thread.
        interceptors: Workflow interceptors, outermost first.
        port: Storage's operations for calls computed in the step (see ``ReplayContext.port``).
    """

    def __init__(self, function: Callable[..., Awaitable[Any]], args: Sequence[Any],
                 info: WorkflowInfo, history: Sequence[HistoryRecord],
                 interceptors: Sequence[WorkflowInterceptor] = (), port: Any = None) -> None:
        self.function = function
        self.args = list(args)
        self.context = ReplayContext(info, {r.seq: r for r in history}, port=port)
        self.interceptors = list(interceptors)

    def run(self) -> StepOutcome:
        """Run the workflow until it finishes or can go no further."""
        loop = ReplayEventLoop()
        token = self.context.activate()
        try:
            task = loop.create_task(self._invoke())
            loop.run_until_quiet()
            while not task.done():
                phase = self.context.next_phase()
                if phase is None:
                    break
                self.context.deliver(phase)
                loop.run_until_quiet()
            return self._conclude(loop, task)
        finally:
            self.context.deactivate(token)
            loop.close()

    async def _invoke(self) -> Any:
        ctx = self.context

        async def call_workflow() -> Any:
            return await self.function(*self.args)

        chain: Callable[[], Awaitable[Any]] = call_workflow
        for interceptor in reversed(self.interceptors):
            chain = _bind(interceptor, _interceptor_view(ctx), chain)
        return await chain()

    def _conclude(self, loop: ReplayEventLoop, task: asyncio.Task[Any]) -> StepOutcome:
        ctx = self.context
        if not task.done():
            if not ctx.pending_calls():
                ctx.fatal = ctx.fatal or WorkflowSandboxError(
                    f"workflow {ctx.info.workflow_name!r} is waiting on something that is not a "
                    f"durable call (an asyncio future or event nobody will set); only "
                    f"durable_celery.workflow calls may suspend a workflow")
            ctx.interrupt_pending()
            loop.run_until_quiet()
            for leftover in asyncio.all_tasks(loop):
                leftover.cancel()
            loop.run_until_quiet()
        outcome = self._classify(task)
        outcome.commands = ctx.commands
        outcome.counter = ctx.counter
        return outcome

    def _classify(self, task: asyncio.Task[Any]) -> StepOutcome:
        ctx = self.context
        if task.done() and not task.cancelled():
            task.exception()  # marks it retrieved, whatever the verdict
        if ctx.fatal is not None:
            return StepOutcome(StepStatus.FAILED, error=ctx.fatal)
        if task.cancelled():
            return StepOutcome(StepStatus.SUSPENDED)
        error = task.exception()
        if error is None:
            result = task.result()
            if ctx.recorded_positions > ctx.counter:
                return StepOutcome(StepStatus.FAILED, error=NonDeterminismError(
                    f"workflow {ctx.info.workflow_name!r} (id {ctx.info.workflow_id!r}) is not "
                    f"deterministic: it returned after {ctx.counter} durable calls, but history "
                    f"recorded {ctx.recorded_positions}"))
            try:
                json.dumps(result, allow_nan=False)
            except (TypeError, ValueError) as exc:
                return StepOutcome(StepStatus.FAILED, error=DurableFatalError(
                    f"the result of workflow {ctx.info.workflow_name!r} must be "
                    f"JSON-serialisable: {exc}"))
            if ctx.pending_calls() or any(c.status == "scheduled" for c in ctx.commands):
                # The function returned while calls were still in flight (a swallowed
                # suspension); what it registered is still acted on, and it replays later.
                return StepOutcome(StepStatus.SUSPENDED)
            return StepOutcome(StepStatus.COMPLETED, result=result)
        if isinstance(error, DurableInterruption):
            return StepOutcome(StepStatus.SUSPENDED)
        if isinstance(error, TERMINAL_FAILURES):
            return StepOutcome(StepStatus.FAILED, error=error)
        if isinstance(error, Exception):
            return StepOutcome(StepStatus.FAILED, error=error, retryable=True)
        return StepOutcome(StepStatus.FAILED, error=DurableFatalError(
            f"workflow raised {type(error).__name__}: {error}"))


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


def describe_error(error: BaseException) -> dict[str, Any]:
    """The JSON form of any error: durable ones keep their class and code."""
    if isinstance(error, (DurableError, DurableInterruption)):
        return error.to_dict()
    return {"type": type(error).__name__, "message": str(error), "code": None}
