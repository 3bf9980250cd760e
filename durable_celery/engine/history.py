"""What the engine reads from storage and what it asks storage to write: plain data, no ORM."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BLOCKING_KINDS",
    "CANCEL_KIND",
    "CANCEL_POSITION",
    "Command",
    "HistoryRecord",
    "PATCH_KIND",
    "RESOLVED_STATUSES",
    "StepStatus",
]

#: Kinds whose outcome arrives later, from outside the step (an activity, a timer, a signal…).
BLOCKING_KINDS = frozenset({"activity", "sleep", "wait", "child", "child_result"})

#: Kind of the record of a cancellation request (``handle.cancel()``). It sits at
#: :data:`CANCEL_POSITION` of the main thread, a position no call takes, and its
#: ``observed_step`` is the step that delivered it to the workflow.
CANCEL_KIND = "cancel"
CANCEL_POSITION = 0

#: Kind of a ``workflow.patched`` / ``deprecate_patch`` marker; its name is the patch id.
PATCH_KIND = "patch"

#: History statuses that carry an outcome.
RESOLVED_STATUSES = frozenset({"completed", "failed"})


@dataclass(frozen=True)
class HistoryRecord:
    """One recorded durable call, as the replay needs it.

    Attributes:
        seq: Position of the call in its dimension (1-based).
        dimension: ``""`` for the main thread, another string for a hook thread.
        kind: What the call was (``activity``, ``sleep``, ``wait``, ``random`` …).
        name: What it named (activity name, signal id …); compared on replay.
        status: ``scheduled``, ``completed``, ``failed`` or ``cancelled``.
        result: The JSON outcome when completed.
        error: The stored error dict (``type``, ``message``, ``code``) when failed.
        observed_step: Number of the replay step that first saw the outcome; ``None`` while no
            step has seen it.
    """

    seq: int
    dimension: str
    kind: str
    name: str
    status: str
    result: Any = None
    error: dict[str, Any] | None = None
    observed_step: int | None = None

    @property
    def resolved(self) -> bool:
        """Whether the record carries an outcome."""
        return self.status in RESOLVED_STATUSES


@dataclass
class Command:
    """A durable call made for the first time in this step: storage records it and acts on it.

    Attributes:
        seq: Position taken by the call.
        dimension: Thread the call belongs to.
        kind: As :attr:`HistoryRecord.kind`.
        name: As :attr:`HistoryRecord.name`.
        input: JSON details the store needs to act (arguments, options, durations …).
        status: ``scheduled`` for blocking kinds; ``completed`` when the outcome is already known.
        result: The known outcome of a non-blocking call.
        error: The error dict when a non-blocking call failed (``status == "failed"``).
    """

    seq: int
    dimension: str
    kind: str
    name: str
    input: dict[str, Any] = field(default_factory=dict)
    status: str = "scheduled"
    result: Any = None
    error: dict[str, Any] | None = None


class StepStatus:
    """How a replay step ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    SUSPENDED = "suspended"
    #: The function ended with the ``asyncio.CancelledError`` a cancellation raised in it.
    CANCELLED = "cancelled"
    #: The function called ``workflow.continue_as_new``; ``StepOutcome.result`` holds the
    #: arguments of the next run.
    CONTINUED = "continued"
