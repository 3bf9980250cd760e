"""``InProcessBroker``: what the outbox publishes to while a ``WorkflowEnvironment`` runs.

Messages are kept in this process for the embedded worker instead of going to Redis or RabbitMQ.
They travel as JSON, as through the broker, so a value the broker would refuse is refused here.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..task_names import EMIT_MESSAGE, REPLAY_STEP_TASK, RUN_ACTIVITY_TASK

__all__ = ["InProcessBroker", "Message"]


@dataclass(frozen=True)
class Message:
    """One task message: ``task_name`` on Celery queue ``queue`` with ``args``."""

    task_name: str
    queue: str
    args: list[Any]

    @property
    def execution(self) -> int | None:
        """The run this message is about (its row id), when it names one."""
        if self.task_name == REPLAY_STEP_TASK:
            return int(self.args[0])
        if self.task_name == RUN_ACTIVITY_TASK:
            return int(self.args[0]["execution"])
        return None


class InProcessBroker:
    """Queues the messages the outbox publishes, for the embedded worker to take in order.

    Attributes:
        events: Every event workflows emitted, in order, as a subscriber's
            ``get_event()`` returns it (``topic``, ``payload``, ``workflow_id`` …).
        runs: Row ids of the runs whose messages passed through: the runs this environment
            drives (their timers are the ones time skipping fires).
    """

    def __init__(self) -> None:
        self._pending: deque[Message] = deque()
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.runs: set[int] = set()

    def __len__(self) -> int:
        return len(self._pending)

    def publish(self, task_name: str, queue: str, args: list[Any]) -> None:
        """The outbox's publisher: keep the message (an emitted event is recorded instead).

        Raises:
            TypeError, ValueError: ``args`` are not JSON (the broker would refuse them too).
        """
        message = Message(task_name, queue, json.loads(json.dumps(list(args), allow_nan=False)))
        with self._lock:
            if task_name == EMIT_MESSAGE:
                body = message.args[0]
                self.events.append(dict(body) if isinstance(body, dict) else
                                   {"topic": queue, "payload": body})
                return
            self._pending.append(message)
            if message.execution is not None:
                self.runs.add(message.execution)

    def request_step(self, execution_pk: int, task_queue: str) -> None:
        """Queue a replay step of a run (one that has news no message announced)."""
        self.publish(REPLAY_STEP_TASK, task_queue, [execution_pk])

    def take(self) -> Message | None:
        """The oldest queued message, or ``None`` when the queue is empty."""
        with self._lock:
            return self._pending.popleft() if self._pending else None

    def run_ids(self) -> frozenset[int]:
        """A snapshot of :attr:`runs` (activities in helper threads may publish meanwhile)."""
        with self._lock:
            return frozenset(self.runs)

    def queued_steps(self) -> set[int]:
        """Runs that have a replay step queued."""
        with self._lock:
            return {m.execution for m in self._pending
                    if m.task_name == REPLAY_STEP_TASK and m.execution is not None}

    def clear(self) -> int:
        """Drop every queued message; returns how many there were."""
        with self._lock:
            count = len(self._pending)
            self._pending.clear()
            return count
