"""``OutcomeGuard``: a finished activity's result never waits long in memory.

On the sequential path an activity's result is recorded in the same transaction as the decision
the workflow takes on it, which saves a commit per step. The decision is usually a matter of
microseconds, but workflow code between two calls may take longer. The guard bounds the time a
result is only in memory: when the decision has not been recorded ``DURABLE_OUTCOME_GUARD``
seconds after the activity returned, the guard's thread records the result on its own (on its own
connection), so a crash during a long step cannot lose it; the decision is then recorded without
settling it again.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection

from ..conf import durable_setting

__all__ = ["GuardedOutcome", "OutcomeGuard", "outcome_guard"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class GuardedOutcome:
    """One result waiting for its step; ``recorded`` turns true if the guard recorded it."""

    record: Callable[[], bool]
    deadline: float
    recorded: bool = False
    taken_back: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_back(self) -> bool:
        """The step is about to record the result itself: stop the guard from doing it.

        Returns:
            ``True`` if the step records it; ``False`` if the guard already recorded it.
        """
        with self.lock:
            self.taken_back = True
            return not self.recorded


class OutcomeGuard(threading.Thread):
    """The thread recording results whose step takes longer than the guard's delay.

    It wakes at most twice per delay while results wait, and sleeps while none does; a result
    recorded in the meantime does not wake it (only the first one after it slept does).
    """

    def __init__(self) -> None:
        super().__init__(name="durable-outcome-guard", daemon=True)
        self._waiting: dict[int, GuardedOutcome] = {}
        self._order = itertools.count()
        self._wakeup = threading.Condition()
        #: Waiting for a first result (not ticking): only then does a new result wake it.
        self._sleeping = False

    def watch(self, record: Callable[[], bool]) -> GuardedOutcome:
        """Record the result with ``record`` unless the step takes it back within the delay."""
        delay = float(durable_setting("DURABLE_OUTCOME_GUARD"))
        guarded = GuardedOutcome(record, time.monotonic() + delay)
        with self._wakeup:
            self._waiting[next(self._order)] = guarded
            if self._sleeping:
                self._wakeup.notify()
        return guarded

    def run(self) -> None:
        delay = float(durable_setting("DURABLE_OUTCOME_GUARD"))
        while True:
            with self._wakeup:
                while not self._waiting:
                    self._sleeping = True
                    self._wakeup.wait()
                self._sleeping = False
                self._wakeup.wait(delay / 2)  # a tick: results that come meanwhile wake nobody
                now = time.monotonic()
                due = [key for key, g in self._waiting.items()
                       if g.taken_back or g.deadline <= now]
                expired = [self._waiting.pop(key) for key in due]
            for guarded in expired:
                self._guard(guarded)

    @staticmethod
    def _guard(guarded: GuardedOutcome) -> None:
        with guarded.lock:
            if guarded.taken_back:
                return
            try:
                guarded.recorded = guarded.record()
            except Exception:  # noqa: BLE001 - the step records it (or recovery re-drives it)
                logger.exception("durable_celery: could not record an activity result ahead "
                                 "of its step")
                connection.close()
            guarded.taken_back = True  # settled or not, the guard is done with it


_guard: OutcomeGuard | None = None
_guard_lock = threading.Lock()


def outcome_guard() -> OutcomeGuard:
    """This process's guard thread (started on first use, after any fork)."""
    global _guard
    with _guard_lock:
        if _guard is None or not _guard.is_alive():
            _guard = OutcomeGuard()
            _guard.start()
        return _guard
