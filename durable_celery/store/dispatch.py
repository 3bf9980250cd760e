"""Dispatching an activity attempt: the one place an attempt is sent or claimed to run here.

An attempt is either sent to its Celery queue ``{task_queue}-activity`` through the outbox, or —
when the step that schedules it runs in a worker that consumes that queue (eager execution) or
the call is a local activity — claimed by this process in the step's own transaction and run
right after commit, without a broker hop.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ..conf import durable_setting
from ..models import HistoryEvent, WorkflowExecution
from .outbox import OutboxBatch

__all__ = [
    "ATTEMPT_FIELDS",
    "activity_message",
    "activity_queue",
    "dispatch_attempt",
    "is_local",
    "prepare_attempt",
    "request_local_run",
    "running_lease",
    "send_attempt",
]

#: History fields :func:`dispatch_attempt` sets (for ``save(update_fields=...)``).
ATTEMPT_FIELDS = ["attempts", "worker", "started_at", "dispatched_at", "lease_until",
                  "celery_task_id", "heartbeat_at"]


def activity_queue(execution: WorkflowExecution, event: HistoryEvent) -> str:
    """The Celery queue of an activity call: ``{task_queue}-activity``."""
    return f"{event.input.get('task_queue') or execution.task_queue}-activity"


def is_local(event: HistoryEvent) -> bool:
    """Whether the call is a local activity (always runs in the stepping worker)."""
    return bool(event.input.get("local"))


def running_lease(call_input: Mapping[str, Any], started: datetime) -> datetime | None:
    """When an attempt that started at ``started`` has timed out, if it has a timeout
    (``call_input``: the call's recorded input, or the same keys from its message).

    ``start_to_close_timeout`` counts from the start; ``heartbeat_timeout`` from the last
    heartbeat (or the start). The worker enforces both itself; the sweeper acts after
    ``DURABLE_ACTIVITY_LEASE_GRACE`` more seconds, for a worker that could not.
    """
    grace = float(durable_setting("DURABLE_ACTIVITY_LEASE_GRACE"))
    limits = [value for value in (call_input.get("start_to_close_timeout"),
                                  call_input.get("heartbeat_timeout")) if value]
    if not limits:
        return None
    return started + timedelta(seconds=min(float(v) for v in limits) + grace)


def activity_message(execution: WorkflowExecution, event: HistoryEvent) -> dict[str, Any]:
    """The body of one attempt's Celery message (only this call, never the history)."""
    data = event.input
    return {
        "event": event.pk, "execution": execution.pk, "attempt": event.attempts,
        "seq": event.seq, "dimension": event.dimension, "activity": event.name,
        "args": data.get("args", []), "heartbeat_details": event.heartbeat_details,
        "task_queue": data.get("task_queue") or execution.task_queue,
        "workflow_id": execution.workflow_id, "run_id": execution.run_id,
        "workflow_name": execution.workflow_name, "namespace": execution.namespace,
        "task_queue_of_workflow": execution.task_queue,
        "timeout": data.get("start_to_close_timeout"),
        "heartbeat_timeout": data.get("heartbeat_timeout"),
        "headers": data.get("headers") or {},
    }


def prepare_attempt(execution: WorkflowExecution, event: HistoryEvent, now: datetime,
                    *, claim_for: int | None = None, celery_task_id: str | None = None) -> bool:
    """Set the fields of the current attempt (``event.attempts``) of activity call ``event``.

    Args:
        execution: The run the call belongs to.
        event: The activity's history row, ``attempts`` already numbering this attempt.
        now: Dispatch time.
        claim_for: A worker process id: claim the attempt for that process, which runs it
            right after commit (eager or local execution); ``None``: it goes to its queue (see
            :func:`send_attempt`), or, for a local activity, waits for the next step to claim it.
        celery_task_id: The Celery task a claimed attempt runs in.

    A claimed attempt gets no lease: its worker enforces its timeouts, and if the worker dies
    the sweeper re-drives it.

    Returns:
        Whether a message must be sent (:func:`send_attempt`, once ``event`` is stored).
    """
    event.celery_task_id = celery_task_id if claim_for is not None else None
    event.heartbeat_at = None
    if claim_for is not None:
        event.worker_id = claim_for
        event.started_at = now
        event.dispatched_at = now
        event.lease_until = None
        return False
    event.worker_id = None
    event.started_at = None
    if is_local(event):
        event.dispatched_at = None
        event.lease_until = None
        return False
    event.dispatched_at = now
    event.lease_until = now + timedelta(seconds=float(durable_setting("DURABLE_ACTIVITY_LEASE")))
    return True


def send_attempt(execution: WorkflowExecution, event: HistoryEvent, batch: OutboxBatch) -> None:
    """Queue the message of a stored attempt prepared by :func:`prepare_attempt`."""
    batch.dispatch_attempt(activity_queue(execution, event), activity_message(execution, event))


def dispatch_attempt(execution: WorkflowExecution, event: HistoryEvent, now: datetime,
                     batch: OutboxBatch, *, claim_for: int | None = None,
                     celery_task_id: str | None = None) -> None:
    """Dispatch the current attempt of a stored activity call and save its fields.

    The attempt is claimed for ``claim_for`` (run after commit by that process), sent to its
    queue, or — a local activity with no claimer — left for the next step, which is requested.
    """
    if prepare_attempt(execution, event, now, claim_for=claim_for,
                       celery_task_id=celery_task_id):
        send_attempt(execution, event, batch)
    elif claim_for is None and is_local(event):
        request_local_run(execution, batch)
    event.save(update_fields=ATTEMPT_FIELDS)


def request_local_run(execution: WorkflowExecution, batch: OutboxBatch) -> None:
    """A local activity waits to be claimed: the next step of its run (asked for now) does."""
    WorkflowExecution.objects.filter(pk=execution.pk).update(step_requested=True)
    batch.request_step(execution.pk, execution.task_queue)
