"""The worker registry: which processes are alive, what they consume, what they hold.

Every process that claims work (a Celery worker's main process, each of its pool processes, an
embedded worker) has a :class:`~durable_celery.models.Worker` row. The main process heartbeats
for itself and its live pool processes, and marks the pool processes it no longer has as
stopped; a row whose heartbeat is older than ``DURABLE_WORKER_STALE_AFTER`` or that is stopped
is dead, and the sweeper of any live worker re-drives what it held.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet

from .. import clock
from ..conf import durable_setting
from ..models import HistoryEvent, HistoryStatus, Worker, WorkflowExecution

__all__ = [
    "beat",
    "dead_worker_ids",
    "is_alive",
    "live_workers",
    "mark_recovered",
    "mark_stopped",
    "prune_workers",
    "queue_consumers",
    "register_process",
    "stale_before",
    "unrecovered_dead_ids",
]

logger = logging.getLogger(__name__)


def stale_before(now: datetime) -> datetime:
    """Heartbeats older than this belong to dead processes."""
    return now - timedelta(seconds=float(durable_setting("DURABLE_WORKER_STALE_AFTER")))


def register_process(*, name: str, hostname: str, pid: int, queues: Iterable[str], pool: str,
                     version: str, parent_id: int | None = None) -> int:
    """Add this process to the registry and return its row id."""
    return Worker.objects.create(
        name=name[:255], hostname=hostname[:255], pid=pid, queues=sorted(set(queues)),
        pool=pool[:32], version=version[:32], parent_id=parent_id,
        heartbeat_at=clock.now()).pk


def beat(main_id: int, live_pids: Iterable[int], listed_at: datetime) -> None:
    """Heartbeat of a worker: its main process and the pool processes listed alive.

    Pool processes of this worker that were registered before ``listed_at`` and are not among
    ``live_pids`` have exited: they are marked stopped at once, so what they held is re-driven
    without waiting for their heartbeat to go stale.

    A worker that was declared dead while it was only paused (its heartbeat went stale during a
    database outage, a stopped VM, a long GC pause) and beats again is alive again
    (:func:`_revive`); what it held was re-driven meanwhile, and its own late results for that
    work are refused like any other stale attempt's.
    """
    now = clock.now()
    pids = list(live_pids)
    if not Worker.objects.filter(pk=main_id, stopped_at__isnull=True).update(
            heartbeat_at=now, recovered_at=None):
        _revive(main_id, pids, now)
    Worker.objects.filter(parent_id=main_id, pid__in=pids, stopped_at__isnull=True).update(
        heartbeat_at=now, recovered_at=None)
    Worker.objects.filter(parent_id=main_id, stopped_at__isnull=True,
                          started_at__lt=listed_at).exclude(pid__in=pids).update(stopped_at=now)


def _revive(main_id: int, pids: list[int], now: datetime) -> None:
    """The main process ``main_id`` beats although its row says stopped: clear the mark on it
    and on the newest row of each of its live pool processes (an older row with a reused pid
    belongs to a process that exited, and stays stopped)."""
    newest: dict[int, tuple[datetime, int]] = {}
    for pk, pid, started_at in Worker.objects.filter(parent_id=main_id, pid__in=pids) \
            .values_list("pk", "pid", "started_at"):
        if pid not in newest or newest[pid] < (started_at, pk):
            newest[pid] = (started_at, pk)
    revived = Worker.objects.filter(Q(pk=main_id) | Q(pk__in=[pk for _, pk in newest.values()])) \
        .update(stopped_at=None, heartbeat_at=now, recovered_at=None)
    who = f"{socket.gethostname()} pid {os.getpid()} (registry row {main_id})"
    if revived:
        logger.warning("durable_celery: worker %s was taken for dead (its heartbeat went stale) "
                       "and is alive again; the work it held was re-driven meanwhile", who)
    else:
        logger.error("durable_celery: worker %s beats but its registry row is gone (forgotten "
                     "after a day without a heartbeat); restart this worker", who)


def mark_stopped(main_id: int) -> None:
    """A worker shut down: it and its pool processes hold nothing any more."""
    now = clock.now()
    Worker.objects.filter(Q(pk=main_id) | Q(parent_id=main_id),
                          stopped_at__isnull=True).update(stopped_at=now)


def dead_worker_ids(now: datetime | None = None) -> QuerySet[Worker, int]:
    """Ids of processes that are stopped or whose heartbeat is stale (a subquery)."""
    now = now or clock.now()
    return Worker.objects.filter(
        Q(stopped_at__isnull=False) | Q(heartbeat_at__lt=stale_before(now))
    ).values_list("pk", flat=True)


def unrecovered_dead_ids(now: datetime | None = None, limit: int = 100) -> list[int]:
    """Ids of dead processes whose holdings no live worker has taken back yet (see
    :func:`mark_recovered`): usually none, so that the sweeper looks for a dead process's
    claims once, not at every pass."""
    return list(dead_worker_ids(now).filter(recovered_at__isnull=True)[:limit])


def mark_recovered(worker_ids: list[int], now: datetime) -> None:
    """What these dead processes held has been taken back."""
    Worker.objects.filter(pk__in=worker_ids).update(recovered_at=now)


def is_alive(worker_id: int | None, now: datetime | None = None) -> bool:
    """Whether the process ``worker_id`` is registered, not stopped and heartbeating."""
    if worker_id is None:
        return False
    now = now or clock.now()
    return Worker.objects.filter(pk=worker_id, stopped_at__isnull=True,
                                 heartbeat_at__gte=stale_before(now)).exists()


def live_workers(now: datetime | None = None) -> QuerySet[Worker]:
    """Main processes of the live workers, newest first."""
    now = now or clock.now()
    return Worker.objects.filter(parent__isnull=True, stopped_at__isnull=True,
                                 heartbeat_at__gte=stale_before(now)).order_by("-started_at")


def queue_consumers(queue: str, now: datetime | None = None) -> list[Worker]:
    """Live workers that consume the Celery queue ``queue``."""
    return [worker for worker in live_workers(now) if queue in (worker.queues or [])]


def prune_workers(now: datetime | None = None, keep: float = 86400.0) -> int:
    """Forget processes dead for longer than ``keep`` seconds that hold nothing."""
    now = now or clock.now()
    before = now - timedelta(seconds=keep)
    old = set(Worker.objects.filter(Q(stopped_at__lt=before) | Q(heartbeat_at__lt=before),
                                    processes__isnull=True).values_list("pk", flat=True)[:1000])
    if not old:
        return 0
    old -= set(HistoryEvent.objects.filter(status=HistoryStatus.SCHEDULED, worker_id__in=old)
               .order_by().values_list("worker_id", flat=True))
    old -= set(WorkflowExecution.objects.active().filter(step_claimed_by_id__in=old)
               .order_by().values_list("step_claimed_by_id", flat=True))
    deleted, _ = Worker.objects.filter(pk__in=old).delete()
    return deleted
