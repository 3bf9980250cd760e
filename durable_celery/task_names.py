"""The names of durable_celery's Celery tasks and messages, in one place."""

from __future__ import annotations

__all__ = ["EMIT_MESSAGE", "REPLAY_STEP_TASK", "RUN_ACTIVITY_TASK"]

#: Replay steps of a workflow with task queue ``Q`` run on Celery queue ``Q``.
REPLAY_STEP_TASK = "durable_celery.replay_step"

#: Activity attempts run on ``Q-activity`` (Celery's ``shadow`` name is ``activity:<name>``).
RUN_ACTIVITY_TASK = "durable_celery.run_activity"

#: Outbox rows of emitted events: published to the events exchange, not run as tasks.
EMIT_MESSAGE = "durable_celery.emit"
