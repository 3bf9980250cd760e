"""The one clock durable_celery reads: every time the store records or compares comes from here.

History rows, timers, leases, heartbeats, outbox rows and run outcomes are stamped with
:func:`now`; due timers, expired leases and stale heartbeats are found by comparing with it;
``workflow.now()`` records :func:`utc_now`. By default the clock is the system clock —
:func:`now` is exactly ``django.utils.timezone.now()`` — so production behaves as if this module
did not exist.

A test installs another clock with :func:`install_clock` (the testing kit's
``durable_celery.testing.TestClock`` runs ahead of real time by however far the test advanced
it), so a timer due in 30 days is due as soon as the test says 30 days have passed. The clock is
process-wide: a worker in another process keeps its own.

Model fields that Django stamps itself (``auto_now`` / ``auto_now_add``) are
:class:`ClockDateTimeField`, so they read the same clock as everything else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from django.conf import settings
from django.db import models
from django.utils import timezone

__all__ = ["Clock", "ClockDateTimeField", "current_clock", "install_clock", "now", "utc_now"]


class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""


_installed: Clock | None = None


def now() -> datetime:
    """The current time as Django stores it: aware UTC with ``USE_TZ`` (naive local time
    without), like ``django.utils.timezone.now()``, read from the installed clock."""
    clock = _installed
    if clock is None:
        return timezone.now()
    moment = clock.now()
    return moment if settings.USE_TZ else timezone.make_naive(moment)


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC, read from the installed clock."""
    clock = _installed
    return datetime.now(UTC) if clock is None else clock.now()


def install_clock(clock: Clock | None) -> Clock | None:
    """Make ``clock`` this process's clock (``None``: the system clock again).

    Returns:
        The clock installed before, to put back afterwards.
    """
    global _installed
    previous, _installed = _installed, clock
    return previous


def current_clock() -> Clock | None:
    """The installed clock, or ``None`` while the system clock is used."""
    return _installed


class ClockDateTimeField(models.DateTimeField):
    """A ``DateTimeField`` whose ``auto_now`` / ``auto_now_add`` stamp comes from :func:`now`.

    An ``auto_now_add`` field keeps a value the new row was given: rows a step decides carry
    the step's time, so an instant call's ``completed_at`` never precedes its ``created_at``.
    The column is an ordinary ``DateTimeField`` (migrations record it as one); only where the
    Python value comes from differs.
    """

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        if self.auto_now_add and add and getattr(model_instance, self.attname) is not None:
            return getattr(model_instance, self.attname)
        if self.auto_now or (self.auto_now_add and add):
            value = now()
            setattr(model_instance, self.attname, value)
            return value
        return super().pre_save(model_instance, add)

    def deconstruct(self) -> Any:
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.DateTimeField", args, kwargs
