"""The ORM verbs of durable_celery's models, as querysets."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connection, models
from django.db.models import F, Q

from .statuses import ACTIVE_STATUSES, RESOLVED_STATUSES, HistoryStatus

if TYPE_CHECKING:
    from .models import (  # noqa: F401
        HistoryEvent,
        PendingSignal,
        Schedule,
        WorkflowExecution,
    )

__all__ = [
    "ExecutionQuerySet",
    "HistoryEventQuerySet",
    "OutboxQuerySet",
    "PendingSignalQuerySet",
    "ScheduleQuerySet",
    "TimerQuerySet",
    "supports_row_locks",
]


def supports_row_locks() -> bool:
    """Whether the database locks rows (PostgreSQL); SQLite serialises writers instead."""
    return bool(connection.features.has_select_for_update)


class ExecutionQuerySet(models.QuerySet["WorkflowExecution"]):
    """Verbs over workflow executions."""

    def active(self) -> ExecutionQuerySet:
        """Executions that can still make progress."""
        return self.filter(status__in=ACTIVE_STATUSES)

    def lock(self, pk: int, *, skip_locked: bool = False) -> WorkflowExecution | None:
        """Lock and return the execution ``pk`` for the current transaction.

        With ``skip_locked`` return ``None`` instead of waiting when another transaction holds it
        (PostgreSQL; SQLite's write transactions are already exclusive).
        """
        qs = self.filter(pk=pk)
        if supports_row_locks():
            qs = qs.select_for_update(skip_locked=skip_locked)
        return qs.first()

    def named(self, namespace: str, workflow_id: str) -> ExecutionQuerySet:
        """Every run of this workflow id in this namespace (at most one of them active)."""
        return self.filter(namespace=namespace, workflow_id=workflow_id)

    def continuing(self, namespace: str, workflow_id: str, run_id: str) -> ExecutionQuerySet:
        """The run that ``run_id`` continued as new into (first if several were recorded)."""
        return self.named(namespace, workflow_id).filter(previous_run_id=run_id).order_by("id")

    def needing_step(self, before: datetime) -> ExecutionQuerySet:
        """Active runs that asked for a step before ``before`` and did not get one."""
        return self.active().filter(step_requested=True, updated_at__lt=before)


class HistoryEventQuerySet(models.QuerySet["HistoryEvent"]):
    """Verbs over history rows."""

    def for_replay(self, execution_id: int) -> Any:
        """Everything the replay of an execution's threads reads, in one query, as tuples
        ``(pk, seq, dimension, kind, name, status, result, error, observed_step)``."""
        return self.filter(execution_id=execution_id).order_by("dimension", "seq").values_list(
            "pk", "seq", "dimension", "kind", "name", "status", "result", "error",
            "observed_step")

    def settle(self, pk: int, *, result: Any = None, error: dict[str, Any] | None = None,
               now: datetime, celery_task_id: str | None = None, attempt: int | None = None,
               worker_id: int | None = None, observed_step: int | None = None) -> bool:
        """Record the outcome of a scheduled call; the first writer wins.

        Args:
            pk: The history row.
            result: The outcome when it succeeded.
            error: The error dict when it failed.
            now: Completion time.
            celery_task_id: The Celery task that produced the outcome.
            attempt: When given, only that attempt may record it (a stale one cannot).
            worker_id: When given, only an attempt this process holds (or one nobody holds,
                completed from elsewhere) may record it.
            observed_step: The step that sees the outcome as it is recorded (the sequential
                path records the outcome and its step together).

        Returns:
            Whether this call recorded the outcome (``False``: it was already settled).
        """
        qs = self.filter(pk=pk, status=HistoryStatus.SCHEDULED)
        if attempt is not None:
            qs = qs.filter(attempts=attempt)
        if worker_id is not None:
            qs = qs.filter(models.Q(worker_id=worker_id) | models.Q(worker__isnull=True))
        fields: dict[str, Any] = {"completed_at": now, "lease_until": None,
                                  "observed_step": observed_step}
        if error is None:
            fields.update(status=HistoryStatus.COMPLETED, result=result)
        else:
            fields.update(status=HistoryStatus.FAILED, error=error)
        if celery_task_id is not None:
            fields["celery_task_id"] = celery_task_id
        return bool(qs.update(**fields))

    def missed_by(self, execution_id: int, since: int, positions: dict[str, int]) -> Any:
        """What threads kept in memory at step ``since`` missed while other processes stepped
        their run, as :meth:`for_replay`'s tuples: the outcomes later steps saw, the outcomes
        no step has seen yet, and the calls past the position each thread reached (by
        dimension). Read through indexes: the cost follows what was missed, not the length of
        the history or the number of calls still open."""
        missed = Q(observed_step__gt=since) | Q(observed_step__isnull=True,
                                                  status__in=RESOLVED_STATUSES)
        for dimension, position in positions.items():
            missed |= Q(dimension=dimension, seq__gt=position)
        return self.filter(missed, execution_id=execution_id).values_list(
            "pk", "seq", "dimension", "kind", "name", "status", "result", "error",
            "observed_step")

    def unobserved(self) -> HistoryEventQuerySet:
        """Outcomes no replay step has seen yet."""
        return self.filter(observed_step__isnull=True, status__in=RESOLVED_STATUSES)

    def news(self) -> HistoryEventQuerySet:
        """Outcomes no step has seen that call for a step: all of them, except activity results
        a run holds back while it waits for the rest of a ``workflow.all`` group (fewer
        ``outcomes_settled`` than its ``wake_at``). The step that comes delivers those too."""
        return self.unobserved().filter(
            ~Q(kind="activity", status=HistoryStatus.COMPLETED)
            | Q(execution__outcomes_settled__gte=F("execution__wake_at")))

    def waiting_for(self, namespace: str, signal_id: str) -> HistoryEventQuerySet:
        """Open ``wait_for`` calls on ``signal_id`` in running executions of ``namespace``."""
        return self.filter(kind="wait", status=HistoryStatus.SCHEDULED, name=signal_id,
                           execution__namespace=namespace,
                           execution__status__in=ACTIVE_STATUSES)

    def open_activities(self) -> HistoryEventQuerySet:
        """Activity calls still waiting for an outcome, in runs that are still active."""
        return self.filter(kind="activity", status=HistoryStatus.SCHEDULED,
                           execution__status__in=ACTIVE_STATUSES)


class TimerQuerySet(models.QuerySet[Any]):
    """Verbs over stored timers."""

    def claim_due(self, now: datetime, limit: int = 100,
                  executions: Collection[int] | None = None) -> list[Any]:
        """Lock and return due timers no other sweeper holds (call inside a transaction);
        with ``executions``, only timers of those runs."""
        qs = self.filter(due_at__lte=now).order_by("due_at")
        if executions is not None:
            qs = qs.filter(execution_id__in=list(executions))
        if supports_row_locks():
            qs = qs.select_for_update(skip_locked=True)
        return list(qs[:limit])


class PendingSignalQuerySet(models.QuerySet["PendingSignal"]):
    """Verbs over buffered signals."""

    def take(self, namespace: str, signal_id: str) -> PendingSignal | None:
        """Remove and return the oldest buffered signal with this id, if any."""
        signal = self.filter(namespace=namespace, signal_id=signal_id).order_by("id").first()
        if signal is not None:
            signal.delete()
        return signal


class OutboxQuerySet(models.QuerySet[Any]):
    """Verbs over the transactional outbox."""

    def claim_stale(self, before: datetime, limit: int = 200) -> list[Any]:
        """Lock and return messages recorded before ``before`` and never confirmed sent, those
        the broker refused least first (a refused row cannot crowd healthy ones out of the
        batch)."""
        qs = self.filter(created_at__lt=before).order_by("publish_attempts", "id")
        if supports_row_locks():
            qs = qs.select_for_update(skip_locked=True)
        return list(qs[:limit])

    def acknowledge(self, pks: list[int]) -> int:
        """Delete the rows of messages the broker took, in one statement (no transaction, no
        deletion collector: nothing refers to an outbox row)."""
        if not pks:
            return 0
        return int(self.filter(pk__in=pks)._raw_delete(self.db))


class ScheduleQuerySet(models.QuerySet["Schedule"]):
    """Verbs over schedules."""

    def named(self, namespace: str, schedule_id: str) -> ScheduleQuerySet:
        """The schedule with this id in this namespace (at most one)."""
        return self.filter(namespace=namespace, schedule_id=schedule_id)

    def due(self, now: datetime, schedules: Collection[int] | None = None) -> ScheduleQuerySet:
        """Unpaused schedules with a fire time that has come, or a buffered fire waiting,
        fire times first; with ``schedules``, only those (primary keys)."""
        qs = self.filter(paused=False).filter(
            Q(next_fire_at__lte=now) | Q(buffered_fire_at__isnull=False))
        if schedules is not None:
            qs = qs.filter(pk__in=list(schedules))
        return qs.order_by("next_fire_at", "pk")

    def claim_due(self, now: datetime, limit: int = 50,
                  schedules: Collection[int] | None = None) -> list[Schedule]:
        """Lock and return due schedules no other sweeper holds (call inside a transaction);
        with ``schedules``, only those (primary keys)."""
        qs = self.due(now, schedules)
        if supports_row_locks():
            qs = qs.select_for_update(skip_locked=True)
        return list(qs[:limit])

    def lock(self, pk: int) -> Schedule | None:
        """Lock and return the schedule ``pk`` for the current transaction (waits for it)."""
        qs = self.filter(pk=pk)
        if supports_row_locks():
            qs = qs.select_for_update()
        return qs.first()
