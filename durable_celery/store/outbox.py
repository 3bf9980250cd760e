"""The transactional outbox: messages are stored with the decision and sent after commit.

A message is an :class:`~durable_celery.models.OutboxMessage` row written in the transaction that
decided it; after commit it is published, and the row is deleted once the broker took it. That
deletion (the acknowledgement) costs a statement, so in worker processes it is folded into later
work: the next outbox batch this process commits deletes the rows acknowledged so far in the same
transaction, and anything still pending when the task ends is left to the next claim of the
process (:func:`park_acknowledgements`). A row that is never acknowledged — the broker was down, the
process died — is re-sent by the sweeper after ``DURABLE_OUTBOX_REPUBLISH_AFTER``; duplicates are
harmless (every message is absorbed by the history).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from django.db import connection, transaction

from ..models import OutboxMessage
from ..task_names import REPLAY_STEP_TASK, RUN_ACTIVITY_TASK

__all__ = ["ACK_IDLE_FLUSH", "BROKER_DOWN_AFTER", "OutboxBatch", "Publisher",
           "defer_acknowledgements", "flush_acknowledgements", "flush_parked_acknowledgements",
           "park_acknowledgements", "publish_messages", "request_step_now", "set_publisher",
           "take_acknowledgements"]

logger = logging.getLogger(__name__)

#: Sends one message: ``(task_name, queue, args)``. Installed by the transport layer.
Publisher = Callable[[str, str, list[Any]], None]

_publisher: Publisher | None = None
#: Opens a scope in which the publisher sends a batch cheaply (one producer), or ``None``.
_batch: Callable[[], AbstractContextManager[Any]] | None = None


class _Acknowledgements(threading.local):
    """Outbox rows this thread published and has not deleted yet."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.deferred = False


_acks = _Acknowledgements()


def set_publisher(publisher: Publisher | None, *,
                  batch: Callable[[], AbstractContextManager[Any]] | None = None,
                  ) -> Publisher | None:
    """Install the function that hands messages to the broker, and optionally ``batch``: a
    scope inside which it sends several messages more cheaply.

    Returns:
        The publisher installed before (to put back, e.g. after a test).
    """
    global _publisher, _batch
    previous, _publisher, _batch = _publisher, publisher, batch
    return previous


def defer_acknowledgements(deferred: bool) -> None:
    """Fold acknowledgements into later work (worker tasks) or delete them at once (clients)."""
    _acks.deferred = deferred


#: Seconds acknowledgements a finished task left behind wait for the next claim in their
#: process before a thread of their own deletes them.
ACK_IDLE_FLUSH = 1.0


