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


def _claim_redis_database() -> int:
    """A Redis database no other live test session uses (sessions running side by side would
    otherwise consume each other's messages); emptied, and released when this process exits."""
    import atexit

    import redis

    token = f"{socket.gethostname()}:{os.getpid()}"
    for number in range(1, 16):
        try:
            db = redis.Redis(host="127.0.0.1", port=6379, db=number, socket_timeout=2)
            if db.set("durable-test-session", token, nx=True, ex=3600):
                db.flushdb()
                db.set("durable-test-session", token, ex=3600)
                atexit.register(lambda db=db: db.flushdb())
                return number
        except redis.RedisError:
            break  # no Redis: the session's service check reports it
    return 1 + os.getpid() % 14


def _claim_rabbitmq_vhost() -> str:
    """A RabbitMQ virtual host of this session's own, deleted when this process exits.

    Falls back to the default vhost when ``rabbitmqctl`` is not available.
    """
    import atexit
    import subprocess

    vhost = f"durable-test-{os.getpid()}"
    if not _reachable(*SERVICES["rabbitmq"]):
        return ""
    try:
        subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True,
                       timeout=60)
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*",
                        ".*"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return ""
    atexit.register(lambda: subprocess.run(["rabbitmqctl", "delete_vhost", vhost],
                                           capture_output=True, timeout=60))
    return vhost


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
        broker_url = (f"redis://127.0.0.1:6379/{_claim_redis_database()}" if name == "postgres"
                      else f"amqp://guest:guest@127.0.0.1:5672/{_claim_rabbitmq_vhost()}")
    os.environ["DATABASE_URL"] = database_url
    os.environ["CELERY_BROKER_URL"] = broker_url
    os.environ["DURABLE_IMPORTS"] = ("tests.e2e.workflows,tests.e2e.composition_workflows,"
                                     "tests.e2e.data_workflows,tests.e2e.port_workflows,"
                                     "tests.e2e.schedule_workflows,"
                                     "tests.e2e.liveness_workflows,"
                                     "tests.e2e.lifecycle_workflows,tests.admin.ops_workflows")
    os.environ["DURABLE_TEST_COUNTERS"] = os.path.join(workdir, "counters")
    os.makedirs(os.environ["DURABLE_TEST_COUNTERS"], exist_ok=True)
    # Recovery paths run quickly in tests; production defaults are in durable_celery/conf.py.
    os.environ.setdefault("DURABLE_SWEEP_INTERVAL", "0.2")
    os.environ.setdefault("DURABLE_OUTBOX_REPUBLISH_AFTER", "3")
    os.environ.setdefault("DURABLE_STEP_REDRIVE_AFTER", "3")
    os.environ.setdefault("DURABLE_ACTIVITY_LEASE_GRACE", "1")
    os.environ.setdefault("DURABLE_RESULT_POLL_INTERVAL", "0.02")
    os.environ.setdefault("DURABLE_WORKER_HEARTBEAT_INTERVAL", "0.5")
    os.environ.setdefault("DURABLE_WORKER_STALE_AFTER", "3")
    os.environ.setdefault("DURABLE_RECOVERY_INTERVAL", "1")
    _backend = Backend(name, database_url, broker_url, workdir, pg_database)
    return _backend


def current_backend() -> Backend:
    """The backend chosen by :func:`configure_environment`."""
    return configure_environment()
