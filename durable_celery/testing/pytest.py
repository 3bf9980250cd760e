"""pytest fixtures of the testing kit (needs pytest-django).

Enable them in your project's top-level ``conftest.py``::

    pytest_plugins = ["durable_celery.testing.pytest"]

Fixtures:

* ``durable_env`` — an open :class:`~durable_celery.testing.WorkflowEnvironment`: workflows run
  in the test's process against the test database, with time skipping. Options come from the
  ``durable_env`` marker: ``@pytest.mark.durable_env(skip_time=False, start_time=...)``.
* ``durable_database`` — the database access ``durable_env`` uses: pytest-django's ``db``
  (the test runs in a transaction that is rolled back; ``@pytest.mark.django_db(transaction=True)``
  makes it commit). Override this fixture to use another.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .environment import WorkflowEnvironment

__all__ = ["durable_database", "durable_env", "pytest_configure"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "durable_env(**options): options of the durable_env fixture's "
                   "WorkflowEnvironment (skip_time, start_time, replay_every_step, ...)")


@pytest.fixture
def durable_database(request: pytest.FixtureRequest) -> None:
    """Database access for ``durable_env``: pytest-django's ``db`` fixture."""
    request.getfixturevalue("db")


@pytest.fixture
def durable_env(request: pytest.FixtureRequest,
                durable_database: None) -> Iterator[WorkflowEnvironment]:
    """An open ``WorkflowEnvironment``; closed (publisher and clock put back) after the test."""
    from .environment import WorkflowEnvironment

    marker = request.node.get_closest_marker("durable_env")
    options = dict(marker.kwargs) if marker is not None else {}
    with WorkflowEnvironment(**options) as env:
        yield env
