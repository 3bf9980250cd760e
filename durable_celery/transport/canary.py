"""Noticing that the broker lost its messages (a Redis without persistence that restarted
empty, a purge, a new RabbitMQ node): one persistent message waits in a queue nobody consumes.

When it is gone, every message the broker held is gone too, and the sweeper sends again what the
database says must be queued — without waiting for any lease to run out.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from celery import current_app
from kombu import Exchange, Queue

__all__ = ["CANARY_QUEUE", "broker_lost_messages"]

#: The queue the canary message waits in (never consumed).
CANARY_QUEUE = "durable.canary"


def _queue() -> Queue:
    return Queue(CANARY_QUEUE, Exchange(CANARY_QUEUE, type="direct", durable=True),
                 routing_key=CANARY_QUEUE, durable=True, auto_delete=False)


def broker_lost_messages() -> bool:
    """Whether the canary message is missing (then put a new one in place).

    Returns ``True`` the first time a broker is used too (nothing is lost then, and nothing is
    queued to send again). The sweeper says what it sent again
    (:func:`durable_celery.store.sweeper.recover_lost_messages`).

    Raises:
        Exception: The broker could not be reached (the sweeper tries again next pass).
    """
    queue = _queue()
    with current_app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        queue(channel).declare()  # exchange, queue and binding (idempotent)
        # Redis keeps no empty queue, so only a non-passive declare answers for one: its
        # message count is what matters.
        _, waiting, _ = channel.queue_declare(queue=CANARY_QUEUE, durable=True,
                                              auto_delete=False)
        if waiting:
            return False
        with conn.Producer(serializer="json") as producer:
            producer.publish({"canary": socket.gethostname(), "at": time.time()},
                             exchange=queue.exchange, routing_key=CANARY_QUEUE,
                             declare=[queue], delivery_mode=2, retry=True,
                             retry_policy={"max_retries": 2, "interval_start": 0,
                                           "interval_step": 0.5, "interval_max": 0.5})
    return True
