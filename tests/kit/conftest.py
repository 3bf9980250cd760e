"""The testing kit's own tests: ``durable_env`` is the fixture a user's project gets from
``pytest_plugins = ["durable_celery.testing.pytest"]`` (imported here, since only the top-level
conftest may name plugins).

This repository's tests commit what they write (other processes must see it), so
``durable_database`` is the session's ``db_access`` — except for tests marked ``django_db``,
which run in pytest-django's rolled-back transaction, a user's default.
"""

from __future__ import annotations

import pytest

from durable_celery.testing.pytest import durable_env, pytest_configure  # noqa: F401


@pytest.fixture
def durable_database(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("django_db"):
        request.getfixturevalue("db")
    else:
        request.getfixturevalue("db_access")
