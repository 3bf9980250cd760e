"""The worker side: who this process is, and the thread that keeps a worker alive and sweeping.

* ``worker_init`` (main process, before the pool forks): the worker registers itself and
  remembers the queues it consumes; pool processes inherit that and register themselves on
  their first claim (:func:`current_worker_id`).
* ``worker_ready``: the :class:`WorkerRuntime` thread starts. It heartbeats for the main process
  and its live pool processes, fires due timers and runs the recovery duties.
* ``worker_shutting_down``: no more eager work (checked by pool processes through shared memory).
* ``worker_shutdown``: the worker marks itself stopped and re-drives what it still held.

A process that claims work without being a Celery worker (a script, a test) registers as a
worker of its own and heartbeats from a small thread, so its claims are not taken for dead.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import close_old_connections, connection

from .. import clock
from ..conf import durable_setting

__all__ = [
    "WorkerRuntime",
    "configure_worker",
    "consumes",
    "current_worker_id",
    "embedded_worker_in_use",
    "in_worker",
    "shutting_down",
    "start_worker_runtime",
    "stop_worker_runtime",
    "use_embedded_worker",
]

logger = logging.getLogger(__name__)


@dataclass
class _WorkerRole:
    """What a worker's processes know about the worker (inherited by pool processes)."""

    main_id: int
    main_pid: int
    name: str
    queues: frozenset[str]
    pool: str
    stopping: Any  # multiprocessing.Value(c_bool): shared with pool processes
    controller: Any = None
    registered: dict[int, int] = field(default_factory=dict)  # pid -> worker row id


_role: _WorkerRole | None = None
_standalone: dict[int, int] = {}  # pid -> row id, for processes that are not Celery workers
_embedded: int | None = None  # the row of an embedded worker running in this process, if any
_lock = threading.Lock()
_runtime: WorkerRuntime | None = None


def _version() -> str:
    from .. import __version__

    return str(__version__)


def configure_worker(controller: Any) -> int:
    """Register a starting Celery worker (its main process) from its ``WorkController``.

    Returns:
        The worker's registry id.
    """
    from ..store.workers import register_process

    global _role
    queues = frozenset(controller.app.amqp.queues.consume_from or controller.app.amqp.queues)
    pool = getattr(controller.pool_cls, "__module__", "").rsplit(".", 1)[-1] or "prefork"
    main_id = register_process(name=str(controller.hostname), hostname=socket.gethostname(),
                               pid=os.getpid(), queues=queues, pool=pool, version=_version())
    connection.close()  # the pool forks next; children open their own connections
    _role = _WorkerRole(main_id=main_id, main_pid=os.getpid(), name=str(controller.hostname),
                        queues=queues, pool=pool,
                        stopping=multiprocessing.Value(ctypes.c_bool, False, lock=False),
                        controller=controller)
    return main_id


def in_worker() -> bool:
    """Whether this process belongs to a Celery worker (main or pool process)."""
    return _role is not None


def consumes(queue: str) -> bool:
    """Whether this process's worker consumes the Celery queue ``queue``."""
    return _role is not None and queue in _role.queues


def shutting_down() -> bool:
    """Whether this process's worker is shutting down (no eager work then)."""
    return _role is not None and bool(_role.stopping.value)


def use_embedded_worker(worker_id: int | None) -> int | None:
    """Make :func:`current_worker_id` answer ``worker_id`` (a worker row an embedded worker —
    the testing kit's — registered for itself); ``None`` undoes it.

    Returns:
        The embedded worker id set before.
    """
    global _embedded
    previous, _embedded = _embedded, worker_id
    return previous


def embedded_worker_in_use() -> bool:
    """Whether an embedded worker (the testing kit's) runs this process's messages: it serves
    every queue."""
    return _embedded is not None


def current_worker_id() -> int:
    """The registry id of this process, registering it on first use (after a fork too)."""
    from ..store.workers import register_process

    if _embedded is not None:
        return _embedded
    pid = os.getpid()
    role = _role
    if role is not None:
        if pid == role.main_pid:
            return role.main_id
        known = role.registered.get(pid)
        if known is not None:
            return known
        with _lock:
            if pid not in role.registered:
                role.registered[pid] = register_process(
                    name=role.name, hostname=socket.gethostname(), pid=pid, queues=role.queues,
                    pool=role.pool, version=_version(), parent_id=role.main_id)
            return role.registered[pid]
    with _lock:
        if pid not in _standalone:
            _standalone[pid] = register_process(
                name=f"standalone@{socket.gethostname()}", hostname=socket.gethostname(),
                pid=pid, queues=(), pool="standalone", version=_version())
            worker_id = _standalone[pid]
            _Heartbeat(lambda: _beat_standalone(worker_id), float(
                durable_setting("DURABLE_WORKER_HEARTBEAT_INTERVAL")),
                failure_level=logging.DEBUG).start()
        return _standalone[pid]


def _live_pids(role: _WorkerRole) -> list[int]:
    pids = [role.main_pid]
    pool = getattr(role.controller, "pool", None)
    processes = getattr(getattr(pool, "_pool", None), "_pool", None)
    if processes:
        pids += [p.pid for p in list(processes) if p.pid]
    return pids


