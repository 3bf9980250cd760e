"""``ReplayEventLoop``: the event loop a workflow thread runs on.

Real time never passes on it. It holds no file descriptors (no selector, no self-pipe), so a
suspended workflow can stay in memory between steps at the cost of its coroutine only. It runs
ready callbacks until none is left; a workflow waits only on durable calls, whose outcomes the
engine delivers between runs.

``asyncio.sleep(seconds)`` inside a workflow becomes a durable timer: the call takes a position
like ``workflow.sleep_for(seconds)`` and resolves when the stored timer fires. Every other
real-time timer (``asyncio.wait_for`` with a timeout, ``loop.call_later``) is refused with
:class:`~durable_celery.errors.WorkflowSandboxError`.
"""

from __future__ import annotations

import asyncio
import contextvars
from asyncio import events, futures
from collections.abc import Callable
from typing import Any

from ..errors import DurableInterruption, WorkflowSandboxError

__all__ = ["DurableTimerHandle", "ReplayEventLoop", "run_outside_loop"]

#: What ``asyncio.sleep(delay)`` schedules with ``loop.call_later``.
_SLEEP_CALLBACK = futures._set_result_unless_cancelled  # type: ignore[attr-defined]


class DurableTimerHandle(asyncio.TimerHandle):
    """What ``call_later`` returns for ``asyncio.sleep``: cancelling it drops the callback
    (the stored timer still fires; its outcome is simply not used)."""


class ReplayEventLoop(asyncio.BaseEventLoop):
    """A selector-free event loop driven by :meth:`run_until_quiet`."""

    def __init__(self) -> None:
        super().__init__()
        self.set_exception_handler(_report_unless_suspension)

    def _process_events(self, event_list: list[Any]) -> None:  # pragma: no cover - no I/O
        return None

    def _write_to_self(self) -> None:  # call_soon_threadsafe: nothing to wake, we never block
        return None

    def call_later(  # type: ignore[override]
            self, delay: float, callback: Callable[..., Any], *args: Any,
            context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        """``asyncio.sleep(delay)`` becomes a durable timer; any other timer is refused."""
        if callback is _SLEEP_CALLBACK:
            return self._durable_sleep(delay, callback, args, context)
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]
            self, when: float, callback: Callable[..., Any], *args: Any,
            context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        """Refused: real time does not pass in a workflow."""
        raise WorkflowSandboxError(
            "a workflow cannot use real-time timers (asyncio.wait_for with a timeout, "
            "asyncio.timeout, loop.call_later / call_at): they would not survive a crash and "
            "are not replayed; use asyncio.sleep(seconds) or workflow.sleep_for(...) for a "
            "durable timer and workflow.wait_for(..., timeout=...) for a bounded wait")

    def _durable_sleep(self, delay: float, callback: Callable[..., Any], args: tuple[Any, ...],
                       context: contextvars.Context | None) -> asyncio.TimerHandle:
        from .context import current_context

        handle = DurableTimerHandle(self.time() + delay, callback, args, self, context)
        call = current_context().sleep(delay)

        async def fire() -> None:
            try:
                await call
            except asyncio.CancelledError as cancelled:
                # A cancellation ended the durable sleep: the workflow's asyncio.sleep raises it.
                waiter = args[0] if args else None
                if isinstance(waiter, asyncio.Future) and not waiter.done():
                    waiter.cancel(*cancelled.args[:1])
                raise
            if not handle.cancelled():
                handle._run()

        self.create_task(fire())
        return handle

    def run_until_quiet(self) -> None:
        """Run ready callbacks until none is left (every task is done or waiting)."""
        previous = events._get_running_loop()
        events._set_running_loop(self)
        try:
            ready = self._ready  # type: ignore[attr-defined]  # BaseEventLoop's ready queue
            while ready:
                for _ in range(len(ready)):
                    handle = ready.popleft()
                    if not handle._cancelled:
                        handle._run()
        finally:
            events._set_running_loop(previous)


def _report_unless_suspension(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: a task the workflow left behind (``asyncio.wait``'s losers,
    an ``ensure_future`` never awaited) ends with the suspension it was waiting on when the run
    unwinds; that is the expected end of a suspended step, not an error to log. Anything else
    goes to asyncio's default handler."""
    if isinstance(context.get("exception"), DurableInterruption):
        return
    loop.default_exception_handler(context)


def run_outside_loop(function: Callable[[], Any]) -> Any:
    """Run ``function`` with no running loop set (e.g. ORM calls, which Django refuses under a
    running loop), from inside a callback of a workflow's loop."""
    previous = events._get_running_loop()
    events._set_running_loop(None)
    try:
        return function()
    finally:
        events._set_running_loop(previous)
