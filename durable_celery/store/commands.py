"""Recording a step's new durable calls and acting on each, inside the step's transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..engine import Command
from ..models import HistoryEvent, HistoryStatus, TimerKind, WorkflowExecution
from .dispatch import activity_message, activity_queue, is_local, prepare_attempt, send_attempt
from .effects import StepEffects
from .signals import deliver_signal, take_buffered_signal

__all__ = ["CommandHandler", "EagerPolicy", "NO_EAGER", "claimer_for", "record_commands"]

#: Acts on one new history row inside the step's transaction.
CommandHandler = Callable[[WorkflowExecution, HistoryEvent, StepEffects], None]


class EagerPolicy(Protocol):
    """Whether the stepping process may claim a new activity attempt to run itself.

    Attributes:
        worker_id: The stepping process (``None``: not a worker; nothing is claimed).
        task_id: The Celery task the claimed attempts run in (recorded with them).
    """

    worker_id: int | None
    task_id: str | None

    def allows(self, queue: str, activity: str) -> bool:
        """Whether this ordinary activity may run here, now (one more eager step)."""


class _NoEager:
    worker_id: int | None = None
    task_id: str | None = None

    def allows(self, queue: str, activity: str) -> bool:
        return False


#: Nothing runs here: every attempt goes through its queue.
NO_EAGER: EagerPolicy = _NoEager()


def record_commands(execution: WorkflowExecution, commands: list[Command], step: int,
                    effects: StepEffects, eager: EagerPolicy) -> list[dict[str, Any]]:
    """Store new history rows for ``commands`` and act on each.

    Activity attempts are claimed for this process when ``eager`` allows (local activities
    whenever a worker process steps), otherwise sent to their queues.

    Returns:
        The attempt messages claimed to run in this process after commit.
    """
    if not commands:
        return []
    now = effects.now
    rows: list[HistoryEvent] = []
    send: list[HistoryEvent] = []
    claimed: list[HistoryEvent] = []
    eager_taken = effects.eager_taken
    for command in commands:
        resolved = command.status != HistoryStatus.SCHEDULED
        row = HistoryEvent(
            execution_id=execution.pk, dimension=command.dimension, seq=command.seq,
            kind=command.kind, name=command.name, status=command.status, input=command.input,
            result=command.result if resolved else None, error=command.error,
            observed_step=step if resolved else None, created_at=now,
            completed_at=now if resolved else None)
        if command.kind == "activity":
            row.attempts = 1
            claim_for = claimer_for(execution, row, eager, eager_taken=eager_taken)
            if claim_for is not None and not is_local(row):
                eager_taken = True  # one ordinary activity per step; a fan-out uses the broker
            if prepare_attempt(execution, row, now, claim_for=claim_for,
                               celery_task_id=eager.task_id):
                send.append(row)
            elif claim_for is not None:
                claimed.append(row)
        rows.append(row)
    effects.eager_taken = eager_taken
    HistoryEvent.objects.bulk_create(rows)
    for row in send:
        send_attempt(execution, row, effects.batch)
    for row in rows:
        handler = COMMAND_HANDLERS.get(row.kind)
        if handler is not None:
            handler(execution, row, effects)
    return [activity_message(execution, row) for row in claimed]


def claimer_for(execution: WorkflowExecution, row: HistoryEvent, eager: EagerPolicy, *,
                eager_taken: bool) -> int | None:
    """The process that claims a new activity call to run itself after commit, or ``None``.

    Local activities are claimed whenever a worker process steps; an ordinary one when ``eager``
    allows it and no other ordinary activity of the step was claimed (a fan-out goes through
    the broker, where every worker can take a share).
    """
    if eager.worker_id is None:
        return None
    if is_local(row) or (not eager_taken
                         and eager.allows(activity_queue(execution, row), row.name)):
        return eager.worker_id
    return None


def _start_sleep(execution: WorkflowExecution, row: HistoryEvent, effects: StepEffects) -> None:
    effects.add_timer(row.pk, TimerKind.SLEEP, float(row.input.get("seconds", 0)))


def _open_wait(execution: WorkflowExecution, row: HistoryEvent, effects: StepEffects) -> None:
    found, payload = take_buffered_signal(execution.namespace, row.name)
    if found:
        HistoryEvent.objects.settle(row.pk, result=payload, now=effects.now)
        return
    timeout = row.input.get("timeout")
    if timeout is not None:
        effects.add_timer(row.pk, TimerKind.WAIT_TIMEOUT, float(timeout))


def _send_signal(execution: WorkflowExecution, row: HistoryEvent, effects: StepEffects) -> None:
    deliver_signal(execution.namespace, row.name, row.input.get("data"), now=effects.now,
                   batch=effects.batch, current_execution=execution.pk)


def _start_awaited_child(execution: WorkflowExecution, row: HistoryEvent,
                         effects: StepEffects) -> None:
    from .composition import start_awaited_child

    start_awaited_child(execution, row, effects)


def _await_started_child(execution: WorkflowExecution, row: HistoryEvent,
                         effects: StepEffects) -> None:
    from .lifecycle import await_started_child

    await_started_child(execution, row, effects)


#: What each kind of new call does besides being recorded.
COMMAND_HANDLERS: dict[str, CommandHandler] = {
    "sleep": _start_sleep,
    "wait": _open_wait,
    "signal": _send_signal,
    "child": _start_awaited_child,
    "child_result": _await_started_child,
}
