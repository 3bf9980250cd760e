"""The transactional outbox: messages are stored with the decision and sent after commit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from ..models import OutboxMessage

__all__ = ["OutboxBatch", "Publisher", "publish_messages", "set_publisher"]

logger = logging.getLogger(__name__)

#: Sends one message: ``(task_name, queue, args)``. Installed by the transport layer.
Publisher = Callable[[str, str, list[Any]], None]

_publisher: Publisher | None = None

REPLAY_STEP_TASK = "durable_celery.replay_step"
RUN_ACTIVITY_TASK = "durable_celery.run_activity"


def set_publisher(publisher: Publisher) -> None:
    """Install the function that hands messages to the broker."""
    global _publisher
    _publisher = publisher


class OutboxBatch:
    """Messages decided in one transaction; :meth:`commit` stores them and sends after commit."""

    def __init__(self) -> None:
        self.messages: list[OutboxMessage] = []
        self._step_queued: set[int] = set()

    def add(self, task_name: str, queue: str, args: list[Any]) -> None:
        """Add a message to send once the transaction commits."""
        self.messages.append(OutboxMessage(task_name=task_name, queue=queue, args=args))

    def request_step(self, execution_pk: int, task_queue: str) -> None:
        """Ask for a replay step of an execution (once per batch)."""
        if execution_pk not in self._step_queued:
            self._step_queued.add(execution_pk)
            self.add(REPLAY_STEP_TASK, task_queue, [execution_pk])

    def commit(self) -> None:
        """Store the messages in the current transaction and send them after it commits."""
        if not self.messages:
            return
        stored = OutboxMessage.objects.bulk_create(self.messages)
        self.messages = []
        self._step_queued.clear()
        transaction.on_commit(lambda: publish_messages(stored))


def publish_messages(messages: list[OutboxMessage]) -> int:
    """Send stored messages and delete the ones sent; unsent ones stay for the sweeper.

    Returns:
        How many were sent.
    """
    if _publisher is None:
        logger.warning("durable_celery: no publisher installed; %d messages wait in the outbox",
                       len(messages))
        return 0
    sent: list[int] = []
    for message in messages:
        try:
            _publisher(message.task_name, message.queue, message.args)
        except Exception:  # the broker is unreachable: the sweeper re-sends later
            logger.exception("durable_celery: could not publish %s to %s; it stays in the outbox",
                             message.task_name, message.queue)
            continue
        sent.append(message.pk)
    if sent:
        OutboxMessage.objects.filter(pk__in=sent).delete()
    return len(sent)
