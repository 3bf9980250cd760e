"""Database work that must survive a dropped connection."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

__all__ = ["connection_failed", "with_fresh_connection"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: SQLSTATE classes that say the connection or the server failed, not the work: 08 connection
#: exception, 53 insufficient resources, 57 operator intervention (a terminated backend, a
#: shutdown), 58 system error. The same work may succeed on a new connection.
_CONNECTION_CLASSES = ("08", "53", "57", "58")

#: Delays between tries of :func:`with_fresh_connection`: about 15 seconds in all.
RETRY_DELAYS = (0.0, 0.2, 0.5, 1.0, 2.0, 4.0, 7.0)


def connection_failed(error: BaseException) -> bool:
    """Whether ``error`` says the connection failed (worth a new connection) rather than that
    the database refused the work: an ``InterfaceError``, or an ``OperationalError`` with no
    SQLSTATE (SQLite, a socket that closed) or one of :data:`_CONNECTION_CLASSES`. PostgreSQL's
    "program limit exceeded" (54, e.g. an index row too large) is an ``OperationalError`` too,
    and fails the same way on every connection."""
    if isinstance(error, InterfaceError):
        return True
    if not isinstance(error, OperationalError):
        return False
    state = getattr(error.__cause__, "sqlstate", None)
    return not state or str(state)[:2] in _CONNECTION_CLASSES


def with_fresh_connection(work: Callable[[], T]) -> T:
    """Run ``work`` (a transaction of its own); when the connection fails, retry on a new one.

    A connection the database terminated, a restart or a network blip must not lose what a
    finished activity produced: the work is retried on a fresh connection for about 15 seconds.

    Raises:
        OperationalError, InterfaceError: The database stayed unreachable, or refused the work
            (:func:`connection_failed` is false: raised at once).
    """
    last: Exception | None = None
    for delay in RETRY_DELAYS:
        if delay:
            time.sleep(delay)
        try:
            return work()
        except (OperationalError, InterfaceError) as error:
            if not connection_failed(error):
                raise  # the database refused the work itself: a new connection changes nothing
            last = error
            logger.warning("durable_celery: database connection failed (%s); retrying on a new "
                           "connection", error)
            connection.close()
    assert last is not None
    raise last