class _Parked:
    """Acknowledgements finished tasks of this process left for its next claim."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pks: list[int] = []
        self.since = 0.0
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None


_parked = _Parked()


def take_acknowledgements() -> list[int]:
    """Hand over the rows this thread published and has not deleted, and those finished tasks
    of this process left (the caller deletes them in its next statement)."""
    pending, _acks.pending = _acks.pending, []
    with _parked.lock:
        parked, _parked.pks = _parked.pks, []
    return pending + parked


def flush_acknowledgements() -> int:
    """Delete the outbox rows this thread published and still holds as pending."""
    pending, _acks.pending = _acks.pending, []
    OutboxMessage.objects.acknowledge(pending)
    return len(pending)


def flush_parked_acknowledgements() -> int:
    """Delete what finished tasks of this process left for its next claim (the process ends)."""
    parked = take_acknowledgements()
    OutboxMessage.objects.acknowledge(parked)
    return len(parked)


def park_acknowledgements() -> None:
    """A worker task ends: leave the rows it still holds to the next claim of this process,
    which deletes them in its own statement (PostgreSQL), so a task that published costs no
    statement of its own for them. If no claim comes within :data:`ACK_IDLE_FLUSH` seconds,
    a thread deletes them; a row whose deletion is lost is re-sent by the sweeper, harmlessly.
    Elsewhere (SQLite) they are deleted now."""
    if connection.vendor != "postgresql":
        flush_acknowledgements()
        return
    pending, _acks.pending = _acks.pending, []
    if not pending:
        return
    with _parked.lock:
        if not _parked.pks:
            _parked.since = time.monotonic()
        _parked.pks.extend(pending)
        thread = _parked.thread
        if thread is None or not thread.is_alive():
            thread = _parked.thread = threading.Thread(
                target=_flush_when_idle, name="durable-ack-flush", daemon=True)
            thread.start()
        if _parked.wake.is_set():
            return  # the thread is already counting down: no need to wake it
    _parked.wake.set()


def _flush_when_idle() -> None:
    while True:
        _parked.wake.wait()
        with _parked.lock:
            if not _parked.pks:
                _parked.wake.clear()
                continue
            wait = _parked.since + ACK_IDLE_FLUSH - time.monotonic()
            due: list[int] = []
            if wait <= 0:
                due, _parked.pks = _parked.pks, []
        if not due:
            time.sleep(wait)
            continue
        try:
            OutboxMessage.objects.acknowledge(due)
        except Exception:  # noqa: BLE001 - the sweeper re-sends what stays; nothing is lost
            logger.debug("durable_celery: could not delete %d acknowledged outbox rows",
                         len(due), exc_info=True)
        finally:
            connection.close()


class OutboxBatch:
    """Messages decided in one transaction; :meth:`commit` stores them and sends after commit."""

    def __init__(self) -> None:
        self.messages: list[OutboxMessage] = []
        self._step_queued: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.messages)

    def add(self, task_name: str, queue: str, args: list[Any]) -> None:
        """Add a message to send once the transaction commits."""
        self.messages.append(OutboxMessage(task_name=task_name, queue=queue, args=args))

    def request_step(self, execution_pk: int, task_queue: str) -> None:
        """Ask for a replay step of an execution (once per batch)."""
        if execution_pk not in self._step_queued:
            self._step_queued.add(execution_pk)
            self.add(REPLAY_STEP_TASK, task_queue, [execution_pk])

    def dispatch_attempt(self, queue: str, message: dict[str, Any]) -> None:
        """Send one activity attempt to its Celery queue."""
        self.add(RUN_ACTIVITY_TASK, queue, [message])

    def commit(self) -> None:
        """Store the messages in the current transaction and send them after it commits.

        Acknowledgements this thread still holds are deleted in the same transaction.
        """
        if _acks.pending:
            acknowledged = list(_acks.pending)
            OutboxMessage.objects.acknowledge(acknowledged)
            transaction.on_commit(lambda: _forget(acknowledged))
        if not self.messages:
            return
        stored = OutboxMessage.objects.bulk_create(self.messages)
        self.messages = []
        self._step_queued.clear()
        transaction.on_commit(lambda: publish_messages(stored))


def _forget(acknowledged: list[int]) -> None:
    done = set(acknowledged)
    _acks.pending = [pk for pk in _acks.pending if pk not in done]


def request_step_now(execution_pk: int, queue: str) -> None:
    """Ask for a replay step without an outbox row, once the current transaction commits.

    For a run whose ``step_requested`` flag the same transaction set: the flag is the durable
    record, and the sweeper asks again for a run that waited ``DURABLE_STEP_REDRIVE_AFTER``
    with it set (:func:`~durable_celery.store.sweeper.request_missed_steps`), so a message the
    broker did not take costs no storage round trips here.
    """

    def publish() -> None:
        if _publisher is None:
            logger.warning("durable_celery: no publisher installed; run %s waits for the "
                           "sweeper to ask for its step", execution_pk)
            return
        try:
            _publisher(REPLAY_STEP_TASK, queue, [execution_pk])
        except Exception:  # the broker is unreachable: the sweeper asks again
            logger.warning("durable_celery: could not ask for a step of run %s on %s; the "
                           "sweeper asks again", execution_pk, queue, exc_info=True)

    transaction.on_commit(publish)


#: Failed publications in a row (a failed batch counts as one) after which a pass stops
#: sending: the broker is unreachable, and every further try would wait out
#: ``DURABLE_PUBLISH_TIMEOUT`` too.
BROKER_DOWN_AFTER = 2


def publish_messages(messages: list[OutboxMessage],
                     failed: list[tuple[OutboxMessage, Exception]] | None = None) -> int:
    """Send stored messages; the ones sent are acknowledged (deleted now, or folded into later
    work in worker tasks); unsent ones stay for the sweeper.

    A message that fails does not hold back the others: when a batch fails, its messages are
    sent one by one, and the pass stops after :data:`BROKER_DOWN_AFTER` failures in a row
    (the broker is down; the sweeper gives up on a message the broker keeps refusing, see
    :func:`durable_celery.store.sweeper.republish_outbox`).

    Args:
        failed: Receives each message that was tried and failed, with its error.

    Returns:
        How many were sent.
    """
    if _publisher is None:
        logger.warning("durable_celery: no publisher installed; %d messages wait in the outbox",
                       len(messages))
        return 0
    sent: list[int] = []
    down_after = BROKER_DOWN_AFTER
    if _batch is not None and len(messages) > 1:
        try:
            with _batch():
                for message in messages:
                    _publisher(message.task_name, message.queue, message.args)
            sent = [message.pk for message in messages]
        except Exception:  # noqa: BLE001 - a batch may have buffered them: none is known sent
            logger.debug("durable_celery: a batch of %d messages failed; sending them one by "
                         "one", len(messages), exc_info=True)
            down_after = BROKER_DOWN_AFTER - 1  # the batch's failure was the first in a row
    if not sent:
        sent = _publish_one_by_one(messages, failed, down_after)
    if sent:
        if _acks.deferred:
            _acks.pending.extend(sent)
        else:
            OutboxMessage.objects.acknowledge(sent)
    return len(sent)


def _publish_one_by_one(messages: list[OutboxMessage],
                        failed: list[tuple[OutboxMessage, Exception]] | None,
                        down_after: int) -> list[int]:
    assert _publisher is not None
    sent: list[int] = []
    errors: list[tuple[OutboxMessage, Exception]] = []
    in_a_row = 0
    for message in messages:
        try:
            _publisher(message.task_name, message.queue, message.args)
        except Exception as error:  # noqa: BLE001 - it stays in the outbox for the sweeper
            errors.append((message, error))
            in_a_row += 1
            if in_a_row >= down_after:
                break  # the broker is unreachable: the sweeper re-sends later
            continue
        in_a_row = 0
        sent.append(message.pk)
    if errors:
        last, last_error = errors[-1]
        logger.warning("durable_celery: could not publish %d of %d messages (the last: %s to "
                       "%r: %s); they stay in the outbox and the sweeper re-sends them",
                       len(messages) - len(sent), len(messages), last.task_name, last.queue,
                       last_error, exc_info=last_error)
        if failed is not None:
            failed.extend(errors)
    return sent
