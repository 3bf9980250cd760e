"""The states of a run and of a durable call (their own module: the models and their
querysets both need them)."""

from __future__ import annotations

from django.db import models

__all__ = ["ACTIVE_STATUSES", "ExecutionStatus", "HistoryStatus", "RESOLVED_STATUSES",
           "RESUMABLE_STATUSES"]


class ExecutionStatus(models.TextChoices):
    """Life of a workflow execution."""

    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"
    INTERRUPTED = "interrupted", "interrupted"
    CONTINUED = "continued", "continued as new"


ACTIVE_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
#: Ended runs ``handle.resume()`` continues from where they stopped.
RESUMABLE_STATUSES = (ExecutionStatus.INTERRUPTED, ExecutionStatus.FAILED)


class HistoryStatus(models.TextChoices):
    """Life of one durable call."""

    SCHEDULED = "scheduled", "scheduled"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


#: History statuses that carry an outcome.
RESOLVED_STATUSES = (HistoryStatus.COMPLETED, HistoryStatus.FAILED)
