"""How each kind of new durable call is recorded and acted on inside the step's transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..conf import durable_setting
from ..engine import Command
from ..models import HistoryEvent, Timer, TimerKind, WorkflowExecution
from .outbox import RUN_ACTIVITY_TASK, OutboxBatch
from .signals import deliver_signal, take_buffered_signal

__all__ = ["CommandHandler", "activity_lease", "activity_message", "apply_commands",
           "register_command_handler", "started_activity_lease"]

#: Acts on one new history row. Returns ``True`` when it settled an outcome this execution must
#: replay at once (a buffered signal taken by a wait, a signal sent to itself).
CommandHandler = Callable[[WorkflowExecution, HistoryEvent, "CommandEffects"], bool]

_handlers: dict[str, CommandHandler] = {}


class CommandEffects:
    """What handlers of one step share: the clock, the outbox batch, timers to create."""

    def __init__(self, now: datetime, batch: OutboxBatch) -> None:
        self.now = now
        self.batch = batch
        self.timers: list[Timer] = []
        #: A hook thread was started in this same execution: step again before committing.
        self.wake_self = False
        #: ``(reason, descend)`` when the workflow interrupted itself.
        self.interrupt_self: tuple[str | None, bool] | None = None

    def add_timer(self, execution: WorkflowExecution, event: HistoryEvent | None, kind: str,
                  seconds: float) -> None:
        """Create a timer due ``seconds`` from now."""
        self.timers.append(Timer(execution=execution, event=event, kind=kind,
                                 due_at=self.now + timedelta(seconds=seconds)))


def register_command_handler(kind: str, handler: CommandHandler) -> None:
    """Make ``handler`` act on every new history row of ``kind``."""
    _handlers[kind] = handler


def activity_lease(now: datetime, timeout: float | None) -> datetime:
    """When an attempt queued now is presumed lost if it has not started by then.

    ``start_to_close_timeout`` counts from the start of an attempt, not from its scheduling: an
    attempt waiting behind others in its queue is not lost. It gets ``DURABLE_ACTIVITY_LEASE``
    to start; :func:`started_activity_lease` takes over when it does.

    Args:
        now: When the attempt is scheduled.
        timeout: Its ``start_to_close_timeout`` (a longer one extends the queue lease).
    """
    seconds = float(durable_setting("DURABLE_ACTIVITY_LEASE"))
    if timeout is not None:
        seconds = max(seconds, timeout + float(durable_setting("DURABLE_ACTIVITY_LEASE_GRACE")))
    return now + timedelta(seconds=seconds)


def started_activity_lease(now: datetime, timeout: float | None) -> datetime:
    """When an attempt started now is presumed lost if no outcome arrived."""
    if timeout is None:
        return now + timedelta(seconds=float(durable_setting("DURABLE_ACTIVITY_LEASE")))
    grace = float(durable_setting("DURABLE_ACTIVITY_LEASE_GRACE"))
    return now + timedelta(seconds=timeout + grace)


def activity_message(execution: WorkflowExecution, event: HistoryEvent) -> dict[str, Any]:
    """The body of one activity attempt's Celery message (only this call, never the history)."""
    data = event.input
    return {
        "event": event.pk, "execution": execution.pk, "attempt": event.attempts,
        "activity": event.name, "args": data.get("args", []),
        "task_queue": data.get("task_queue") or execution.task_queue,
        "workflow_id": execution.workflow_id, "workflow_name": execution.workflow_name,
        "namespace": execution.namespace,
        "task_queue_of_workflow": execution.task_queue, "retry_policy": data.get("retry_policy"),
        "timeout": data.get("start_to_close_timeout"), "headers": data.get("headers") or {},
    }


def apply_commands(execution: WorkflowExecution, commands: list[Command], step: int,
                   effects: CommandEffects) -> bool:
    """Store new history rows for ``commands`` and act on each; ``True`` if one settled at once."""
    if not commands:
        return False
    now = effects.now
    rows = []
    for command in commands:
        resolved = command.status != "scheduled"
        row = HistoryEvent(
            execution=execution, dimension=command.dimension, seq=command.seq,
            kind=command.kind, name=command.name, status=command.status, input=command.input,
            result=command.result if resolved else None, error=command.error,
            observed_step=step if resolved else None,
            completed_at=now if resolved else None)
        if command.kind == "activity":
            row.attempts = 1
            row.lease_until = activity_lease(now, command.input.get("start_to_close_timeout"))
        rows.append(row)
    HistoryEvent.objects.bulk_create(rows)
    settled_now = False
    for row in rows:
        handler = _handlers.get(row.kind)
        if handler is not None and handler(execution, row, effects):
            settled_now = True
    if effects.timers:
        Timer.objects.bulk_create(effects.timers)
        effects.timers = []
    return settled_now


def _schedule_activity(execution: WorkflowExecution, row: HistoryEvent,
                       effects: CommandEffects) -> bool:
    queue = f"{row.input.get('task_queue') or execution.task_queue}-activity"
    effects.batch.add(RUN_ACTIVITY_TASK, queue, [activity_message(execution, row)])
    return False


def _start_sleep(execution: WorkflowExecution, row: HistoryEvent,
                 effects: CommandEffects) -> bool:
    effects.add_timer(execution, row, TimerKind.SLEEP, float(row.input.get("seconds", 0)))
    return False


def _open_wait(execution: WorkflowExecution, row: HistoryEvent, effects: CommandEffects) -> bool:
    found, payload = take_buffered_signal(execution.namespace, row.name)
    if found:
        HistoryEvent.objects.settle(row.pk, result=payload, now=effects.now)
        return True
    timeout = row.input.get("timeout")
    if timeout is not None:
        effects.add_timer(execution, row, TimerKind.WAIT_TIMEOUT, float(timeout))
    return False


def _send_signal(execution: WorkflowExecution, row: HistoryEvent,
                 effects: CommandEffects) -> bool:
    woken = deliver_signal(execution.namespace, row.name, row.input.get("data"), now=effects.now,
                           batch=effects.batch, current_execution=execution.pk)
    return execution.pk in woken


register_command_handler("activity", _schedule_activity)
register_command_handler("sleep", _start_sleep)
register_command_handler("wait", _open_wait)
register_command_handler("signal", _send_signal)
