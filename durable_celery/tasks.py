"""The Celery tasks of durable_celery (found by ``autodiscover_tasks``).

* ``durable_celery.replay_step`` runs on the workflow's task queue ``Q``.
* ``durable_celery.run_activity`` runs on ``Q-activity`` (or the proxy's ``P-activity``); its
  ``shadow`` name is ``activity:<name>``, and a failed attempt ends the task in FAILURE with the
  activity's own exception.

Both acknowledge late; what a dead worker held is re-driven from the database by the sweeper of
any live worker, so neither the broker's redelivery nor its visibility timeout is waited on.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from .task_names import REPLAY_STEP_TASK, RUN_ACTIVITY_TASK
from .transport.activities import (
    AttemptFailed,
    EagerBudget,
    run_claimed_attempts,
    run_delivered_attempt,
)
from .transport.worker import current_worker_id

__all__ = ["replay_step", "run_activity"]

_DURABLE_TASK_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "serializer": "json",
}


@shared_task(name=REPLAY_STEP_TASK, bind=True, ignore_result=True, **_DURABLE_TASK_OPTIONS)
def replay_step(self: Task, execution_pk: int) -> None:
    """Step the run ``execution_pk`` while it has news, then run the activities the steps
    claimed for this process.

    Its result is always ``None`` and the history is the record, so none is stored.
    """
    from .store.steps import run_replay_step

    worker_id = current_worker_id()
    budget = EagerBudget(worker_id, self.request.id)
    run_claimed_attempts(run_replay_step(int(execution_pk), worker_id, budget), worker_id,
                         budget)


@shared_task(name=RUN_ACTIVITY_TASK, bind=True, **_DURABLE_TASK_OPTIONS)
def run_activity(self: Task, message: dict[str, Any]) -> dict[str, Any]:
    """Run one activity attempt and record its outcome (then what the next steps claimed).

    Raises:
        Exception: The attempt failed: the activity's own exception, after it was recorded.
    """
    try:
        return run_delivered_attempt(message, self.request.id)
    except AttemptFailed as failed:
        raise failed.error from None
