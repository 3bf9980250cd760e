"""The sweeper thread every worker runs: due timers often, recovery duties now and then."""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections, connection

from ..conf import durable_setting
from ..store.schedules import fire_due_schedules
from ..store.sweeper import (
    fire_due_timers,
    redrive_lost_activities,
    republish_outbox,
    request_missed_steps,
)

__all__ = ["Sweeper", "start_sweeper"]

logger = logging.getLogger(__name__)

#: Recovery duties (outbox, leases, missed steps) run once per this many passes.
RECOVERY_EVERY = 10

_started: Sweeper | None = None
_lock = threading.Lock()


class Sweeper(threading.Thread):
    """Fires due timers every ``DURABLE_SWEEP_INTERVAL`` seconds; re-sends and re-drives lost
    work every ``RECOVERY_EVERY`` passes. Several sweepers (one per worker) never claim the same
    row twice."""

    def __init__(self, interval: float | None = None) -> None:
        super().__init__(name="durable-sweeper", daemon=True)
        self.interval = float(interval if interval is not None
                              else durable_setting("DURABLE_SWEEP_INTERVAL"))
        self.stopping = threading.Event()

    def run(self) -> None:
        passes = 0
        while not self.stopping.is_set():
            try:
                close_old_connections()
                while fire_due_timers() and not self.stopping.is_set():
                    pass
                fire_due_schedules()
                if passes % RECOVERY_EVERY == 0:
                    republish_outbox()
                    redrive_lost_activities()
                    request_missed_steps()
            except Exception:  # keep sweeping: the next pass retries
                logger.exception("durable_celery: sweeper pass failed")
                connection.close()
            passes += 1
            self.stopping.wait(self.interval)
        connection.close()

    def stop(self) -> None:
        """Ask the thread to finish after its current pass."""
        self.stopping.set()


def start_sweeper() -> Sweeper | None:
    """Start this process's sweeper once (no-op when disabled by ``DURABLE_SWEEPER_ENABLED``)."""
    global _started
    if not durable_setting("DURABLE_SWEEPER_ENABLED"):
        return None
    with _lock:
        if _started is None or not _started.is_alive():
            _started = Sweeper()
            _started.start()
        return _started
