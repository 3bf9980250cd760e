"""Events that workflows ``emit``: a Kombu topic exchange on the project's broker.

Every event is published to the topic exchange :data:`EVENTS_EXCHANGE` (``durable.events``) with
the topic as routing key. A :class:`Subscription` is a private, auto-deleted queue bound to that
exchange once per topic pattern (AMQP topic syntax: ``order.*`` matches one word, ``order.#``
any number), so every subscriber gets its own copy of each matching event published while it is
subscribed; nothing is kept for subscribers that come later. Works on every Kombu transport with
topic exchanges: RabbitMQ, Redis, and the ``filesystem://`` transport across processes.
"""

from __future__ import annotations

import queue as queue_module
import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from celery import current_app
from kombu import Exchange, Queue, binding

__all__ = [
    "EVENTS_EXCHANGE",
    "Subscription",
    "SubscriptionTimeout",
    "events_exchange",
    "publish_event",
]

#: Name of the topic exchange events travel on.
EVENTS_EXCHANGE = "durable.events"


def events_exchange() -> Exchange:
    """The topic exchange events travel on (declared by publishers and subscribers alike)."""
    return Exchange(EVENTS_EXCHANGE, type="topic", durable=True, auto_delete=False)


def publish_event(topic: str, body: dict[str, Any]) -> None:
    """Publish one event (an outbox row's body) to the events exchange, JSON-encoded.

    Raises:
        Exception: The broker refused or could not be reached after retries; the outbox keeps
            the row and the sweeper re-sends it.
    """
    exchange = events_exchange()
    with current_app.producer_or_acquire() as producer:
        producer.publish(body, exchange=exchange, routing_key=topic, serializer="json",
                         declare=[exchange], retry=True,
                         retry_policy={"max_retries": 3, "interval_start": 0.1,
                                       "interval_step": 0.2})


class SubscriptionTimeout(TimeoutError, queue_module.Empty):
    """No event arrived within the timeout (both a ``TimeoutError`` and a ``queue.Empty``)."""


class Subscription:
    """Receives the events of ``topics`` published from now on, until :meth:`close`.

    Use as a context manager, or iterate to wait for events forever::

        with client.subscribe("order.completed") as sub:
            topic, payload = sub.get(timeout=10)

    Args:
        topics: Topic names or patterns (``*`` one word, ``#`` zero or more words).
        app: Celery app whose broker to use (default: the current app).
    """

    def __init__(self, topics: tuple[str, ...] | list[str], app: Any = None) -> None:
        if not topics or not all(isinstance(t, str) and t for t in topics):
            raise TypeError(f"subscribe() needs one or more non-empty topic strings, got "
                            f"{topics!r}")
        self.topics = tuple(topics)
        self._app = app or current_app
        exchange = events_exchange()
        self._queue = Queue(f"durable.events.sub.{uuid.uuid4().hex}", exchange=exchange,
                            bindings=[binding(exchange, routing_key=t) for t in self.topics],
                            durable=False, auto_delete=True)
        self._connection = self._app.connection_for_read()
        try:
            # Declares the queue and its bindings now: events published after this returns
            # reach the subscriber.
            self._simple = self._connection.SimpleQueue(
                self._queue, accept=["json"])  # type: ignore[arg-type]
        except Exception:
            self._connection.release()
            raise
        self._closed = False

    def get(self, timeout: float | None = None) -> tuple[str, Any]:
        """Wait for the next event; return ``(topic, payload)``.

        Raises:
            SubscriptionTimeout: ``timeout`` seconds passed without an event (a ``TimeoutError``
                and a ``queue.Empty``).
        """
        event = self.get_event(timeout)
        return event["topic"], event["payload"]

    def get_event(self, timeout: float | None = None) -> dict[str, Any]:
        """Like :meth:`get`, but the whole event: ``topic, payload, workflow_id,
        workflow_name, namespace, dimension, seq``."""
        if self._closed:
            raise RuntimeError("this subscription is closed")
        try:
            message = self._simple.get(block=True, timeout=timeout)
        except self._simple.Empty:
            raise SubscriptionTimeout(f"no event on {', '.join(self.topics)} within "
                                      f"{timeout}s") from None
        message.ack()
        body = message.payload
        return dict(body) if isinstance(body, dict) else {"topic": None, "payload": body}

    def close(self) -> None:
        """Stop receiving: delete the private queue and release the connection."""
        if self._closed:
            return
        self._closed = True
        channel = self._simple.channel
        try:
            self._simple.close()  # cancels the consumer; AMQP then drops the auto-delete queue
            if self._connection.transport.driver_type != "amqp":
                # Virtual transports (Redis, filesystem) keep queues and bindings until deleted.
                self._queue(channel).delete()
        except Exception:  # noqa: BLE001 - closing is best effort; the queue is private
            pass
        finally:
            self._connection.release()

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        while True:
            yield self.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
