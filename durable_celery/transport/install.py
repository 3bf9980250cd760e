"""``install()``: connect durable_celery to Celery, once, from ``AppConfig.ready``."""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from django.db import close_old_connections, connection

from ..store.outbox import (
    defer_acknowledgements,
    flush_parked_acknowledgements,
    park_acknowledgements,
)
from ..task_names import REPLAY_STEP_TASK, RUN_ACTIVITY_TASK
from .filesystem import install_filesystem_transport
from .publish import install_publisher
from .worker import (
    begin_shutdown,
    configure_worker,
    start_worker_runtime,
    stop_worker_runtime,
)

__all__ = ["install"]

logger = logging.getLogger(__name__)

_DURABLE_TASKS = frozenset({REPLAY_STEP_TASK, RUN_ACTIVITY_TASK})
_installed = False


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    configure_worker(sender)


def _on_worker_ready(**_: Any) -> None:
    start_worker_runtime()


def _on_worker_shutting_down(**_: Any) -> None:
    begin_shutdown()


def _on_worker_shutdown(**_: Any) -> None:
    stop_worker_runtime()


def _on_task_prerun(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "name", None) in _DURABLE_TASKS:
        # Django's request lifecycle for the task: a connection kept from an earlier task
        # (CONN_MAX_AGE, CELERY_DB_REUSE_MAX) is dropped if it failed or is too old. It is not
        # pinged (CONN_HEALTH_CHECKS) before use: each of these tasks starts with its claim,
        # which retries on a new connection when the database dropped this one, so a ping
        # would only cost a round trip per task.
        close_old_connections()
        connection.health_check_done = True  # type: ignore[attr-defined]
        defer_acknowledgements(True)


def _on_task_postrun(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "name", None) in _DURABLE_TASKS:
        defer_acknowledgements(False)
        park_acknowledgements()


def _on_worker_process_shutdown(**_: Any) -> None:
    try:
        flush_parked_acknowledgements()
    except Exception:  # noqa: BLE001 - the sweeper re-sends what stays; nothing is lost
        logger.debug("durable_celery: acknowledgements left at process exit", exc_info=True)


def install() -> None:
    """Install the outbox publisher and the ``filesystem://`` transport, and connect the worker
    signals: registry and runtime thread, shutdown, and acknowledgement folding."""
    global _installed
    install_publisher()
    install_filesystem_transport()
    if _installed:
        return
    _installed = True
    signals.worker_init.connect(_on_worker_init, weak=False)
    signals.worker_ready.connect(_on_worker_ready, weak=False)
    signals.worker_shutting_down.connect(_on_worker_shutting_down, weak=False)
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)
    signals.task_prerun.connect(_on_task_prerun, weak=False)
    signals.task_postrun.connect(_on_task_postrun, weak=False)
    signals.worker_process_shutdown.connect(_on_worker_process_shutdown, weak=False)
