"""Claims on PostgreSQL, one statement each: of an activity attempt delivered through the broker,
and of a run's step.

Claiming a delivered attempt also deletes the outbox rows this process published since its last
statement (the acknowledgement folded into later work), and, when this process keeps the run in
memory, reads the run and what its thread missed. Claiming a step reads the run too. Neither
claim's commit waits for the disk (:data:`_RELAXED`). Elsewhere (SQLite) the ORM forms in
:mod:`durable_celery.store.activities` and :mod:`durable_celery.store.steps` are used.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection

from .. import clock
from ..models import WorkflowExecution
from .dispatch import running_lease
from .outbox import take_acknowledgements
from .rows import fetch_models
from .tables import EXECUTION_TABLE, HISTORY_TABLE, OUTBOX_TABLE, THREAD_TABLE

__all__ = ["claim_attempt_fast", "claim_step_returning"]


#: The run's columns, named (not ``*``): the statements' result columns are then known without
#: asking the driver to describe them, and a column added later changes nothing here.
_RUN_FIELDS = tuple(str(field.column) for field in WorkflowExecution._meta.concrete_fields)


def _run_columns(prefix: str = "") -> str:
    return ", ".join(f'{prefix}"{column}"' for column in _RUN_FIELDS)


#: A claim is a lease, not a result: its commit does not wait for the disk
#: (``synchronous_commit`` off for its own transaction only). A claim lost to a crash of the
#: database *server* leaves the attempt looking queued — the process that ran it still records
#: its result (the result's statement accepts an unclaimed attempt, and waits for the disk),
#: and only a second delivery of the message in that window could run it again, as after any
#: lost claim. A crash of the worker, or a dropped connection, loses nothing: PostgreSQL has
#: the commit and writes it out within ``wal_writer_delay``. Saves a disk flush (about a
#: quarter of the claim's 0.8 ms here) on every delivered attempt and every step claim.
_RELAXED = "relaxed AS (SELECT set_config('synchronous_commit', 'off', true))"

_CLAIM = f"""
WITH acknowledged AS (DELETE FROM {OUTBOX_TABLE} WHERE id = ANY(%(acks)s)), {_RELAXED}
UPDATE {HISTORY_TABLE} SET worker_id = %(worker)s, started_at = %(now)s,
       celery_task_id = %(task_id)s, heartbeat_at = NULL, lease_until = %(lease)s
  FROM relaxed
 WHERE id = %(event)s AND status = 'scheduled' AND attempts = %(attempt)s
   AND worker_id IS NULL AND started_at IS NULL"""

_CLAIM_READING_RUN = f"""
WITH acknowledged AS (DELETE FROM {OUTBOX_TABLE} WHERE id = ANY(%(acks)s)), {_RELAXED},
claimed AS (
  UPDATE {HISTORY_TABLE} SET worker_id = %(worker)s, started_at = %(now)s,
         celery_task_id = %(task_id)s, heartbeat_at = NULL, lease_until = %(lease)s
    FROM relaxed
   WHERE id = %(event)s AND status = 'scheduled' AND attempts = %(attempt)s
     AND worker_id IS NULL AND started_at IS NULL
  RETURNING execution_id
)
SELECT {_run_columns("e.")},
  CASE WHEN %(since)s::integer IS NULL OR e.step_count <= %(since)s THEN NULL ELSE (
  SELECT coalesce(json_agg(json_build_array(h.id, h.seq, h.dimension, h.kind, h.name, h.status,
                                            h.result, h.error, h.observed_step)), '[]'::json)
    FROM {HISTORY_TABLE} h
   WHERE h.execution_id = e.id
     AND (h.observed_step > %(since)s
          OR (h.observed_step IS NULL AND h.status IN ('completed', 'failed'))
          OR (h.dimension = %(dimension)s AND h.seq > %(position)s))) END AS durable_missed
  FROM {EXECUTION_TABLE} e JOIN claimed ON e.id = claimed.execution_id"""


def claim_attempt_fast(message: dict[str, Any], worker_id: int, celery_task_id: str | None,
                       catch_up: tuple[int, str, int] | None = None,
                       now: datetime | None = None) -> tuple[bool, WorkflowExecution | None]:
    """Claim a delivered attempt (and delete the outbox rows this process published) in one
    statement. With ``catch_up`` (``(since, dimension, position)`` of the thread this process
    keeps in memory) the statement also reads the run and, when the run moved on since, what
    ``HistoryEvent.objects.missed_by`` would read for the thread (``durable_missed``, for
    ``durable_missed_for``). See :func:`durable_celery.store.activities.claim_attempt`.

    Its commit does not wait for the disk (:data:`_RELAXED`): call it in autocommit, never
    inside a transaction that records anything else.

    Returns:
        ``(claimed, run as read)``.
    """
    now = now or clock.now()
    lease = running_lease({"start_to_close_timeout": message.get("timeout"),
                           "heartbeat_timeout": message.get("heartbeat_timeout")}, now)
    params: dict[str, Any] = {
        "acks": take_acknowledgements(), "worker": worker_id, "now": now,
        "task_id": celery_task_id, "lease": lease, "event": int(message["event"]),
        "attempt": int(message["attempt"])}
    if catch_up is None:
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM, params)
            return bool(cursor.rowcount), None
    since, dimension, position = catch_up
    claimed = fetch_models(WorkflowExecution, _CLAIM_READING_RUN, {
        **params, "since": since, "dimension": dimension, "position": position},
        columns=(*_RUN_FIELDS, "durable_missed"))
    if not claimed:
        return False, None
    run = claimed[0]
    run.durable_missed_for = catch_up  # type: ignore[attr-defined]
    return True, run


_CLAIM_STEP = f"""
WITH {_RELAXED}
UPDATE {EXECUTION_TABLE} SET step_claimed_by_id = %(worker)s, step_claimed_until = %(lease)s
  FROM relaxed
 WHERE id = %(execution)s AND status IN ('pending', 'running')
   AND (step_claimed_by_id IS NULL OR step_claimed_until < %(now)s)
RETURNING {_run_columns()},
  EXISTS (SELECT 1 FROM {THREAD_TABLE} t WHERE t.execution_id = {EXECUTION_TABLE}.id
             AND t.status = 'running') AS durable_has_threads,
  EXISTS (SELECT 1 FROM {HISTORY_TABLE} h
           WHERE h.execution_id = {EXECUTION_TABLE}.id) AS durable_has_history"""


def claim_step_returning(execution_pk: int, worker_id: int, now: datetime,
                         lease: datetime) -> WorkflowExecution | None:
    """Claim a run's step and read the run in the same statement (see
    :func:`durable_celery.store.steps.claim_step`), with whether it has hook threads running
    (``durable_has_threads``) and any history at all (``durable_has_history``), so that a step
    does not query what is not there. Like the attempt's claim, its commit does not wait for
    the disk: call it in autocommit."""
    claimed = fetch_models(WorkflowExecution, _CLAIM_STEP, {
        "worker": worker_id, "lease": lease, "execution": execution_pk, "now": now},
        columns=(*_RUN_FIELDS, "durable_has_threads", "durable_has_history"))
    return claimed[0] if claimed else None
