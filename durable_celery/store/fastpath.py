"""The sequential path on PostgreSQL in one statement per step.

On the sequential path most steps have the same shape: one activity finished, the workflow (kept
in memory) took its next decision, and that decision is "run the next activity", "keep waiting"
or "return" (a run without a parent completes in the same statement). Recording it needs four
writes — settle the result, move the run to its next version, insert the next call, queue its
message — which on PostgreSQL are one statement of chained data-modifying CTEs, atomic on its
own (autocommit): one round trip instead of six. Each part runs only if the one before it did:
the run must be at the version the decision was made from and unclaimed, and the call must still
wait for this attempt's outcome. Anything else — another database, a decision with other effects
— is recorded by :func:`~durable_celery.store.decisions.record_decision`.

The claims that go with these statements are in :mod:`durable_celery.store.claims`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import connection

from ..engine import StepStatus
from ..models import (
    ExecutionStatus,
    HistoryEvent,
    HistoryStatus,
    OutboxMessage,
    WorkflowExecution,
)
from ..task_names import RUN_ACTIVITY_TASK
from .commands import EagerPolicy, claimer_for
from .decisions import Decision, StepLost
from .dispatch import activity_message, activity_queue, prepare_attempt
from .outbox import publish_messages
from .tables import EXECUTION_TABLE, HISTORY_TABLE, OUTBOX_TABLE, THREAD_TABLE, TIMER_TABLE

__all__ = ["has_news_fast", "record_in_one_statement", "record_step_in_one_statement",
           "settle_counted", "usable"]


#: A run with a hook thread running never holds outcomes back (its ``wake_at`` counts the main
#: thread's calls only).
_WAKE_AT = f"""CASE WHEN %(wake)s > 0 AND NOT EXISTS (
    SELECT 1 FROM {THREAD_TABLE} WHERE execution_id = %(execution)s AND status = 'running')
  THEN %(wake)s ELSE 0 END"""


def _news(run: str, settled: str, wake_at: str, skip: str = "") -> str:
    """The "look for news" predicate of ``HistoryEvent.objects.news()`` plus hook threads
    asking for a step, for the run whose id is the SQL ``run``: ``settled``/``wake_at`` are the
    SQL of its ``outcomes_settled`` and ``wake_at``; ``skip`` leaves out rows (SQL condition)."""
    return f"""EXISTS (SELECT 1 FROM {HISTORY_TABLE} h
                WHERE h.execution_id = {run} AND h.observed_step IS NULL
                  AND h.status IN ('completed', 'failed'){skip}
                  AND (h.kind <> 'activity' OR h.status <> 'completed'
                       OR {settled} >= {wake_at}))
    OR EXISTS (SELECT 1 FROM {THREAD_TABLE} t
                WHERE t.execution_id = {run} AND t.status = 'running' AND t.step_requested)"""


def _settle_and_advance(run_fields: str, condition: str = "") -> str:
    """The first two parts of a sequential step: move the run (unclaimed, at the version the
    decision was made from) to its next version with ``run_fields``, then settle the result."""
    return f"""
