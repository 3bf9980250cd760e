"""Resuming an interrupted or failed run where it stopped: the one implementation behind
``handle.resume()``, the admin's retry and ``manage.py durable resume`` / ``retry``.

Recorded outcomes stay. What was open when the run ended is issued again: the calls that
``finish_execution`` closed as cancelled (they carry no error; calls a cancellation ended do,
and the workflow no longer waits for them) and the hook threads it stopped. For a failed run,
the failed activity calls its failure came from run again with fresh attempts; when the
workflow function failed by itself, a new replay step runs it again over its history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import clock
from ..models import (
    ExecutionStatus,
    HistoryEvent,
    HistoryStatus,
    Timer,
    TimerKind,
    WorkflowExecution,
    WorkflowThread,
)
from .dispatch import dispatch_attempt
from .executions import current_run
from .finish import child_outcome_for_parent
from .outbox import OutboxBatch
from .signals import lock_signal_ids, take_buffered_signal

__all__ = ["OPERATOR_DIMENSION", "Resumed", "failed_step_of", "reopen_failed_activity",
           "resume_run"]

#: History dimension of operator rows; never a workflow thread's dimension.
OPERATOR_DIMENSION = "operator"


@dataclass
class Resumed:
    """What :func:`resume_run` did.

    Attributes:
        failed: Failed activity calls run again (``dimension, seq, name``).
        reopened: Calls open when the run ended, issued again (``dimension, seq, kind, name``).
        threads: Hook threads running again (their dimensions).
    """

    failed: list[dict[str, Any]] = field(default_factory=list)
    reopened: list[dict[str, Any]] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)


def failed_step_of(execution: WorkflowExecution) -> list[HistoryEvent]:
    """The failed activity rows the failure of ``execution`` came from.

    These are the failed activity calls whose error is the one the workflow ended with (the
    workflow let it propagate). Empty when the workflow function failed by itself.
    """
    error = execution.error or {}
    rows = HistoryEvent.objects.filter(execution=execution, kind="activity",
                                       status=HistoryStatus.FAILED) \
        .exclude(dimension=OPERATOR_DIMENSION).order_by("dimension", "seq")
    return [row for row in rows
            if (row.error or {}).get("message") == error.get("message")
            and (row.error or {}).get("type") == error.get("type")]


def resume_run(execution: WorkflowExecution, batch: OutboxBatch) -> Resumed:
    """Make an ended run (interrupted or failed, locked by the caller) run again from where it
    stopped, in the caller's transaction; the caller has checked that it may.

    The run becomes ``running`` with its error cleared and a replay step requested; its
    version moves on, so a copy kept in a worker's memory is rebuilt from history. An
    ``execution_timeout`` deadline still ahead is armed again; one already passed is dropped.
    """
    now = clock.now()
    done = Resumed()
    failed = failed_step_of(execution) if execution.status == ExecutionStatus.FAILED else []
    for row in failed:
        reopen_failed_activity(execution, row, now, batch)
        done.failed.append({"dimension": row.dimension, "seq": row.seq, "name": row.name})
    closed = list(HistoryEvent.objects.filter(
        execution_id=execution.pk, status=HistoryStatus.CANCELLED, error__isnull=True)
        .exclude(dimension=OPERATOR_DIMENSION).order_by("dimension", "seq"))
    waits = [row.name for row in closed if row.kind == "wait"]
    if waits:
        lock_signal_ids(execution.namespace, waits)
    for row in closed:
        _reopen(execution, row, now, batch)
        done.reopened.append({"dimension": row.dimension, "seq": row.seq, "kind": row.kind,
                              "name": row.name})
    stopped = WorkflowThread.objects.filter(execution_id=execution.pk,
                                            status=ExecutionStatus.INTERRUPTED)
    done.threads = list(stopped.values_list("dimension", flat=True))
    stopped.update(status=ExecutionStatus.RUNNING, completed_at=None, step_requested=True)
    if execution.timeout_at is not None and execution.timeout_at <= now:
        execution.timeout_at = None
    elif execution.timeout_at is not None:
        Timer.objects.create(execution=execution, kind=TimerKind.EXECUTION_TIMEOUT,
                             due_at=execution.timeout_at)
    execution.status = ExecutionStatus.RUNNING
    execution.error = None
    execution.result = None
    execution.completed_at = None
    execution.attempt = 1
    execution.step_failures = 0
    execution.step_count += 1
    execution.step_requested = True
    execution.save()
    batch.request_step(execution.pk, execution.task_queue)
    return done


def reopen_failed_activity(execution: WorkflowExecution, row: HistoryEvent, now: datetime,
                           batch: OutboxBatch) -> None:
    """Reopen a failed activity call with its attempts restarted, and dispatch it."""
    row.attempts = 1
    row.error = None
    _reopen_activity(execution, row, now, batch)


def _reopen_activity(execution: WorkflowExecution, row: HistoryEvent, now: datetime,
                     batch: OutboxBatch) -> None:
    row.status = HistoryStatus.SCHEDULED
    row.result = None
    row.observed_step = None
    row.completed_at = None
    row.save(update_fields=["status", "attempts", "error", "result", "observed_step",
                            "completed_at"])
    dispatch_attempt(execution, row, now, batch)


def _reopen(execution: WorkflowExecution, row: HistoryEvent, now: datetime,
            batch: OutboxBatch) -> None:
    """Issue again a call that was open when the run ended, by kind."""
    if row.kind == "activity":
        _reopen_activity(execution, row, now, batch)  # the same attempt number, sent again
        return
    HistoryEvent.objects.filter(pk=row.pk).update(status=HistoryStatus.SCHEDULED,
                                                  completed_at=None, observed_step=None)
    if row.kind == "sleep":
        _arm(execution, row, TimerKind.SLEEP, row.input.get("seconds"), now)
    elif row.kind == "wait":
        found, payload = take_buffered_signal(execution.namespace, row.name)
        if found:
            HistoryEvent.objects.settle(row.pk, result=payload, now=now)
        else:
            _arm(execution, row, TimerKind.WAIT_TIMEOUT, row.input.get("timeout"), now)
    elif row.kind in ("child", "child_result"):
        child = current_run(execution.namespace, str(row.input.get("workflow_id", "")))
        if child is not None and not child.is_active \
                and child.status != ExecutionStatus.CONTINUED:
            outcome = child_outcome_for_parent(child)
            HistoryEvent.objects.settle(row.pk, result=outcome.get("result"),
                                        error=outcome.get("error"), now=now)


def _arm(execution: WorkflowExecution, row: HistoryEvent, kind: str, seconds: Any,
         now: datetime) -> None:
    """A timer due when the call's own would have been (or now, if that has passed)."""
    if seconds is None:
        return
    due = max(row.created_at + timedelta(seconds=float(seconds)), now)
    Timer.objects.create(execution=execution, event=row, kind=kind, due_at=due)
