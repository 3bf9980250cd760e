"""Handing outbox messages to Celery: JSON only, routed to the queue the message names."""

from __future__ import annotations

from typing import Any

from celery import current_app

from ..store.outbox import set_publisher

__all__ = ["install_publisher", "publish"]


def publish(task_name: str, queue: str, args: list[Any]) -> None:
    """Send one task message to ``queue`` with the current Celery app.

    An emitted event (task name ``durable_celery.emit``) goes to the events exchange instead,
    with ``queue`` as its topic.
    """
    if task_name == "durable_celery.emit":
        from .events import publish_event

        publish_event(queue, args[0])
        return
    current_app.send_task(task_name, args=args, queue=queue, routing_key=queue,
                          serializer="json")


def install_publisher() -> None:
    """Make the store's outbox send through Celery."""
    set_publisher(publish)