WITH ex AS (
  UPDATE {EXECUTION_TABLE} SET step_count = %(step)s, step_claimed_by_id = NULL,
         step_claimed_until = NULL, step_requested = false, updated_at = %(now)s,
         step_failures = 0, {run_fields}
   WHERE id = %(execution)s AND step_count = %(version)s AND status IN ('pending', 'running')
     AND step_claimed_by_id IS NULL{condition}
     AND EXISTS (SELECT 1 FROM {HISTORY_TABLE} WHERE id = %(event)s AND status = 'scheduled'
                    AND attempts = %(attempt)s
                    AND (worker_id = %(holder)s OR worker_id IS NULL))
  RETURNING id
), settled AS (
  UPDATE {HISTORY_TABLE} SET status = %(status)s, result = %(result)s::jsonb,
         error = %(error)s::jsonb, completed_at = %(now)s, lease_until = NULL,
         observed_step = %(step)s
   WHERE id = %(event)s AND status = 'scheduled' AND attempts = %(attempt)s
     AND EXISTS (SELECT 1 FROM ex)
  RETURNING id
)"""


_SETTLE_AND_ADVANCE = _settle_and_advance(f"status = 'running', wake_at = {_WAKE_AT}")

_NEXT_CALL = f""", ins AS (
  INSERT INTO {HISTORY_TABLE} (execution_id, dimension, seq, kind, name, status, attempts, input,
         result, error, observed_step, celery_task_id, worker_id, dispatched_at, started_at,
         heartbeat_at, heartbeat_details, lease_until, created_at, completed_at)
  SELECT %(execution)s, %(dimension)s, %(seq)s, 'activity', %(name)s, 'scheduled', 1,
         %(input)s::jsonb, NULL, NULL, NULL, %(task_id)s, %(worker)s, %(dispatched)s,
         %(started)s, NULL, NULL, %(lease)s, %(now)s, NULL
    FROM settled
  RETURNING id
), box AS (
  INSERT INTO {OUTBOX_TABLE} (task_name, queue, args, created_at, publish_attempts)
  SELECT %(task)s, %(queue)s,
         jsonb_build_array(%(message)s::jsonb || jsonb_build_object('event', ins.id)),
         %(now)s, 0
    FROM ins WHERE %(send)s
  RETURNING id
)
SELECT (SELECT count(*) FROM ex), (SELECT count(*) FROM settled), (SELECT id FROM ins),
       (SELECT id FROM box)"""

_ONLY_SETTLE = """
SELECT (SELECT count(*) FROM ex), (SELECT count(*) FROM settled), NULL, NULL"""

#: The run completes on this outcome: the step is also its end (``finish_execution``'s work for
#: a run without a parent: final fields, timers deleted, open calls cancelled, threads stopped).
_COMPLETE = _settle_and_advance(
    "status = 'completed', wake_at = 0, result = %(run_result)s::jsonb, error = NULL, "
    "completed_at = %(now)s", " AND parent_workflow_id IS NULL") + f""", timers AS (
  DELETE FROM {TIMER_TABLE} WHERE execution_id = %(execution)s AND EXISTS (SELECT 1 FROM ex)
), calls AS (
  UPDATE {HISTORY_TABLE} SET status = 'cancelled', completed_at = %(now)s, lease_until = NULL
   WHERE execution_id = %(execution)s AND status = 'scheduled' AND id <> %(event)s
     AND EXISTS (SELECT 1 FROM ex)
), threads AS (
  UPDATE {THREAD_TABLE} SET status = 'interrupted', completed_at = %(now)s
   WHERE execution_id = %(execution)s AND status = 'running' AND EXISTS (SELECT 1 FROM ex)
)
SELECT (SELECT count(*) FROM ex), (SELECT count(*) FROM settled), NULL, NULL"""


def usable() -> bool:
    """Whether the one-statement forms apply (PostgreSQL)."""
    return connection.vendor == "postgresql"


def _jsonb(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def record_in_one_statement(execution: WorkflowExecution, decision: Decision,
                            eager: EagerPolicy, settle: tuple[int, int, Any, Any, int | None],
                            ) -> list[dict[str, Any]] | None:
    """Record a sequential step of the common shape in one statement.

    Args:
        execution: The run, in memory (its fields are updated when the step is recorded).
        decision: What the workflow decided on the activity's outcome.
        eager: Whether the next activity may run in this process.
        settle: ``(event pk, attempt, result, error, holder)``: the outcome.

    Returns:
        Attempts claimed to run here, or ``None`` when the decision has another shape (record
        it with ``record_decision``).

    Raises:
        StepLost: The run moved on, is claimed, ended, or the call no longer waits.
    """
    if not usable() or len(decision.outcomes) != 1 or decision.delivered \
            or decision.local_attempts or decision.effects:
        return None
    item, outcome = decision.outcomes[0]
    commands = outcome.commands
    completes = outcome.status == StepStatus.COMPLETED and not commands \
        and not outcome.cancelled and not execution.parent_workflow_id
    if item.thread is not None or len(commands) > 1 \
            or any(c.kind != "activity" for c in commands) \
            or not (outcome.status == StepStatus.SUSPENDED or completes):
        return None
    event_pk, attempt, result, error, holder = settle
    now = decision.effects.now
    params: dict[str, Any] = {
        "step": decision.step, "version": decision.version, "now": now,
        "execution": execution.pk, "event": event_pk, "attempt": attempt, "holder": holder,
        "status": HistoryStatus.FAILED if error is not None else HistoryStatus.COMPLETED,
        "result": None if error is not None else _jsonb(result), "error": _jsonb(error),
        "wake": decision.wake_at(execution)}
    row: HistoryEvent | None = None
    sql = _SETTLE_AND_ADVANCE + _ONLY_SETTLE
    if completes:
        sql = _COMPLETE
        params["run_result"] = _jsonb(outcome.result)
    elif commands:
        command = commands[0]
        row = HistoryEvent(execution_id=execution.pk, dimension=command.dimension,
                           seq=command.seq, kind=command.kind, name=command.name,
                           input=command.input, attempts=1)
        claim = claimer_for(execution, row, eager, eager_taken=False)
        send = prepare_attempt(execution, row, now, claim_for=claim,
                               celery_task_id=eager.task_id)
        message = activity_message(execution, row)
        del message["event"]
        params.update(
            dimension=row.dimension, seq=row.seq, name=row.name, input=_jsonb(row.input),
            task_id=row.celery_task_id, worker=row.worker_id, dispatched=row.dispatched_at,
            started=row.started_at, lease=row.lease_until, task=RUN_ACTIVITY_TASK,
            queue=activity_queue(execution, row), message=json.dumps(message), send=send)
        sql = _SETTLE_AND_ADVANCE + _NEXT_CALL
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        advanced, settled, new_pk, outbox_pk = cursor.fetchone()
    if not advanced or not settled:
        raise StepLost("the run moved on, or the call no longer waits for this outcome")
    execution.step_count = decision.step
    execution.step_requested = False
    execution.status = ExecutionStatus.RUNNING
    execution.updated_at = now
    execution.wake_at = params["wake"]
    if completes:
        execution.status = ExecutionStatus.COMPLETED
        execution.result = outcome.result
        execution.error = None
        execution.completed_at = now
        execution.wake_at = 0
    if row is None:
        return []
    row.pk = new_pk
    message = activity_message(execution, row)
    if outbox_pk is not None:
        publish_messages([OutboxMessage(pk=outbox_pk, task_name=RUN_ACTIVITY_TASK,
                                        queue=activity_queue(execution, row),
                                        args=[message])])
        return []
    return [message] if row.worker_id is not None else []


_SETTLE_COUNTED = f"""
WITH settled AS (
  UPDATE {HISTORY_TABLE} SET status = 'completed', result = %(result)s::jsonb,
         completed_at = %(now)s, lease_until = NULL, observed_step = NULL
   WHERE id = %(event)s AND status = 'scheduled' AND attempts = %(attempt)s
     AND (%(holder)s::bigint IS NULL OR worker_id = %(holder)s OR worker_id IS NULL)
  RETURNING execution_id
)
UPDATE {EXECUTION_TABLE} SET outcomes_settled = outcomes_settled + 1
 WHERE id IN (SELECT execution_id FROM settled)
