"""The replay context: the state of one workflow thread during one replay step.

The workflow-side API finds it through :func:`current_context` (a ContextVar) and asks it for
positions and outcomes. It never talks to storage: outcomes come in as
:class:`~durable_celery.engine.history.HistoryRecord` and leave as
:class:`~durable_celery.engine.history.Command`.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    ContinueAsNewError,
    DurableChildError,
    DurableError,
    DurableInterruption,
    DurableProxyError,
    DurableSleepError,
    DurableWaitForAllError,
    DurableWaitForError,
    InvalidArgumentError,
    NonDeterminismError,
    error_from_dict,
)
from .calls import DurableCall, defers, outcomes_to_wake, waits_in_a_group
from .history import (
    BLOCKING_KINDS,
    CANCEL_KIND,
    CANCEL_POSITION,
    PATCH_KIND,
    Command,
    HistoryRecord,
)

__all__ = [
    "MAX_TIMER_SECONDS",
    "DurableCall",
    "ReplayContext",
    "WorkflowInfo",
    "check_timer_seconds",
    "current_context",
    "deterministic_random",
]

_current: contextvars.ContextVar[ReplayContext | None] = contextvars.ContextVar(
    "durable_celery_replay_context", default=None)

#: Longest durable timer (sleep, wait timeout, retry delay): 100 years.
MAX_TIMER_SECONDS = 100 * 365 * 86400.0

_SUSPENSION_BY_KIND: dict[str, type[DurableInterruption]] = {
    "activity": DurableProxyError,
    "sleep": DurableSleepError,
    "wait": DurableWaitForError,
    "child": DurableChildError,
    "child_result": DurableChildError,
}


def current_context() -> ReplayContext:
    """Return the replay context of the workflow thread running now.

    Raises:
        RuntimeError: Called outside a workflow function.
    """
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError(
            "durable_celery.workflow functions can only be called inside a running workflow "
            "(an async def decorated with @durable_workflow, run by a worker)")
    return ctx


def deterministic_random(position: int) -> float:
    """``frac(sin(position) * 10000)``: the value ``workflow.random()`` returns at a position."""
    x = math.sin(position) * 10000
    return x - math.floor(x)


@dataclass(frozen=True)
class WorkflowInfo:
    """Who the running workflow is; the fields of ``workflow.get_context()``."""

    workflow_id: str
    workflow_name: str
    task_queue: str
    namespace: str
    workflow_dimension: str = ""
    parent_workflow_id: str | None = None
    origin_workflow_id: str | None = None
    expire: float | None = None
    step: int = 1
    run_id: str = ""




@dataclass(eq=False)
class ReplayContext:
    """Positions, stored outcomes and new commands of one workflow thread.

    A context lives as long as the run of the workflow coroutine: for one step when the workflow
    is replayed from history, or across many steps when the suspended run stays in memory
    (:mod:`durable_celery.engine.cache`). Each step begins with :meth:`begin_step` and ends with
    :meth:`end_step`, which turns the step's commands into history.

    Cancellation: a ``cancel`` record (:data:`~durable_celery.engine.history.CANCEL_KIND` at
    position 0) is delivered like an outcome — at the phase of the step that first saw it, after
    that step's other outcomes — and ends every call still waiting at that moment with
    ``asyncio.CancelledError``. Calls made afterwards (cleanup in ``finally:``) run normally.
    Delivered from history or to a run kept in memory, it lands at the same point.

    Attributes:
        info: Identity of the workflow (``info.step`` is the number of the current step).
        history: Records of this thread, by position (a cancel record is kept apart).
        commands: Calls made for the first time in this step, in position order.
        port: What storage offers during the step: ``port.perform(kind, operation, args)``
            computes the outcome of a call whose effect lives in the database (search fields,
            the entity document) inside the step's own transaction. ``None`` outside storage.
        cancel: The cancellation request of this run, if history has one.
        cancel_delivered: Whether it has been delivered to the workflow.
        cancelled_now: Positions whose calls a cancellation first delivered in this step ended
            (storage marks them cancelled).
        continued: The stored arguments of ``workflow.continue_as_new``, once called.
    """

    info: WorkflowInfo
    history: dict[int, HistoryRecord]
    port: Any = None
    counter: int = 0
    commands: list[Command] = field(default_factory=list)
    fatal: BaseException | None = None
    unwinding: bool = False
    phase: float = 0
    cancel: HistoryRecord | None = None
    cancel_delivered: bool = False
    cancelled_now: list[int] = field(default_factory=list)
    continued: list[Any] | None = None
    _waiting: dict[float, list[int]] = field(default_factory=dict)
    _pending: dict[int, tuple[DurableCall, bool]] = field(default_factory=dict)
    _last_recorded: int = 0

    def __post_init__(self) -> None:
        record = self.history.get(CANCEL_POSITION)
        if record is not None and record.kind == CANCEL_KIND:
            del self.history[CANCEL_POSITION]
            if record.resolved:
                self.cancel = record
        self._last_recorded = max(self.history, default=0)

    # -- what the workflow API calls ----------------------------------------------------------

    def activate(self) -> contextvars.Token[ReplayContext | None]:
        """Make this the current context (the runner does this)."""
        return _current.set(self)

    @staticmethod
    def deactivate(token: contextvars.Token[ReplayContext | None]) -> None:
        """Undo :meth:`activate`."""
        _current.reset(token)

    @property
    def replaying(self) -> bool:
        """Whether the current position was already recorded by an earlier step."""
        return self.counter < self._last_recorded

    def schedule(self, kind: str, name: str,
                 input: dict[str, Any] | Callable[[int], dict[str, Any]] | None = None,
                 transform: Callable[[Any], Any] | None = None,
                 throw_on_error: bool = True) -> DurableCall:
        """Take a position for a blocking call and return its awaitable.

        Args:
            kind: One of the blocking kinds (``activity``, ``sleep``, ``wait``, ``child``).
            name: What the call names; checked against history on replay.
            input: Details the store needs when the call is new, or a function of the
                position returning them (evaluated only when the call is new).
            transform: Applied to the stored result before the workflow sees it.
            throw_on_error: When ``False`` a stored failure is returned as an error object.
        """
        assert kind in BLOCKING_KINDS, kind
        seq = self._take_position(kind, name)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call = DurableCall(future, seq, kind, transform)
        record = self.history.get(seq)
        if record is None:
            details = input(seq) if callable(input) else dict(input or {})
            self.commands.append(Command(seq, self.info.workflow_dimension, kind, name, details))
            self._pending[seq] = (call, throw_on_error)
        elif not record.resolved:
            self._pending[seq] = (call, throw_on_error)
        else:
            group = float(record.observed_step) if record.observed_step is not None else math.inf
            if group <= self.phase:
                _resolve(future, record, throw_on_error)
            else:
                self._waiting.setdefault(group, []).append(seq)
                self._pending[seq] = (call, throw_on_error)
        return call

    def sleep(self, seconds: float) -> DurableCall:
        """Take a position for a durable sleep of ``seconds`` (``sleep_for``, ``asyncio.sleep``).

        Raises:
            InvalidArgumentError: ``seconds`` is negative, not finite, or beyond
                :data:`MAX_TIMER_SECONDS`.
        """
        return self.schedule("sleep", "", {"seconds": check_timer_seconds(seconds, "sleep")})

    def record_now(self, kind: str, name: str, compute: Callable[[int], Any],
                   input: dict[str, Any] | None = None) -> tuple[Any, bool]:
        """Take a position for a call whose outcome is known in this step.

        Args:
            kind: The call's kind (``random``, ``signal``, ``emit`` …).
            name: What it names; checked against history on replay.
            compute: Given the position, returns the outcome; called on first run only.
            input: Details the store needs to act on a new call.

        Raises:
            DurableError: ``compute`` refused (first run, recorded as failed) or the stored
                outcome is a failure (replay).

        Returns:
            ``(outcome, first_run)``: the outcome (stored one on replay) and whether this run is
            the first to reach the position.
        """
        seq = self._take_position(kind, name)
        record = self.history.get(seq)
        if record is not None:
            if record.status == "failed" and record.error:
                raise error_from_dict(record.error)
            return record.result, False
        try:
            value = compute(seq)
        except DurableError as error:
            # A refusal (e.g. a child id that is already running) is an outcome too: recorded
            # at this position, raised again on every replay.
            self.commands.append(Command(seq, self.info.workflow_dimension, kind, name,
                                         dict(input or {}), status="failed",
                                         error=error.to_dict()))
            raise
        self.commands.append(Command(seq, self.info.workflow_dimension, kind, name,
                                     dict(input or {}), status="completed", result=value))
        return value, True

    def patch(self, patch_id: str) -> bool:
        """``workflow.patched`` / ``deprecate_patch``: whether this run takes the patched code.

        A marker at the next position (same patch id) means a run that had the patch: the
        position is taken and the answer is ``True``. Another call recorded at that position
        means history from before the patch: no position is taken and the answer is ``False``.
        A position history does not hold yet is reached for the first time, by code that has
        the patch: the marker is recorded and the answer is ``True``.
        """
        if self.continued is not None or self.unwinding or self.fatal is not None:
            self._take_position(PATCH_KIND, patch_id)  # raises what any call raises now
        record = self.history.get(self.counter + 1)
        if record is not None and not (record.kind == PATCH_KIND and record.name == patch_id):
            return False
        self.record_now(PATCH_KIND, patch_id, lambda _seq: True)
        return True

    def continue_as_new(self, args: list[Any]) -> ContinueAsNewError:
        """Mark this run as continuing as new with the stored ``args``; return the error that
        unwinds the workflow function (any durable call made while it unwinds raises it
        again)."""
        if self.continued is None:
            self.continued = list(args)
        return ContinueAsNewError(f"workflow {self.info.workflow_name!r} continues as new")

    # -- what the runner calls ----------------------------------------------------------------

    def begin_step(self, info: WorkflowInfo, port: Any) -> None:
        """Start step ``info.step`` of a run kept in memory: new commands, a new port."""
        self.info = info
        self.port = port
        self.commands = []

    def end_step(self) -> None:
        """The step's commands become history of this run (they were stored by the store)."""
        step = self.info.step
        for command in self.commands:
            resolved = command.status != "scheduled"
            self.history[command.seq] = HistoryRecord(
                command.seq, command.dimension, command.kind, command.name, command.status,
                command.result, command.error, step if resolved else None)
        self.commands = []
        self.cancelled_now = []
        self._last_recorded = max(self._last_recorded, self.counter)

    def next_phase(self) -> float | None:
        """The earliest moment at which a stored outcome still to deliver arrived (``inf`` =
        during this step), or ``None`` when there is nothing left to deliver."""
        cancel = self._cancel_phase()
        phases = [*self._waiting, *([] if cancel is None else [cancel])]
        return min(phases, default=None)

    def deliver(self, phase: float) -> None:
        """Resolve the calls whose outcomes arrived at ``phase``, then deliver a cancellation
        that arrived then."""
        self.phase = phase
        for seq in self._waiting.pop(phase, []):
            self._settle(seq, self.history[seq])
        if self._cancel_phase() == phase:
            self._deliver_cancel()

    def deliver_new(self, records: list[HistoryRecord]) -> list[int]:
        """Resolve waiting calls of a run kept in memory with outcomes new to this step.

        The outcomes are delivered together, in position order, as a replay from history
        delivers the outcomes first seen by one step.

        Returns:
            The positions that were delivered (records of calls this run is not waiting for
            are ignored).
        """
        delivered = []
        cancel = None
        for record in sorted(records, key=lambda r: r.seq):
            if record.kind == CANCEL_KIND and record.seq == CANCEL_POSITION:
                cancel = record
            elif record.resolved and record.seq in self._pending:
                self.history[record.seq] = record
                self._settle(record.seq, record)
                delivered.append(record.seq)
        if cancel is not None and cancel.resolved and self.cancel is None:
            self.cancel = cancel
            self._deliver_cancel()
        return delivered

    def load_later_steps(self, records: list[HistoryRecord], since: int) -> None:
        """Take the history that steps after ``since`` recorded (and outcomes no step has seen
        yet), to be delivered phase by phase as a replay from history would deliver it.

        For a run kept in memory at step ``since`` while another process took the later steps:
        the calls it waits for are resolved in the order those steps saw their outcomes, and
        calls the code makes on the way find their positions in history (they were recorded by
        those steps), so nothing is decided twice.
        """
        self.phase = float(since)
        for record in sorted(records, key=lambda r: r.seq):
            if record.kind == CANCEL_KIND and record.seq == CANCEL_POSITION:
                if record.resolved and self.cancel is None:
                    self.cancel = record
                continue
            self.history[record.seq] = record
            self._last_recorded = max(self._last_recorded, record.seq)
            if record.resolved and record.seq in self._pending:
                group = float(record.observed_step) if record.observed_step is not None \
                    else math.inf
                self._waiting.setdefault(group, []).append(record.seq)

    def pending_calls(self) -> list[DurableCall]:
        """Calls still waiting for an outcome."""
        return [call for call, _ in self._pending.values() if not call.future.done()]

    def waiting_for(self, seq: int) -> bool:
        """Whether the call at position ``seq`` waits for its outcome."""
        pending = self._pending.get(seq)
        return pending is not None and not pending[0].future.done()

    def outcomes_to_wake(self) -> int:
        """How many activity outcomes must arrive before this suspended thread could move
        (see :func:`~durable_celery.engine.calls.outcomes_to_wake`)."""
        return outcomes_to_wake(call for call, _ in self._pending.values())

    def defers(self, seq: int) -> bool:
        """Whether the outcome of activity call ``seq`` alone cannot move this thread (see
        :func:`~durable_celery.engine.calls.defers`)."""
        pending = self._pending.get(seq)
        return pending is not None and defers(pending[0])

    def interrupt_pending(self) -> None:
        """End every waiting call with its control-flow error so the coroutines unwind."""
        self.unwinding = True
        for call in self.pending_calls():
            suspension = DurableWaitForAllError if waits_in_a_group(call) \
                else _SUSPENSION_BY_KIND[call.kind]
            call.future.set_exception(suspension(
                f"{call.kind} at position {call.seq} is not finished yet"))
        self._pending.clear()
        self._waiting.clear()

    @property
    def recorded_positions(self) -> int:
        """Highest position history holds for this thread."""
        return self._last_recorded

    @property
    def cancel_reason(self) -> str:
        """The reason the cancellation request gave (or a default)."""
        result = self.cancel.result if self.cancel is not None else None
        reason = result.get("reason") if isinstance(result, dict) else None
        return str(reason) if reason else "workflow cancelled"

    # -- internals ----------------------------------------------------------------------------

    def _cancel_phase(self) -> float | None:
        if self.cancel is None or self.cancel_delivered:
            return None
        observed = self.cancel.observed_step
        return float(observed) if observed is not None else math.inf

    def _deliver_cancel(self) -> None:
        """End every waiting call with ``asyncio.CancelledError`` (once per run)."""
        self.cancel_delivered = True
        first_time = self.cancel is not None and self.cancel.observed_step is None
        message = self.cancel_reason
        for seq, (call, _) in sorted(self._pending.items()):
            if not call.future.done():
                call.future.cancel(message)
                if first_time:
                    self.cancelled_now.append(seq)
        self._pending.clear()

    def _settle(self, seq: int, record: HistoryRecord) -> None:
        pending = self._pending.pop(seq, None)
        if pending is not None and not pending[0].future.done():
            _resolve(pending[0].future, record, pending[1])

    def _take_position(self, kind: str, name: str) -> int:
        if self.continued is not None:
            raise ContinueAsNewError(
                f"workflow {self.info.workflow_name!r} continues as new; no durable call can "
                f"run after workflow.continue_as_new")
        if self.unwinding:
            raise _SUSPENSION_BY_KIND.get(kind, DurableProxyError)(
                "the workflow is suspended; no durable call can run now")
        if self.fatal is not None:
            raise self.fatal
        self.counter += 1
        seq = self.counter
        record = self.history.get(seq)
        if record is not None and (record.kind != kind or record.name != name):
            dimension = self.info.workflow_dimension
            lost_patch = (f"; the code no longer has patch {record.name!r} (keep "
                          f"workflow.deprecate_patch({record.name!r}) at this point while runs "
                          f"that recorded it may still replay)"
                          if record.kind == PATCH_KIND else "")
            self.fatal = NonDeterminismError(
                f"workflow {self.info.workflow_name!r} (id {self.info.workflow_id!r}) is not "
                f"deterministic at position {seq}"
                f"{' of thread ' + repr(dimension) if dimension else ''}: "
                f"history recorded {record.kind} {record.name!r}, but the code now calls "
                f"{kind} {name!r}{lost_patch}")
            raise self.fatal
        return seq


def _resolve(future: asyncio.Future[Any], record: HistoryRecord, throw_on_error: bool) -> None:
    if record.status == "failed":
        error = error_from_dict(record.error or {"message": "failed", "code": 598})
        if throw_on_error:
            future.set_exception(error)
        else:
            future.set_result(error)
    else:
        future.set_result(record.result)


def check_timer_seconds(seconds: Any, what: str) -> float:
    """Return ``seconds`` as a float if a durable timer can wait that long.

    Raises:
        InvalidArgumentError: Negative, not a finite number, or beyond
            :data:`MAX_TIMER_SECONDS` (a due time the database can store).
    """
    number = not isinstance(seconds, bool) and isinstance(seconds, (int, float))
    # an int beyond MAX_TIMER_SECONDS is refused before isfinite(), which cannot convert 10**400
    if not number or seconds < 0 or seconds > MAX_TIMER_SECONDS or not math.isfinite(seconds):
        raise InvalidArgumentError(
            f"{what} duration must be a finite number of seconds between 0 and "
            f"{MAX_TIMER_SECONDS:.0f} (100 years), got {seconds!r:.80}")
    return float(seconds)
