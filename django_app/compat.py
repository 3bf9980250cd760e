"""SQLite settings of Django 5.1+ for the host project on Django 4.2 and 5.0.

The host project's SQLite database is shared by several worker processes, so it runs in WAL mode
and takes the write lock when a transaction begins (``BEGIN IMMEDIATE``): two steps then wait
for each other instead of deadlocking on a lock upgrade. Django 5.1 and later do this from the
``transaction_mode`` and ``init_command`` OPTIONS (see settings.py); on older releases, which
refuse those options, :func:`install` does the same from Django's ``connection_created`` signal
and the SQLite backend's transaction start.
"""

from __future__ import annotations

from typing import Any

import django

__all__ = ["NEEDS_SHIM", "install"]

#: Whether this Django lacks the SQLite ``transaction_mode`` and ``init_command`` options.
NEEDS_SHIM = django.VERSION < (5, 1)


def _on_connection_created(sender: Any, connection: Any, **_: Any) -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")


def _begin_immediate(self: Any) -> None:
    self.cursor().execute("BEGIN IMMEDIATE")


def install() -> None:
    """On Django < 5.1: WAL mode and ``BEGIN IMMEDIATE`` for SQLite connections."""
    if not NEEDS_SHIM:
        return
    from django.db.backends.signals import connection_created
    from django.db.backends.sqlite3 import base

    connection_created.connect(_on_connection_created, dispatch_uid="django_app.compat")
    base.DatabaseWrapper._start_transaction_under_autocommit = (  # type: ignore[attr-defined]
        _begin_immediate)