RETURNING outcomes_settled >= wake_at"""


def settle_counted(event_pk: int, attempt: int, holder: int | None, result: Any,
                   now: datetime) -> tuple[bool, bool]:
    """Record an activity's result apart from a step and count it, in one statement.

    Returns:
        ``(recorded, wakes)``: whether this call recorded it (``False``: the attempt is no
        longer current) and whether the run should step for it (``False`` while the run holds
        outcomes back for a ``workflow.all`` group; see ``WorkflowExecution.wake_at``).
    """
    with connection.cursor() as cursor:
        cursor.execute(_SETTLE_COUNTED, {"result": _jsonb(result), "now": now,
                                         "event": event_pk, "attempt": attempt,
                                         "holder": holder})
        row = cursor.fetchone()
    return (False, False) if row is None else (True, bool(row[0]))


#: A general step (this process holds the claim) that delivered outcomes and made only new
#: activity calls: advance the run and release the claim, mark what it saw, insert the calls and
#: queue the messages of those not claimed to run here.
_STEP = f"""
WITH ex AS (
  UPDATE {EXECUTION_TABLE} SET step_count = %(step)s, step_claimed_by_id = NULL,
         step_claimed_until = NULL, step_requested = false, updated_at = %(now)s,
         status = 'running', step_failures = 0, wake_at = {_WAKE_AT}
   WHERE id = %(execution)s AND step_count = %(version)s AND status IN ('pending', 'running')
     AND step_claimed_by_id = %(claimed_by)s
  RETURNING id
), seen AS (
  UPDATE {HISTORY_TABLE} SET observed_step = %(step)s
   WHERE id = ANY(%(delivered)s::bigint[]) AND observed_step IS NULL
     AND status IN ('completed', 'failed') AND EXISTS (SELECT 1 FROM ex)
), ins AS (
  INSERT INTO {HISTORY_TABLE} (execution_id, dimension, seq, kind, name, status, attempts, input,
         result, error, observed_step, celery_task_id, worker_id, dispatched_at, started_at,
         heartbeat_at, heartbeat_details, lease_until, created_at, completed_at)
  SELECT %(execution)s, c.dimension, c.seq, 'activity', c.name, 'scheduled', 1, c.input::jsonb,
         NULL, NULL, NULL, c.task_id, c.worker, c.dispatched, c.started, NULL, NULL, c.lease,
         %(now)s, NULL
    FROM unnest(%(dimensions)s::text[], %(seqs)s::integer[], %(names)s::text[],
                %(inputs)s::text[], %(task_ids)s::text[], %(workers)s::bigint[],
                %(dispatched)s::timestamptz[], %(started)s::timestamptz[],
                %(leases)s::timestamptz[])
         AS c(dimension, seq, name, input, task_id, worker, dispatched, started, lease)
   WHERE EXISTS (SELECT 1 FROM ex)
  RETURNING id, seq
), box AS (
  INSERT INTO {OUTBOX_TABLE} (task_name, queue, args, created_at, publish_attempts)
  SELECT %(task)s, m.queue,
         jsonb_build_array(m.message::jsonb || jsonb_build_object('event', ins.id)), %(now)s, 0
    FROM ins JOIN unnest(%(sent_seqs)s::integer[], %(queues)s::text[], %(messages)s::text[])
         AS m(seq, queue, message) ON m.seq = ins.seq
  RETURNING id, queue, args
)
SELECT (SELECT count(*) FROM ex),
       (SELECT coalesce(json_agg(json_build_array(id, seq)), '[]'::json) FROM ins),
       (SELECT coalesce(json_agg(json_build_array(id, queue, args)), '[]'::json) FROM box),
       {_news("%(execution)s",
              f"(SELECT outcomes_settled FROM {EXECUTION_TABLE} WHERE id = %(execution)s)",
              _WAKE_AT, " AND NOT (h.id = ANY(%(delivered)s::bigint[]))")}"""


def record_step_in_one_statement(execution: WorkflowExecution, decision: Decision,
                                 eager: EagerPolicy, claimed_by: int,
                                 ) -> list[dict[str, Any]] | None:
    """Record a general step of the common shape — the main thread stays suspended and made only
    new activity calls (a first step, a fan-out, a step after held-back results) — in one
    statement.

    Returns:
        Attempts claimed to run here, or ``None`` when the decision has another shape (record
        it with ``record_decision``).

    Raises:
        StepLost: The run moved on, ended, or this process no longer holds its claim.
    """
    if not usable() or len(decision.outcomes) != 1 or decision.local_attempts \
            or decision.effects:
        return None
    item, outcome = decision.outcomes[0]
    if item.thread is not None or outcome.status != StepStatus.SUSPENDED or outcome.cancelled \
            or any(c.kind != "activity" or c.status != HistoryStatus.SCHEDULED
                   or c.input.get("local") for c in outcome.commands):
        return None
    now = decision.effects.now
    rows, sent, claimed = [], [], []
    eager_taken = False
    for command in outcome.commands:
        row = HistoryEvent(execution_id=execution.pk, dimension=command.dimension,
                           seq=command.seq, kind=command.kind, name=command.name,
                           input=command.input, attempts=1)
        claim = claimer_for(execution, row, eager, eager_taken=eager_taken)
        eager_taken = eager_taken or claim is not None
        if prepare_attempt(execution, row, now, claim_for=claim, celery_task_id=eager.task_id):
            sent.append(row)
        elif claim is not None:
            claimed.append(row)
        rows.append(row)
    messages = [activity_message(execution, row) for row in sent]
    for message in messages:
        del message["event"]
    wake = decision.wake_at(execution)
    with connection.cursor() as cursor:
        cursor.execute(_STEP, {
            "step": decision.step, "version": decision.version, "now": now,
            "execution": execution.pk, "claimed_by": claimed_by, "wake": wake,
            "delivered": decision.delivered,
            "dimensions": [r.dimension for r in rows], "seqs": [r.seq for r in rows],
            "names": [r.name for r in rows], "inputs": [json.dumps(r.input) for r in rows],
            "task_ids": [r.celery_task_id for r in rows], "workers": [r.worker_id for r in rows],
            "dispatched": [r.dispatched_at for r in rows],
            "started": [r.started_at for r in rows], "leases": [r.lease_until for r in rows],
            "task": RUN_ACTIVITY_TASK, "sent_seqs": [r.seq for r in sent],
            "queues": [activity_queue(execution, r) for r in sent],
            "messages": [json.dumps(m) for m in messages]})
        advanced, inserted, boxed, news = cursor.fetchone()
    if not advanced:
        raise StepLost("another step recorded a decision first, or the run ended")
    # What "look for news" would find now: outcomes recorded before this statement that it did
    # not deliver (one recorded after it finds the claim released, or a wake_at that counts it,
    # and steps the run itself), or a hook thread asking for a step.
    execution.durable_news = bool(news)  # type: ignore[attr-defined]
    execution.step_count = decision.step
    execution.step_claimed_by = None
    execution.step_claimed_until = None
    execution.step_requested = False
    execution.status = ExecutionStatus.RUNNING
    execution.updated_at = now
    execution.step_failures = 0
    execution.wake_at = wake
    pks = {seq: pk for pk, seq in _decoded(inserted)}
    for row in rows:
        row.pk = pks[row.seq]
    if boxed:
        publish_messages([OutboxMessage(pk=pk, task_name=RUN_ACTIVITY_TASK, queue=queue,
                                        args=args) for pk, queue, args in _decoded(boxed)])
    return [activity_message(execution, row) for row in claimed]


def _decoded(value: Any) -> list[Any]:
    return json.loads(value) if isinstance(value, str) else list(value)


_NEWS = f"""
SELECT e.step_requested OR {_news("e.id", "e.outcomes_settled", "e.wake_at")}
  FROM {EXECUTION_TABLE} e
 WHERE e.id = %(execution)s AND e.status IN ('pending', 'running')"""


def has_news_fast(execution_pk: int) -> bool:
    """:func:`durable_celery.store.steps.has_news` as one plain statement (PostgreSQL): a
    correlated look at this run's rows, planned once per connection."""
    with connection.cursor() as cursor:
        cursor.execute(_NEWS, {"execution": execution_pk})
        row = cursor.fetchone()
    return bool(row and row[0])
