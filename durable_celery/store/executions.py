"""Starting, signalling and interrupting runs, and reading them back for people."""

from __future__ import annotations

import enum
import json
from contextlib import nullcontext
from datetime import timedelta
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction

from .. import clock
from ..errors import DuplicateWorkflowError, InvalidArgumentError, WorkflowNotFoundError
from ..models import (
    ACTIVE_STATUSES,
    ExecutionStatus,
    SearchAttribute,
    TimerKind,
    WorkflowExecution,
)
from .finish import FINISHED_FIELDS, finish_execution
from .outbox import OutboxBatch, request_step_now
from .signals import deliver_signal, lock_signal_ids

__all__ = [
    "EXPORT_FORMAT",
    "IdReusePolicy",
    "RunOutcome",
    "chain_end",
    "create_execution",
    "current_run",
    "describe_execution",
    "export_run",
    "get_execution",
    "history_of",
    "interrupt_execution",
    "outcome_of",
    "send_signal",
]


class IdReusePolicy(enum.StrEnum):
    """What starting a workflow id that already has runs does (API.md "Runs")."""

    ALLOW_DUPLICATE = "allow_duplicate"    #: a new run unless one is still running
    REJECT_DUPLICATE = "reject_duplicate"  #: refused whenever the id has any run
    RETURN_EXISTING = "return_existing"    #: the current run, whatever its state; nothing starts

    @classmethod
    def coerce(cls, value: str | IdReusePolicy) -> IdReusePolicy:
        """Accept the enum or its value.

        Raises:
            InvalidArgumentError: Not one of the three policies.
        """
        try:
            return cls(value)
        except ValueError:
            raise InvalidArgumentError(
                f"id_reuse_policy must be one of {', '.join(p.value for p in cls)}, got "
                f"{value!r}") from None


def create_execution(*, namespace: str, workflow_id: str, workflow_name: str, task_queue: str,
                     args: list[Any], search: dict[str, str] | None = None,
                     entity: str | None = None, expire: float | None = None,
                     retry_policy: dict[str, Any] | None = None,
                     document: dict[str, Any] | None = None,
                     parent_workflow_id: str | None = None, parent_run_id: str | None = None,
                     origin_workflow_id: str | None = None,
                     execution_timeout: float | None = None,
                     previous_run_id: str | None = None,
                     id_reuse_policy: IdReusePolicy = IdReusePolicy.ALLOW_DUPLICATE,
                     batch: OutboxBatch | None = None) -> WorkflowExecution:
    """Store a new run and request its first step, in one transaction.

    Earlier runs of the id are kept. With ``RETURN_EXISTING`` the current run (see
    :func:`current_run`) is returned when there is one, and nothing is stored.
    ``execution_timeout`` (seconds from now) stores the run's deadline and the timer that
    interrupts it with ``DurableTimeoutError``; ``document`` is the initial entity document (a
    run continued as new keeps its predecessor's).

    Raises:
        DuplicateWorkflowError: A run of this id is still running in the namespace (or, with
            ``REJECT_DUPLICATE``, the id has any run).
    """
    own_batch = batch is None
    batch = batch if batch is not None else OutboxBatch()  # an empty batch is falsy
    # A plain client start is one INSERT: it needs no transaction of its own (BEGIN and COMMIT
    # are two more round trips). Inside the caller's transaction a savepoint keeps a duplicate
    # id from spoiling it.
    one_write = (own_batch and not search and execution_timeout is None
                 and id_reuse_policy is IdReusePolicy.ALLOW_DUPLICATE
                 and connection.get_autocommit() and not connection.in_atomic_block)
    try:
        with nullcontext() if one_write else transaction.atomic():
            if id_reuse_policy is not IdReusePolicy.ALLOW_DUPLICATE:
                current = current_run(namespace, workflow_id)
                if current is not None:
                    if id_reuse_policy is IdReusePolicy.RETURN_EXISTING:
                        return current
                    raise DuplicateWorkflowError(
                        f"workflow {workflow_id!r} already has a run in namespace "
                        f"{namespace!r} ({current.workflow_name}, {current.status}) and "
                        f"id_reuse_policy is reject_duplicate")
            now = clock.now()
            execution = WorkflowExecution.objects.create(
                namespace=namespace, workflow_id=workflow_id, workflow_name=workflow_name,
                task_queue=task_queue, args=args, entity=entity or "",
                document=document if document is not None else {}, expire=expire,
                retry_policy=retry_policy, parent_workflow_id=parent_workflow_id,
                parent_run_id=parent_run_id, origin_workflow_id=origin_workflow_id,
                previous_run_id=previous_run_id,
                timeout_at=None if execution_timeout is None
                else now + timedelta(seconds=float(execution_timeout)))
            if search:
                SearchAttribute.objects.bulk_create(
                    SearchAttribute(execution=execution, key=k, value=v) for k, v in search.items())
            if execution.timeout_at is not None:
                execution.timers.create(kind=TimerKind.EXECUTION_TIMEOUT,
                                        due_at=execution.timeout_at)
            if own_batch:  # a client's start: the run's step_requested flag is the record
                request_step_now(execution.pk, task_queue)
            else:
                batch.request_step(execution.pk, task_queue)
    except IntegrityError:  # the one-active-run constraint: no query ahead of the insert
        running = current_run(namespace, workflow_id)
        which = f" ({running.workflow_name}, {running.status})" if running is not None else ""
        raise DuplicateWorkflowError(f"workflow {workflow_id!r} is already running in "
                                     f"namespace {namespace!r}{which}") from None
    return execution


