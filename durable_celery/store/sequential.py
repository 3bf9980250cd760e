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
from django.db.models import F

from .. import clock
from ..engine import HistoryRecord
from ..models import ExecutionStatus, HistoryEvent, HistoryStatus, WorkflowExecution, WorkflowThread
from .commands import NO_EAGER, EagerPolicy
from .connection import with_fresh_connection
from .decisions import Due, StepLost, record_decision
from .fastpath import record_in_one_statement, settle_counted, usable
from .guard import GuardedOutcome, outcome_guard
from .outbox import OutboxBatch
from .steps import (
    CachedRun,
    can_continue_locally,
    claim_step,
    decide,
    drive,
    has_news,
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
                            delivered: bool = False,
                            run_as_claimed: WorkflowExecution | None = None,
                            ) -> list[dict[str, Any]]:
    """Record the final outcome of an activity call and take the run's next step.

    When this process holds the run in memory, the outcome and the next decision are recorded
    in one transaction — after the run caught up on steps other processes took meanwhile, when
    the attempt came through the broker (``delivered``: the run is read first to know). Otherwise
    — or if that fails for any reason — the outcome is recorded on its own (on a fresh
    connection if the old one died), then the step is taken here or left to the process that is
    stepping the run. A result the run cannot move on alone — a member of a ``workflow.all``
    that waits for other members — is recorded and counted without a step, until the count
    reaches the run's ``wake_at``; the step that comes then delivers every result held back.

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
        run_as_claimed: The run as the attempt's claim read it moments ago: taken as the run
            the database holds instead of reading it again.

    Returns:
        Attempts claimed to run in this process next.
    """
    execution_pk = int(message["execution"])
    local = stepper is not None and can_continue_locally(message["workflow_name"])
    entry = run_cache().take(execution_pk) if local else None
    current: WorkflowExecution | None = None
    if entry is not None and error is None and also is None and _held_back(entry, message):
        run_cache().put(execution_pk, entry)  # it waits for other members of the group
        entry = None
    if entry is not None and delivered:
        current = run_as_claimed or with_fresh_connection(
            lambda: WorkflowExecution.objects.filter(pk=execution_pk).first())
        if current is None or not _can_catch_up(entry, current, message):
            run_cache().put(execution_pk, entry)  # the general path below steps it
            entry = None
    if entry is not None:
        guarded = outcome_guard().watch(
            lambda: _settle_alone(message, holder, result, error, also, request_step=False)[0])
        held_back = (current or entry.execution).wake_at > 0
        try:
            attempts = _step_in_memory(entry, message, holder, result, error, eager, also,
                                       guarded, current)
        except Exception as failure:  # noqa: BLE001 - whatever happened, the outcome is recorded
            logger.debug("durable_celery: in-memory step of run %s not recorded; recording "
                         "the outcome first", execution_pk, exc_info=True)
            entry.close()
            if isinstance(failure, (OperationalError, InterfaceError)):
                connection.close()  # the connection died: the next work opens a new one
            if not guarded.take_back():  # the guard recorded it meanwhile
                return with_fresh_connection(lambda: _continue(execution_pk, stepper, eager))
        else:
            if held_back and stepper is not None and has_news(execution_pk):
                # Outcomes held back for a group may have completed one this step did not see.
                attempts += _continue(execution_pk, stepper, eager)
            return attempts
    recorded, wakes = with_fresh_connection(
        lambda: _settle_alone(message, holder, result, error, also, request_step=not local))
    if not (recorded and wakes and local):
        return []
    return with_fresh_connection(lambda: _continue(execution_pk, stepper, eager))


def _held_back(entry: CachedRun, message: dict[str, Any]) -> bool:
    """Whether the run in memory (main thread only) would not move on this result alone: the
    call is a member of a ``workflow.all`` that waits for other members. The result is then
    recorded and counted on its own; the database says when the group may be complete."""
    run = entry.runs.get("")
    return (not message.get("dimension") and set(entry.runs) == {""} and run is not None
            and run.defers(int(message["seq"])))


def _continue(execution_pk: int, stepper: int | None,
              eager: EagerPolicy) -> list[dict[str, Any]]:
    """After an outcome was recorded on its own: take the step, unless someone else is."""
    claimed = claim_step(execution_pk, stepper) if stepper is not None else None
    if claimed is not None and stepper is not None:
        return drive(claimed, stepper, eager)
    return []


def _settle_alone(message: dict[str, Any], holder: int | None, result: Any,
                  error: dict[str, Any] | None, also: Callable[[], None] | None, *,
                  request_step: bool) -> tuple[bool, bool]:
    """Record the outcome without a step; a result is counted (``outcomes_settled``).

    Returns:
        ``(recorded, wakes)``: whether this call recorded it, and whether the run should step
        for it (always for a failure; for a result unless the run holds it back for a group).
        With ``request_step`` a step that is due is requested in the same transaction.
    """
    event_pk, attempt = int(message["event"]), int(message["attempt"])
    now = clock.now()
    if error is None and also is None and not request_step and usable():
        return settle_counted(event_pk, attempt, holder, result, now)  # one statement
    with transaction.atomic():
        if error is None and also is None and usable():
            recorded, wakes = settle_counted(event_pk, attempt, holder, result, now)
        else:
            recorded = HistoryEvent.objects.settle(event_pk, result=result, error=error,
                                                   now=now, attempt=attempt, worker_id=holder)
            wakes = recorded and (error is not None or _count_result(message))
        if recorded:
            if also is not None:
                also()
            if request_step and wakes:
                batch = OutboxBatch()
                batch.request_step(int(message["execution"]), message["task_queue_of_workflow"])
                batch.commit()
    return recorded, wakes


def _count_result(message: dict[str, Any]) -> bool:
    """Count a result recorded apart from a step; whether the run should step for it."""
    runs = WorkflowExecution.objects.filter(pk=int(message["execution"]))
    runs.update(outcomes_settled=F("outcomes_settled") + 1)
    counted = runs.values_list("outcomes_settled", "wake_at").first()
    return counted is None or counted[0] >= counted[1]


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
        missed, delivered = _missed_steps(execution, entry.version, dimension,
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


def _missed_steps(current: WorkflowExecution, since: int, dimension: str, position: int,
                  settling: int) -> tuple[list[HistoryRecord], list[int]]:
    """What a thread kept in memory at step ``since`` (at ``position``) missed, and the rows of
    its outcomes no step has seen that this step delivers (besides ``settling``, the outcome
    being recorded) — as the attempt's claim read them with ``current``, when it read them for
    this point, or read now."""
    if getattr(current, "durable_missed_for", None) == (since, dimension, position):
        rows = getattr(current, "durable_missed", None) or []
    else:
        rows = HistoryEvent.objects.missed_by(current.pk, since, {dimension: position})
    read = read_rows(rows, skip=settling)
    return read.by_dimension.get(dimension, []), read.delivered.get(dimension, [])
