"""Signals: delivery to every current waiter, or buffering until a ``wait_for`` takes one."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection

from ..models import HistoryEvent, PendingSignal
from .outbox import OutboxBatch

__all__ = ["deliver_signal", "lock_signal_ids", "take_buffered_signal"]


def lock_signal_ids(namespace: str, signal_ids: Iterable[str]) -> None:
    """Serialise delivery and wait registration of these signal ids until commit.

    PostgreSQL: transaction-scoped advisory locks, taken in sorted order so two transactions
    never wait on each other crosswise. SQLite already runs one writer at a time.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for signal_id in sorted(set(signal_ids)):
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                           [f"{namespace}:{signal_id}"])


def deliver_signal(namespace: str, signal_id: str, data: Any, *, now: datetime,
                   batch: OutboxBatch, current_execution: int | None = None) -> list[int]:
    """Deliver ``data`` to every open wait on ``signal_id``; buffer it when none waits.

    Call inside a transaction that holds :func:`lock_signal_ids` for ``signal_id``.

    Args:
        namespace: Namespace of the signal.
        signal_id: The id.
        data: JSON payload.
        now: Delivery time.
        batch: Receives a replay-step request for each woken execution other than
            ``current_execution`` (whose step is already running).
        current_execution: The execution whose step sends the signal, if any.

    Returns:
        Primary keys of the executions woken (empty when the signal was buffered).
    """
    woken: list[int] = []
    waits = list(HistoryEvent.objects.waiting_for(namespace, signal_id)
                 .values_list("pk", "execution_id", "execution__task_queue"))
    for pk, execution_pk, task_queue in waits:
        if HistoryEvent.objects.settle(pk, result=data, now=now):
            woken.append(execution_pk)
            if execution_pk != current_execution:
                batch.request_step(execution_pk, task_queue)
    if not woken:
        PendingSignal.objects.create(namespace=namespace, signal_id=signal_id, payload=data)
    return woken


def take_buffered_signal(namespace: str, signal_id: str) -> tuple[bool, Any]:
    """Take the oldest buffered signal with this id: ``(found, payload)``."""
    signal = PendingSignal.objects.take(namespace, signal_id)
    return (signal is not None, None if signal is None else signal.payload)
