"""The sequential path: an activity's outcome and the run's next decision, recorded together.

An activity that finishes in the process that holds its run in memory records its result and
the next decision in one transaction (on PostgreSQL one statement), checked against the version
(:func:`record_activity_outcome`). A run in memory that is behind the database (another process
took the steps since) first catches up on what it missed. Should anything stand in the way —
another step got there first, the run is not in memory, the decision cannot be recorded — the
result is recorded on its own first, so a finished activity is never lost to what happens after
it; then the step is taken through :func:`~durable_celery.store.steps.drive`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction

from .. import clock
from ..engine import HistoryRecord
from ..models import ExecutionStatus, HistoryEvent, HistoryStatus, WorkflowExecution, WorkflowThread
from .commands import NO_EAGER, EagerPolicy
from .connection import with_fresh_connection
from .decisions import Due, StepLost, record_decision
from .fastpath import record_in_one_statement
from .guard import GuardedOutcome, outcome_guard
from .outbox import OutboxBatch
from .steps import (
    CachedRun,
    can_continue_locally,
    claim_step,
    decide,
    drive,
    keep_runs,
    read_rows,
    run_cache,
    unrecorded,
)

__all__ = ["record_activity_outcome"]

logger = logging.getLogger(__name__)


def record_activity_outcome(message: dict[str, Any], *, holder: int | None,
                            stepper: int | None, result: Any = None,
                            error: dict[str, Any] | None = None,
                            eager: EagerPolicy = NO_EAGER,
                            also: Callable[[], None] | None = None,
                            delivered: bool = False) -> list[dict[str, Any]]:
    """Record the final outcome of an activity call and take the run's next step.

    When this process holds the run in memory, the outcome and the next decision are recorded
    in one transaction — after the run caught up on steps other processes took meanwhile, when
    the attempt came through the broker (``delivered``: the run is read first to know). Otherwise
    — or if that fails for any reason — the outcome is recorded on its own (on a fresh
    connection if the old one died), then the step is taken here or left to the process that is
    stepping the run.

    Args:
        message: The attempt's message.
        holder: The process holding the attempt (``None``: nobody, e.g. completed from outside).
        stepper: This process, when it may step the run; ``None`` requests the step.
        result: The result (when ``error`` is ``None``).
        error: The stored final error.
        eager: Which next attempts this process may claim.
        also: More writes for the transaction that records the outcome.
        delivered: The attempt came through the broker, so other processes may have stepped
            the run since this one did (an attempt this process's own step claimed did not).

    Returns:
        Attempts claimed to run in this process next.
    """
    execution_pk = int(message["execution"])
    local = stepper is not None and can_continue_locally(message["workflow_name"])
    entry = run_cache().take(execution_pk) if local else None
    current: WorkflowExecution | None = None
    if entry is not None and delivered:
        current = WorkflowExecution.objects.filter(pk=execution_pk).first()
        if current is None or not _can_catch_up(entry, current, message):
            run_cache().put(execution_pk, entry)  # the general path below steps it
            entry = None
    if entry is not None:
        guarded = outcome_guard().watch(
            lambda: _settle_alone(message, holder, result, error, also, request_step=False))
        try:
            return _step_in_memory(entry, message, holder, result, error, eager, also, guarded,
                                   current)
        except Exception as failure:  # noqa: BLE001 - whatever happened, the outcome is recorded
            logger.debug("durable_celery: in-memory step of run %s not recorded; recording "
                         "the outcome first", execution_pk, exc_info=True)
            entry.close()
            if isinstance(failure, (OperationalError, InterfaceError)):
                connection.close()  # the connection died: the next work opens a new one
            if not guarded.take_back():  # the guard recorded it meanwhile
                return with_fresh_connection(lambda: _continue(execution_pk, stepper, eager))
    recorded = with_fresh_connection(
        lambda: _settle_alone(message, holder, result, error, also, request_step=not local))
    if not recorded or not local:
        return []
    return with_fresh_connection(lambda: _continue(execution_pk, stepper, eager))


def _continue(execution_pk: int, stepper: int | None,
              eager: EagerPolicy) -> list[dict[str, Any]]:
    """After an outcome was recorded on its own: take the step, unless someone else is."""
    claimed = claim_step(execution_pk, stepper) if stepper is not None else None
    if claimed is not None and stepper is not None:
        return drive(claimed, stepper, eager)
    return []


def _settle_alone(message: dict[str, Any], holder: int | None, result: Any,
                  error: dict[str, Any] | None, also: Callable[[], None] | None, *,
                  request_step: bool) -> bool:
    with transaction.atomic():
        recorded = HistoryEvent.objects.settle(
            int(message["event"]), result=result, error=error, now=clock.now(),
            attempt=int(message["attempt"]), worker_id=holder)
        if recorded:
            if also is not None:
                also()
            if request_step:
                batch = OutboxBatch()
                batch.request_step(int(message["execution"]), message["task_queue_of_workflow"])
                batch.commit()
    return recorded


def _can_catch_up(entry: CachedRun, current: WorkflowExecution,
                  message: dict[str, Any]) -> bool:
    """Whether the run in memory can take this outcome in place: it is at the version the
    database holds, or behind it on its main thread alone with no step asked for (a run with
    more to catch up on steps through the general path)."""
    if entry.version == current.step_count:
        return True
    return (entry.version < current.step_count and current.is_active
            and not current.step_requested and set(entry.runs) == {""}
            and not message.get("dimension"))


def _step_in_memory(entry: CachedRun, message: dict[str, Any], holder: int | None,
                    result: Any, error: dict[str, Any] | None, eager: EagerPolicy,
                    also: Callable[[], None] | None, guarded: GuardedOutcome,
                    current: WorkflowExecution | None = None) -> list[dict[str, Any]]:
    """The sequential path: deliver the outcome to the run in memory and record both.

    With ``current`` (the run as the database holds it) ahead of the entry, the run first
    catches up on the steps it missed, and outcomes other processes recorded meanwhile are
    delivered with this one."""
    behind = current is not None and entry.version < current.step_count
    execution = current if behind and current is not None else entry.execution
    dimension, seq = str(message.get("dimension", "")), int(message["seq"])
    run = entry.runs.get(dimension)
    # A run that is behind reaches this call while it catches up.
    if run is None or not (run.resumable if behind else run.waiting_for(seq)) \
            or not execution.is_active:
        raise StepLost("the run in memory does not wait for this outcome")
    thread = None
    if dimension:
        thread = WorkflowThread.objects.filter(execution_id=execution.pk, dimension=dimension,
                                               status=ExecutionStatus.RUNNING).first()
        if thread is None:
            raise StepLost("the hook thread is not running")
    status = HistoryStatus.FAILED if error is not None else HistoryStatus.COMPLETED
    outcome_value = None if error is not None else result
    execution.step_requested = False
    if behind:
        missed, delivered = _missed_steps(execution.pk, entry.version, dimension,
                                          run.context.counter, int(message["event"]))
        missed.append(HistoryRecord(seq, dimension, "activity", message["activity"], status,
                                    outcome_value, error, None))
        decision = decide(execution, [Due(thread, run, missed, since=entry.version)])
        decision.delivered = delivered
    else:
        record = HistoryRecord(seq, dimension, "activity", message["activity"], status,
                               outcome_value, error, entry.version + 1)
        decision = decide(execution, [Due(thread, run, [record])])
    decision.kept = {d: r for d, r in entry.runs.items() if d != dimension}
    try:
        if guarded.take_back():  # record the outcome with the decision
            settle = (int(message["event"]), int(message["attempt"]), result, error, holder)
            fast = None if also is not None else record_in_one_statement(
                execution, decision, eager, settle)
            attempts = fast if fast is not None else record_decision(
                execution, decision, eager, claimed_by=None, also=also, settle=settle)
        else:  # the step took long: the guard recorded the outcome; the decision marks it seen
            decision.delivered = [int(message["event"])]
            attempts = record_decision(execution, decision, eager, claimed_by=None)
    except BaseException:
        unrecorded(decision)
        raise
    keep_runs(execution, decision)
    return attempts


def _missed_steps(execution_pk: int, since: int, dimension: str, position: int,
                  settling: int) -> tuple[list[HistoryRecord], list[int]]:
    """What a thread kept in memory at step ``since`` (at ``position``) missed, and the rows of
    its outcomes no step has seen that this step delivers (besides ``settling``, the outcome
    being recorded)."""
    read = read_rows(HistoryEvent.objects.missed_by(execution_pk, since, {dimension: position}),
                     skip=settling)
    return read.by_dimension.get(dimension, []), read.delivered.get(dimension, [])
