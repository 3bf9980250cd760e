"""End-to-end fixtures: one shared worker process per session, plus workers a test may kill."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import BACKEND
from tests.support.workers import WorkerProcess

#: Queues the shared worker consumes. Tests that kill workers use their own queues.
SHARED_QUEUES = ["durable", "durable-activity", "orders", "orders-activity",
                 "payments-activity"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def shared_worker(django_db_setup: None) -> Iterator[WorkerProcess]:
    """A prefork worker (2 processes) consuming the shared test queues for the whole session."""
    worker = WorkerProcess(SHARED_QUEUES, "shared", BACKEND.workdir, concurrency=2).start()
    yield worker
    worker.stop()


@pytest.fixture
def client(shared_worker: WorkerProcess, db_access: None) -> object:
    """A ``DurableClient`` whose workflows the shared worker runs."""
    from durable_celery import DurableClient

    return DurableClient()


@pytest.fixture
def uid() -> str:
    """A fresh id fragment for this test's workflows, signals and counters."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def start_worker(django_db_setup: None) -> Iterator[Callable[..., WorkerProcess]]:
    """Start extra workers (e.g. to kill them); all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(queues: list[str], concurrency: int = 1) -> WorkerProcess:
        worker = WorkerProcess(queues, f"w{len(started)}-{uuid.uuid4().hex[:6]}",
                               BACKEND.workdir, concurrency=concurrency).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