def current_run(namespace: str, workflow_id: str) -> WorkflowExecution | None:
    """The run of ``workflow_id`` that is active if there is one (an earlier run may have been
    resumed), else its newest run; ``None`` when the id has no run."""
    runs = WorkflowExecution.objects.named(namespace, workflow_id)
    return runs.filter(status__in=ACTIVE_STATUSES).first() or runs.order_by("-id").first()


def get_execution(namespace: str, workflow_id: str,
                  run_id: str | None = None) -> WorkflowExecution:
    """Return the run ``run_id`` of ``workflow_id`` or, without one, its current run: the run
    that is active if there is one (an earlier run may have been resumed), else the newest.

    Raises:
        WorkflowNotFoundError: There is none in this namespace.
    """
    if run_id:
        execution = WorkflowExecution.objects.named(namespace, workflow_id) \
            .filter(run_id=run_id).first()
    else:
        execution = current_run(namespace, workflow_id)
    if execution is None:
        which = f" run {run_id!r}" if run_id else ""
        raise WorkflowNotFoundError(
            f"no workflow with id {workflow_id!r}{which} in namespace {namespace!r}")
    return execution


def chain_end(execution: WorkflowExecution) -> WorkflowExecution:
    """The last run of the continue-as-new chain ``execution`` belongs to (itself when it did
    not continue as new): where the workflow that run started is now."""
    while execution.status == ExecutionStatus.CONTINUED:
        following = WorkflowExecution.objects.continuing(
            execution.namespace, execution.workflow_id, execution.run_id).first()
        if following is None:
            break
        execution = following
    return execution


class RunOutcome(NamedTuple):
    """What ``handle.result()`` reads of a run at each poll."""

    run_id: str
    status: str
    workflow_name: str
    result: Any
    error: Any


#: One poll of ``handle.result()``: a lookup by the unique run id (a plain statement: the ORM
#: took five times the CPU of the statement itself, and the client shares the machine).
_OUTCOME = (f"SELECT status, workflow_name, result, error "
            f"FROM {WorkflowExecution._meta.db_table} "
            f"WHERE run_id = %s AND namespace = %s AND workflow_id = %s")


def _from_json(value: str | None) -> Any:
    """A JSON column as a plain statement returns it (text: Django has the driver leave JSON
    to its fields) decoded."""
    return None if value is None else json.loads(value)


def outcome_of(namespace: str, workflow_id: str, run_id: str) -> RunOutcome:
    """The status and outcome of the run ``run_id``, or of the last run of the continue-as-new
    chain it started: one index lookup of four columns per run (a poll reads no arguments,
    document or history).

    Raises:
        WorkflowNotFoundError: There is no such run.
    """
    while True:
        with connection.cursor() as cursor:
            cursor.execute(_OUTCOME, [run_id, namespace, workflow_id])
            row = cursor.fetchone()
        if row is None:
            raise WorkflowNotFoundError(
                f"no workflow with id {workflow_id!r} run {run_id!r} in namespace {namespace!r}")
        status, name, result, error = row
        following = WorkflowExecution.objects.continuing(namespace, workflow_id, run_id) \
            .values_list("run_id", flat=True).first() \
            if status == ExecutionStatus.CONTINUED else None
        if following is None:
            return RunOutcome(run_id, status, name, _from_json(result), _from_json(error))
        run_id = following


def send_signal(namespace: str, signal_id: str, data: Any) -> int:
    """Deliver a signal from outside any workflow.

    Returns:
        How many waiting workflow threads received it (0: it was buffered for a later wait).
    """
    with transaction.atomic():
        lock_signal_ids(namespace, [signal_id])
        batch = OutboxBatch()
        woken = deliver_signal(namespace, signal_id, data, now=clock.now(), batch=batch)
        batch.commit()
    return len(woken)