class _Heartbeat(threading.Thread):
    """Heartbeats on a thread of their own: a recovery pass waiting on an unreachable broker,
    or a backlog of due timers, never delays them (other workers would take this process for
    dead and re-drive what it is running). ``beat`` writes one heartbeat."""

    def __init__(self, beat: Callable[[], None], interval: float,
                 stopping: threading.Event | None = None,
                 failure_level: int = logging.ERROR) -> None:
        super().__init__(name="durable-worker-heartbeat", daemon=True)
        self.beat = beat
        self.interval = interval
        self.stopping = stopping or threading.Event()
        #: How a failed beat is logged (a standalone process's beats fail quietly: it may
        #: outlive its database, as a test process does).
        self.failure_level = failure_level

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                close_old_connections()
                self.beat()
            except Exception:  # keep going: the next beat retries
                logger.log(self.failure_level, "durable_celery: worker heartbeat failed",
                           exc_info=True)
                connection.close()
            self.stopping.wait(self.interval)
        connection.close()


def _beat_worker(role: _WorkerRole) -> None:
    """A Celery worker's beat: its main process and the pool processes alive now."""
    from ..store.workers import beat

    listed_at: datetime = clock.now()
    beat(role.main_id, _live_pids(role), listed_at)


def _beat_standalone(worker_id: int) -> None:
    """A process claiming work outside a Celery worker; the beat also revives it if it was
    taken for dead while it was only paused."""
    from ..models import Worker

    Worker.objects.filter(pk=worker_id).update(heartbeat_at=clock.now(), stopped_at=None,
                                               recovered_at=None)


def _run_duty(name: str, duty: Callable[[], object]) -> None:
    """One duty of a runtime pass; its failure is logged and does not stop the others (a
    schedule the database refuses must not hold up timers or recovery)."""
    try:
        duty()
    except Exception:  # keep going: the next pass retries
        logger.exception("durable_celery: worker runtime duty %r failed", name)
        connection.close()


class WorkerRuntime(threading.Thread):
    """The main process's thread: due timers and recovery duties, and its heartbeat thread.

    Heartbeats every ``DURABLE_WORKER_HEARTBEAT_INTERVAL`` (:class:`_Heartbeat`); when
    ``DURABLE_SWEEPER_ENABLED``, fires due timers every ``DURABLE_SWEEP_INTERVAL`` and runs the
    recovery duties every ``DURABLE_RECOVERY_INTERVAL`` seconds. Several workers sweeping never
    claim a row twice.
    """

    def __init__(self, role: _WorkerRole | None) -> None:
        super().__init__(name="durable-worker-runtime", daemon=True)
        self.role = role
        self.stopping = threading.Event()
        self.heartbeat_interval = float(durable_setting("DURABLE_WORKER_HEARTBEAT_INTERVAL"))
        self.sweep_interval = float(durable_setting("DURABLE_SWEEP_INTERVAL"))
        self.recovery_interval = float(durable_setting("DURABLE_RECOVERY_INTERVAL"))
        self.sweeping = bool(durable_setting("DURABLE_SWEEPER_ENABLED"))

    def run(self) -> None:
        from ..store.schedules import fire_due_schedules
        from ..store.sweeper import fire_due_timers, run_recovery_duties
        from .canary import broker_lost_messages

        heartbeat = None
        if self.role is not None:
            role = self.role
            heartbeat = _Heartbeat(lambda: _beat_worker(role), self.heartbeat_interval,
                                   self.stopping)
            heartbeat.start()
        def fire_timers() -> None:
            while fire_due_timers() and not self.stopping.is_set():
                pass

        next_recovery = 0.0
        while self.sweeping and not self.stopping.is_set():
            started = time.monotonic()
            close_old_connections()
            _run_duty("fire due timers", fire_timers)
            _run_duty("fire due schedules", fire_due_schedules)
            if started >= next_recovery:  # each recovery duty guards itself
                _run_duty("run recovery duties", lambda: run_recovery_duties(
                    broker_lost_messages))
                next_recovery = time.monotonic() + self.recovery_interval
            self.stopping.wait(self.sweep_interval)
        connection.close()
        if heartbeat is not None:
            heartbeat.join()

    def stop(self) -> None:
        """Finish after the current pass (and the heartbeat after its current beat)."""
        self.stopping.set()


def start_worker_runtime() -> WorkerRuntime:
    """Start this process's runtime thread once (the worker's ``worker_ready``, or an
    embedded worker)."""
    global _runtime
    with _lock:
        if _runtime is None or not _runtime.is_alive():
            _runtime = WorkerRuntime(_role)
            _runtime.start()
        return _runtime


def stop_worker_runtime(*, release: bool = True) -> None:
    """Stop the runtime thread; with ``release``, mark the worker stopped and re-drive at once
    what it still held (a graceful shutdown gives its claims back)."""
    global _runtime
    runtime = _runtime
    if runtime is not None:
        runtime.stop()
        runtime.join(timeout=10)
        _runtime = None
    role = _role
    if release and role is not None and os.getpid() == role.main_pid:
        from ..store.sweeper import recover_dead_workers
        from ..store.workers import mark_stopped

        try:
            close_old_connections()
            mark_stopped(role.main_id)
            recover_dead_workers()
        except Exception:  # noqa: BLE001 - a live worker's sweeper recovers it instead
            logger.exception("durable_celery: could not release this worker's claims")
        finally:
            connection.close()


def begin_shutdown() -> None:
    """No more eager work in this worker's processes."""
    if _role is not None:
        _role.stopping.value = True
