"""Failed tries of a workflow function that are retried, kept in the run's history.

A workflow function that raises is retried by its start's retry policy; the run keeps only its
latest error in ``WorkflowExecution.error``. So that every failed try stays readable (type,
message, code, traceback), each retried failure is also written as a history row in the
dimension :data:`RETRIES_DIMENSION`, which no workflow thread uses: kind
:data:`WORKFLOW_ATTEMPT_KIND`, ``attempts`` = the try that failed, ``input = {"retry_delay":
seconds}``. The row is written observed, so it never asks for a replay step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Max

from ..models import HistoryEvent, HistoryStatus, WorkflowExecution

__all__ = ["RETRIES_DIMENSION", "WORKFLOW_ATTEMPT_KIND", "record_workflow_retry"]

#: History dimension of failed workflow tries; never a workflow thread's dimension.
RETRIES_DIMENSION = "retries"
#: History kind of a failed workflow try.
WORKFLOW_ATTEMPT_KIND = "workflow_attempt"


def record_workflow_retry(execution: WorkflowExecution, attempt: int, error: dict[str, Any],
                          delay: float, now: datetime) -> None:
    """Keep failed try ``attempt`` of the run's workflow function (call inside the step's
    transaction, after the run's version was checked)."""
    last = HistoryEvent.objects.filter(execution=execution, dimension=RETRIES_DIMENSION) \
        .aggregate(last=Max("seq"))["last"] or 0
    HistoryEvent.objects.create(
        execution=execution, dimension=RETRIES_DIMENSION, seq=last + 1,
        kind=WORKFLOW_ATTEMPT_KIND, name=execution.workflow_name, status=HistoryStatus.FAILED,
        attempts=attempt, input={"retry_delay": delay}, error=error,
        observed_step=execution.step_count, completed_at=now)
