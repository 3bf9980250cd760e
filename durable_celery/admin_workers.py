"""The admin's "workers and queues" page: live workers, what they hold, and every queue's backlog.

Read from the worker registry (:class:`~durable_celery.models.Worker`, heartbeats every
``DURABLE_WORKER_HEARTBEAT_INTERVAL`` seconds) and the stored calls; a fixed number of queries.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from .admin_detail import execution_url
from .admin_format import format_seconds
from .models import Worker
from .store.inspect import queue_overview, worker_overview
from .store.workers import live_workers, stale_before

__all__ = ["RECENTLY_GONE", "workers_context"]

#: How far back the page lists workers that stopped or went silent.
RECENTLY_GONE = timedelta(hours=1)


def _gone(now: datetime, live: list[Worker]) -> list[dict[str, Any]]:
    rows = (Worker.objects.filter(parent__isnull=True, heartbeat_at__gte=now - RECENTLY_GONE)
            .filter(Q(stopped_at__isnull=False) | Q(heartbeat_at__lt=stale_before(now)))
            .exclude(pk__in=[w.pk for w in live]).order_by("-heartbeat_at")[:20])
    return [{"worker": w, "why": "stopped" if w.stopped_at else "no heartbeat",
             "since": format_seconds((now - (w.stopped_at or w.heartbeat_at)).total_seconds())}
            for w in rows]


def workers_context(now: datetime | None = None) -> dict[str, Any]:
    """What the page renders: ``workers``, ``queues``, ``gone`` and counts."""
    now = now or timezone.now()
    live = list(live_workers(now))
    workers = worker_overview(now, live)
    for state in workers:
        for held in state.attempts:
            held["url"] = execution_url(held["execution_id"])
        for held in state.steps:
            held["url"] = execution_url(held["pk"])
    queues = queue_overview(now, live)
    return {
        "now": now, "workers": workers, "queues": queues, "gone": _gone(now, live),
        "unconsumed": [q for q in queues if not q.consumed and q.waiting],
    }
