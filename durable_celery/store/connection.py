"""Database work that must survive a dropped connection."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

__all__ = ["with_fresh_connection"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Delays between tries of :func:`with_fresh_connection`: about 15 seconds in all.
RETRY_DELAYS = (0.0, 0.2, 0.5, 1.0, 2.0, 4.0, 7.0)


def with_fresh_connection(work: Callable[[], T]) -> T:
    """Run ``work`` (a transaction of its own); when the connection fails, retry on a new one.

    A connection the database terminated, a restart or a network blip must not lose what a
    finished activity produced: the work is retried on a fresh connection for about 15 seconds.

    Raises:
        OperationalError, InterfaceError: The database stayed unreachable.
    """
    last: Exception | None = None
    for delay in RETRY_DELAYS:
        if delay:
            time.sleep(delay)
        try:
            return work()
        except (OperationalError, InterfaceError) as error:
            last = error
            logger.warning("durable_celery: database connection failed (%s); retrying on a new "
                           "connection", error)
            connection.close()
    assert last is not None
    raise last
