"""End-to-end fixtures: every test here is marked ``e2e``; ``client`` is a ``DurableClient``
(the shared worker, ``uid`` and ``start_worker`` live in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest

from tests.support.workers import WorkerProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.fixture
def client(shared_worker: WorkerProcess, db_access: None) -> object:
    """A ``DurableClient`` whose workflows the shared worker runs."""
    from durable_celery import DurableClient

    return DurableClient()
