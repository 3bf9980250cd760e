"""Which real services a test session runs against, chosen by ``DURABLE_TEST_BACKEND``.

* ``sqlite`` (default): SQLite file + Kombu ``filesystem://`` broker — the embedded setup,
  no server.
* ``postgres``: PostgreSQL 127.0.0.1:5432 + Redis 127.0.0.1:6379.
* ``rabbitmq``: PostgreSQL + RabbitMQ 127.0.0.1:5672 (transport tests).

:func:`configure_environment` must run before Django reads its settings; the root conftest calls
it at import time. Each session gets its own database and broker namespace.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass

__all__ = ["Backend", "configure_environment", "current_backend", "service_problem"]

SERVICES = {
    "postgres": ("127.0.0.1", 5432),
    "redis": ("127.0.0.1", 6379),
    "rabbitmq": ("127.0.0.1", 5672),
}
NEEDS = {"sqlite": (), "postgres": ("postgres", "redis"), "rabbitmq": ("postgres", "rabbitmq")}


@dataclass(frozen=True)
class Backend:
    """The backend of this session and the environment workers get."""

    name: str
    database_url: str
    broker_url: str
    workdir: str
    pg_database: str | None = None


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def service_problem(name: str) -> str | None:
    """Why the services of backend ``name`` cannot be used, or ``None`` when they can."""
    missing = [s for s in NEEDS[name] if not _reachable(*SERVICES[s])]
    if missing:
        return (f"backend {name!r} needs {', '.join(missing)} at "
                f"{', '.join('{}:{}'.format(*SERVICES[s]) for s in missing)}, which did not answer")
    return None


_backend: Backend | None = None


def configure_environment() -> Backend:
    """Choose this session's database and broker and export them for Django and the workers."""
    global _backend
    if _backend is not None:
        return _backend
    name = os.environ.get("DURABLE_TEST_BACKEND", "sqlite")
    if name not in NEEDS:
        raise SystemExit(f"DURABLE_TEST_BACKEND must be one of {sorted(NEEDS)}, got {name!r}")
    workdir = tempfile.mkdtemp(prefix=f"durable-{name}-")
    pg_database = None
    if name == "sqlite":
        database_url = f"sqlite:///{workdir}/db.sqlite3"
        broker_url = "filesystem://"
        os.environ["DURABLE_BROKER_DIR"] = os.path.join(workdir, "broker")
        os.makedirs(os.path.join(workdir, "broker", "control"), exist_ok=True)
    else:
        pg_database = f"durable_test_{os.getpid()}"
        database_url = f"postgres://postgres@127.0.0.1:5432/{pg_database}"
        broker_url = (f"redis://127.0.0.1:6379/{1 + os.getpid() % 14}" if name == "postgres"
                      else "amqp://guest:guest@127.0.0.1:5672//")
    os.environ["DATABASE_URL"] = database_url
    os.environ["CELERY_BROKER_URL"] = broker_url
    os.environ["DURABLE_IMPORTS"] = ("tests.e2e.workflows,tests.e2e.composition_workflows,"
                                     "tests.e2e.data_workflows")
    os.environ["DURABLE_TEST_COUNTERS"] = os.path.join(workdir, "counters")
    os.makedirs(os.environ["DURABLE_TEST_COUNTERS"], exist_ok=True)
    # Recovery paths run quickly in tests; production defaults are in durable_celery/conf.py.
    os.environ.setdefault("DURABLE_SWEEP_INTERVAL", "0.2")
    os.environ.setdefault("DURABLE_OUTBOX_REPUBLISH_AFTER", "3")
    os.environ.setdefault("DURABLE_STEP_REDRIVE_AFTER", "3")
    os.environ.setdefault("DURABLE_ACTIVITY_LEASE_GRACE", "1")
    os.environ.setdefault("DURABLE_RESULT_POLL_INTERVAL", "0.02")
    _backend = Backend(name, database_url, broker_url, workdir, pg_database)
    return _backend


def current_backend() -> Backend:
    """The backend chosen by :func:`configure_environment`."""
    return configure_environment()
