"""Session setup shared by every test: the backend's database, migrated once, open to all tests.

The backend (``DURABLE_TEST_BACKEND``) is chosen before Django reads its settings. Tests never
run inside a rolled-back transaction: worker processes must see what the test wrote, so every
test uses ids of its own instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.support.backends import configure_environment, service_problem
from tests.support.workers import WorkerProcess

BACKEND = configure_environment()

#: Queues the shared worker consumes. Tests that kill workers use their own queues.
SHARED_QUEUES = ["durable", "durable-activity", "orders", "orders-activity",
                 "payments-activity"]


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _create_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker: pytest.FixtureRequest) -> Iterator[None]:
    """Create this session's database, migrate it, and drop it at the end."""
    problem = service_problem(BACKEND.name)
    if problem:
        if _ci():
            pytest.fail(f"CI=true and {problem}", pytrace=False)
        pytest.skip(problem)
    from django.core.management import call_command
    from django.db import connections

    if BACKEND.pg_database:
        _create_postgres_database(BACKEND.pg_database)
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        call_command("migrate", verbosity=0)
    yield
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        connections.close_all()
    if BACKEND.pg_database:
        _drop_postgres_database(BACKEND.pg_database)


@pytest.fixture
def db_access(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[None]:
    """Open database access for a test without wrapping it in a transaction."""
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        yield


@pytest.fixture(scope="session")
def shared_worker(django_db_setup: None) -> Iterator[WorkerProcess]:
    """A prefork worker (2 processes) consuming the shared test queues for the whole session."""
    worker = WorkerProcess(SHARED_QUEUES, "shared", BACKEND.workdir, concurrency=2).start()
    yield worker
    worker.stop()


@pytest.fixture
def uid() -> str:
    """A fresh id fragment for this test's workflows, signals and counters."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def start_worker(django_db_setup: None) -> Iterator[Callable[..., WorkerProcess]]:
    """Start extra workers (e.g. to kill them); all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(queues: list[str], concurrency: int = 1, env: dict[str, str] | None = None,
              pool: str = "prefork") -> WorkerProcess:
        worker = WorkerProcess(queues, f"w{len(started)}-{uuid.uuid4().hex[:6]}",
                               BACKEND.workdir, concurrency=concurrency, env=env,
                               pool=pool).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
