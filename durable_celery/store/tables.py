"""The tables the hand-written PostgreSQL statements name, read once from the models (a
``db_table`` set on a model changes them here and nowhere else)."""

from __future__ import annotations

from ..models import HistoryEvent, OutboxMessage, Timer, WorkflowExecution, WorkflowThread

__all__ = ["EXECUTION_TABLE", "HISTORY_TABLE", "OUTBOX_TABLE", "THREAD_TABLE", "TIMER_TABLE"]

EXECUTION_TABLE = WorkflowExecution._meta.db_table
HISTORY_TABLE = HistoryEvent._meta.db_table
OUTBOX_TABLE = OutboxMessage._meta.db_table
THREAD_TABLE = WorkflowThread._meta.db_table
TIMER_TABLE = Timer._meta.db_table
