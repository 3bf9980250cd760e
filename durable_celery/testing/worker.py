"""``EmbeddedWorker``: runs the messages of the in-process broker with the task bodies the Celery
tasks run, in the calling thread.

A replay step is ``store.steps.run_replay_step`` followed by
``transport.activities.run_claimed_attempts`` (exactly ``durable_celery.replay_step``); an
activity attempt is ``transport.activities.run_delivered_attempt`` (exactly
``durable_celery.run_activity``). What differs from a Celery worker is only who hands the
message over.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable

from django.db import connections

from .. import __version__, clock
from ..models import Worker
from ..store.steps import run_replay_step
from ..store.workers import mark_stopped, register_process
from ..task_names import REPLAY_STEP_TASK, RUN_ACTIVITY_TASK
from ..transport.activities import (
    AttemptFailed,
    EagerBudget,
    run_claimed_attempts,
    run_delivered_attempt,
)
from ..transport.worker import use_embedded_worker
from .broker import Message

__all__ = ["AfterCommitCallbacks", "EmbeddedWorker"]


class EmbeddedWorker:
    """Runs delivered messages in this thread, as a worker row of its own.

    The row is registered when the worker opens (inside the test's transaction, if there is
    one, so it goes with it) and is this process's worker id while open
    (``transport.worker.use_embedded_worker``); closing marks it stopped and puts back the id
    the process had. It has no heartbeat thread: it beats when the test clock jumps.
    """

    def __init__(self) -> None:
        self.worker_id = register_process(
            name=f"testing@{socket.gethostname()}", hostname=socket.gethostname(),
            pid=os.getpid(), queues=(), pool="embedded", version=str(__version__))
        self._previous = use_embedded_worker(self.worker_id)

    def close(self) -> None:
        """Stop being this process's worker; the row is marked stopped."""
        use_embedded_worker(self._previous)
        mark_stopped(self.worker_id)

    def deliver(self, message: Message) -> str:
        """Run one message.

        Returns:
            ``stepped`` for a replay step; for an activity attempt ``completed``, ``failed``
            (recorded; retried or not as its policy says), ``async`` or ``skipped``.

        Raises:
            ValueError: The message is not a durable_celery task.
        """
        task_id = str(uuid.uuid4())
        if message.task_name == REPLAY_STEP_TASK:
            budget = EagerBudget(self.worker_id, task_id)
            claimed = run_replay_step(int(message.args[0]), self.worker_id, budget)
            run_claimed_attempts(claimed, self.worker_id, budget)
            return "stepped"
        if message.task_name == RUN_ACTIVITY_TASK:
            try:
                return str(run_delivered_attempt(message.args[0], task_id)["outcome"])
            except AttemptFailed:  # recorded; the retry policy decides what follows
                return "failed"
        raise ValueError(f"the embedded worker runs durable_celery tasks only, not "
                         f"{message.task_name!r}")

    def heartbeat(self) -> None:
        """Record that this worker is alive at the clock's (possibly advanced) time."""
        Worker.objects.filter(pk=self.worker_id).update(heartbeat_at=clock.now())


class AfterCommitCallbacks:
    """Runs the after-commit callbacks registered inside a test's transaction.

    Under pytest-django's default ``django_db`` (a ``TestCase``) the test runs in a transaction
    that is rolled back, never committed, so the outbox's publications — which wait for the
    commit — would never happen. Like Django's ``captureOnCommitCallbacks(execute=True)``, this
    runs the callbacks registered since it was created; outside a transaction there are none
    (they ran at commit).
    """

    def __init__(self) -> None:
        self._done: set[Callable[[], object]] = set(self._registered())

    @staticmethod
    def _registered() -> list[Callable[[], object]]:
        return [entry[1] for conn in connections.all(initialized_only=True)
                if conn.in_atomic_block for entry in conn.run_on_commit]

    def run_pending(self) -> int:
        """Run every callback registered since the last call (and those they register).

        Returns:
            How many ran.
        """
        ran = 0
        while True:
            fresh = [func for func in self._registered() if func not in self._done]
            if not fresh:
                return ran
            for func in fresh:
                self._done.add(func)
                func()
                ran += 1
