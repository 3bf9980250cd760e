"""Handing outbox messages to the broker: JSON only, routed to the queue the message names.

Messages go straight to a producer from the app's pool: publishing never touches the result
backend (``send_task`` would subscribe to a Redis result channel and block while that backend is
down). A publication that cannot reach the broker within ``DURABLE_PUBLISH_TIMEOUT`` raises; the
outbox keeps the message and the sweeper sends it when the broker is back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from celery import current_app
from kombu.utils.uuid import uuid

from ..conf import durable_setting
from ..store.outbox import set_publisher
from ..task_names import EMIT_MESSAGE, RUN_ACTIVITY_TASK

__all__ = ["install_publisher", "one_producer", "publish"]


def _retry_policy() -> dict[str, Any]:
    budget = float(durable_setting("DURABLE_PUBLISH_TIMEOUT"))
    return {"max_retries": 2, "interval_start": 0, "interval_step": budget / 4,
            "interval_max": budget / 4}


def publish(task_name: str, queue: str, args: list[Any]) -> None:
    """Send one task message to ``queue`` (an emitted event goes to the events exchange, with
    ``queue`` as its topic).

    Activity attempts carry the activity's name as Celery's ``shadow`` name, so Flower and
    django-celery-results show ``activity:<name>`` rather than the generic runner. A message
    says whether its result is stored (Celery lets the message override the task's
    ``ignore_result``): replay steps store none, and activity attempts store theirs only in
    django-celery-results, where the admin links each history row to it — in any other
    backend nothing reads it, and the history is the record.

    Raises:
        Exception: The broker could not be reached (the message stays in the outbox).
    """
    if task_name == EMIT_MESSAGE:
        from .events import publish_event

        publish_event(queue, args[0])
        return
    app = current_app
    shadow = None
    if task_name == RUN_ACTIVITY_TASK and args and isinstance(args[0], dict):
        shadow = f"activity:{args[0].get('activity')}"
    # The arguments as Flower and the result backend show them: JSON text, cut where Celery
    # cuts its own repr (Celery's saferepr cost ten times the rest of building the message).
    shown = json.dumps(args, separators=(",", ":"), default=str)[:app.amqp.argsrepr_maxsize]
    message = app.amqp.create_task_message(task_id=uuid(), name=task_name, args=list(args),
                                           kwargs={}, shadow=shadow, argsrepr=shown,
                                           kwargsrepr="{}",
                                           ignore_result=not _stores_result(task_name))
    held = getattr(_held, "producer", None)
    with nullcontext(held) if held is not None else app.producer_or_acquire() as producer:
        app.amqp.send_task_message(producer, task_name, message, queue=queue,
                                   serializer="json", retry=True,
                                   retry_policy=_retry_policy())


def _stores_result(task_name: str) -> bool:
    if task_name != RUN_ACTIVITY_TASK:
        return False  # replay steps: the history is the record
    backend = str(current_app.conf.result_backend or "")
    return backend.startswith(_LINKED_BACKENDS)


#: Result backends of django-celery-results, whose rows the admin links from the history.
_LINKED_BACKENDS = ("django-db", "django-cache")

#: Messages buffered before a batch is sent: a fan-out's first members run while the step
#: still publishes the rest (one batch of a thousand kept the other processes idle meanwhile).
_BATCH_SIZE = 100


class _HeldProducer(threading.local):
    producer: Any = None


_held = _HeldProducer()


@contextmanager
def one_producer() -> Iterator[None]:
    """Publish every message sent inside through one producer from the pool (a fan-out's
    thousand messages pay for one acquisition), in a round trip per :data:`_BATCH_SIZE`
    messages where the transport can buffer them (Kombu 5.7's ``Producer.batch``: a Redis
    pipeline, sent when full and when the scope ends; if one fails, the scope raises and no
    message of it counts as sent — those already sent are sent again, which claims make
    harmless)."""
    with current_app.producer_or_acquire() as producer:
        buffered = producer.batch(max_size=_BATCH_SIZE) \
            if getattr(producer, "supports_batch_publish", False) else nullcontext()
        with buffered:
            _held.producer = producer
            try:
                yield
            finally:
                _held.producer = None



def install_publisher() -> None:
    """Make the store's outbox send through Celery (a batch through one producer)."""
    set_publisher(publish, batch=one_producer)
