"""The Celery tasks of durable_celery (found by ``autodiscover_tasks``) and the worker hooks.

* ``durable_celery.replay_step`` runs on the workflow's task queue ``Q``.
* ``durable_celery.run_activity`` runs on ``Q-activity`` (or the proxy's ``P-activity``).

Both acknowledge late and are rejected back to the broker when their worker process dies, so a
killed worker loses nothing; the database absorbs duplicates.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.signals import worker_ready, worker_shutdown

from .store.steps import run_replay_step
from .transport.activities import run_activity_attempt
from .transport.filesystem import install_filesystem_transport
from .transport.publish import install_publisher
from .transport.sweeper import start_sweeper

__all__ = ["replay_step", "run_activity"]

install_publisher()
install_filesystem_transport()

_DURABLE_TASK_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "serializer": "json",
}


@shared_task(name="durable_celery.replay_step", bind=True, ignore_result=True,
             **_DURABLE_TASK_OPTIONS)
def replay_step(self: Task, execution_pk: int) -> None:
    """Replay the execution ``execution_pk`` while it has outcomes no step has seen.

    Its result is always ``None`` and the history is the record, so none is stored; activity
    tasks keep theirs (each history row links to its Celery task's result).
    """
    run_replay_step(int(execution_pk))


@shared_task(name="durable_celery.run_activity", bind=True, **_DURABLE_TASK_OPTIONS)
def run_activity(self: Task, message: dict[str, Any]) -> str:
    """Run one activity attempt and record its outcome."""
    return run_activity_attempt(message, self.request.id)


@worker_ready.connect
def _start_sweeper_with_worker(**_: Any) -> None:
    start_sweeper()


@worker_shutdown.connect
def _stop_sweeper_with_worker(**_: Any) -> None:
    from .transport import sweeper

    if sweeper._started is not None:
        sweeper._started.stop()
