"""Fixtures of the admin and operations tests (the shared worker is in tests/conftest.py): a
``DurableClient`` named ``durable`` (pytest-django's ``client`` stays the Django test client),
staff users, and the browser fixtures of tests/admin/browser_support.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.admin.browser_support import chromium, live_url

__all__ = ["chromium", "durable", "live_url", "make_user"]


@pytest.fixture
def durable(shared_worker: Any, db_access: None) -> Any:
    """A ``DurableClient`` whose workflows the shared worker runs."""
    from durable_celery import DurableClient

    return DurableClient()


@pytest.fixture
def make_user(db_access: None, uid: str) -> Callable[..., Any]:
    """Create a staff user that may view workflows, optionally operate them (unique names)."""
    from django.contrib.auth.models import Permission, User

    made: list[int] = []

    def make(operate: bool = False, superuser: bool = False) -> Any:
        user = User.objects.create_user(f"u{len(made)}-{uid}", password="pw-" + uid,
                                        is_staff=True, is_superuser=superuser)
        codenames = ["view_workflowexecution", "view_historyevent"]
        if operate:
            codenames.append("operate_workflow")
        user.user_permissions.set(Permission.objects.filter(
            content_type__app_label="durable_celery", codename__in=codenames))
        made.append(user.pk)
        return User.objects.get(pk=user.pk)  # fresh permission cache

    return make