def interrupt_execution(namespace: str, workflow_id: str, reason: str | None = None,
                        descend: bool = False, *, batch: OutboxBatch | None = None,
                        error: dict[str, Any] | None = None) -> list[str]:
    """End the running run of ``workflow_id`` (with ``descend``, every descendant) as
    interrupted; a hard stop, no workflow code runs afterwards.

    Its timers are cancelled and open calls marked cancelled, so late outcomes change nothing.
    Interrupting a finished workflow does nothing.

    Args:
        error: What the interrupted run records (default: ``DurableInterruptedError`` with
            ``reason``).

    Returns:
        Ids of the workflows this call interrupted.

    Raises:
        WorkflowNotFoundError: No run has this id.
    """
    get_execution(namespace, workflow_id)
    interrupted: list[str] = []
    stored = error or {"class": "DurableInterruptedError", "type": "DurableInterruptedError",
                       "message": reason or "workflow interrupted", "code": 410}
    own_batch = batch is None
    batch = batch if batch is not None else OutboxBatch()  # an empty batch is falsy
    with transaction.atomic():
        frontier = [workflow_id]
        while frontier:
            current = frontier.pop()
            for pk in WorkflowExecution.objects.named(namespace, current) \
                    .filter(status__in=ACTIVE_STATUSES).values_list("pk", flat=True):
                locked = WorkflowExecution.objects.lock(pk)
                if locked is None or not locked.is_active:
                    continue
                finish_execution(locked, ExecutionStatus.INTERRUPTED, now=clock.now(),
                                 batch=batch, error=stored)
                locked.save(update_fields=FINISHED_FIELDS)
                interrupted.append(current)
            if descend:
                frontier.extend(WorkflowExecution.objects.filter(
                    namespace=namespace, parent_workflow_id=current,
                    status__in=ACTIVE_STATUSES).values_list("workflow_id", flat=True))
        if own_batch:
            batch.commit()
    return interrupted


def describe_execution(execution: WorkflowExecution) -> dict[str, Any]:
    """The ``describe()`` dict of a run."""
    return {
        "workflow_id": execution.workflow_id,
        "run_id": execution.run_id,
        "workflow_name": execution.workflow_name,
        "task_queue": execution.task_queue,
        "namespace": execution.namespace,
        "status": execution.status,
        "args": execution.args,
        "result": execution.result,
        "error": execution.error,
        "search": dict(execution.search_attributes.values_list("key", "value")),
        "entity": execution.document,
        "entity_type": execution.entity,
        "parent_workflow_id": execution.parent_workflow_id,
        "parent_run_id": execution.parent_run_id,
        "origin_workflow_id": execution.origin_workflow_id,
        "previous_run_id": execution.previous_run_id,
        "cancel_requested_at": execution.cancel_requested_at,
        "attempt": execution.attempt,
        "expire": execution.expire,
        "timeout_at": execution.timeout_at,
        "created_at": execution.created_at,
        "updated_at": execution.updated_at,
        "completed_at": execution.completed_at,
    }


def history_of(execution: WorkflowExecution) -> list[dict[str, Any]]:
    """The ``history()`` list of a run, in order."""
    return [
        {
            "seq": row.seq, "dimension": row.dimension, "kind": row.kind, "name": row.name,
            "status": row.status, "attempts": row.attempts, "input": row.input,
            "result": row.result, "error": row.error, "celery_task_id": row.celery_task_id,
            "observed_step": row.observed_step, "created_at": row.created_at,
            "started_at": row.started_at, "completed_at": row.completed_at,
        }
        for row in execution.history.order_by("dimension", "seq")
    ]


#: Version of the format :func:`export_run` writes.
EXPORT_FORMAT = 1


def export_run(execution: WorkflowExecution) -> dict[str, Any]:
    """A run and its whole history as JSON: what ``manage.py durable export`` prints and what
    the testing kit's ``replay`` reads to check that current code still fits a run in flight.

    Returns:
        ``{"format", "workflow_id", "run_id", "workflow_name", "task_queue", "namespace",
        "args", "status", "result", "error", "history": [{"seq", "dimension", "kind", "name",
        "status", "result", "error", "observed_step", "input"}, ...]}`` with history in
        ``(dimension, seq)`` order; times as ISO 8601 text.
    """
    rows = execution.history.order_by("dimension", "seq").values(
        "seq", "dimension", "kind", "name", "status", "result", "error", "observed_step",
        "input", "attempts", "created_at", "completed_at")
    return {
        "format": EXPORT_FORMAT,
        "workflow_id": execution.workflow_id, "run_id": execution.run_id,
        "workflow_name": execution.workflow_name, "task_queue": execution.task_queue,
        "namespace": execution.namespace, "args": execution.args, "status": execution.status,
        "result": execution.result, "error": execution.error,
        "created_at": execution.created_at.isoformat() if execution.created_at else None,
        "history": [{**row, "created_at": _iso(row["created_at"]),
                     "completed_at": _iso(row["completed_at"])} for row in rows],
    }


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None

