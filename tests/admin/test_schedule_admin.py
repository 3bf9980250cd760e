"""The schedule admin: list and schedule pages, permissions, CSRF, and the confirmed actions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.e2e import schedule_workflows as sw
from tests.support.counters import count

pytestmark = pytest.mark.e2e

FAR_CRON = "0 0 1 1 *"


@pytest.fixture
def schedule_user(db_access: None, uid: str) -> Callable[..., Any]:
    """Staff users that may view schedules and workflows, optionally operate schedules."""
    from django.contrib.auth.models import Permission, User

    made: list[int] = []

    def make(operate: bool = False, view: bool = True) -> Any:
        user = User.objects.create_user(f"s{len(made)}-{uid}", password="pw-" + uid,
                                        is_staff=True)
        codenames = ["view_workflowexecution"] + (["view_schedule"] if view else [])
        if operate:
            codenames.append("operate_schedule")
        user.user_permissions.set(Permission.objects.filter(
            content_type__app_label="durable_celery", codename__in=codenames))
        made.append(user.pk)
        return User.objects.get(pk=user.pk)

    return make


@pytest.fixture
def schedule(durable: Any, uid: str) -> Iterator[Any]:
    """A schedule that does not fire by itself during the test (deleted after it)."""
    from durable_celery.errors import ScheduleNotFoundError

    handle = durable.schedule(sw.scheduled_tick, f"adm-{uid}", schedule_id=f"adm-{uid}",
                              cron=FAR_CRON)
    yield handle
    try:
        handle.delete()
    except ScheduleNotFoundError:
        pass


def _pk(schedule_id: str) -> int:
    from durable_celery.models import Schedule

    return int(Schedule.objects.get(namespace="durable", schedule_id=schedule_id).pk)


def url(name: str, schedule_id: str) -> str:
    return reverse(f"admin:durable_celery_schedule_{name}", args=[_pk(schedule_id)])


def test_list_and_schedule_pages_show_timing_next_and_recent_runs(client, schedule,
                                                                   schedule_user, uid):
    from durable_celery.admin_detail import execution_url
    from durable_celery.models import WorkflowExecution

    run = schedule.trigger()
    assert run.result(timeout=30) == run.workflow_id
    run_pk = WorkflowExecution.objects.get(workflow_id=run.workflow_id).pk
    next_year = schedule.describe()["next_runs"][0]

    client.force_login(schedule_user(view=False))
    assert client.get(reverse("admin:durable_celery_schedule_changelist")).status_code == 403

    client.force_login(schedule_user())
    page = client.get(reverse("admin:durable_celery_schedule_changelist"),
                      {"q": f"adm-{uid}"}).content.decode()
    assert f"adm-{uid}" in page and FAR_CRON in page and "At 12:00 AM" in page
    assert "active" in page and f"{next_year:%Y-%m-%d %H:%M:%S}" in page
    assert f'href="{execution_url(run_pk)}"' in page

    detail = client.get(url("change", f"adm-{uid}"))
    assert detail.status_code == 200
    body = detail.content.decode()
    assert f"{next_year:%Y-%m-%d %H:%M:%S}" in body and 'id="dc-next-runs"' in body
    assert f'href="{execution_url(run_pk)}">{run.workflow_id}</a>' in body
    assert "completed" in body and "durable_schedule_id" in body  # link to all its runs
    assert "Trigger now" not in body  # no operate permission, no action buttons


def test_list_page_query_count_does_not_grow(client, schedule_user, uid):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from durable_celery import DurableClient

    def queries(namespace: str, n: int) -> int:
        durable = DurableClient(namespace)
        for i in range(n):
            durable.schedule("scheduled_tick", "k", schedule_id=f"q{i}", cron=FAR_CRON,
                             paused=bool(i % 2))
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(reverse("admin:durable_celery_schedule_changelist"),
                                  {"namespace": namespace})
        assert response.status_code == 200
        assert response.content.decode().count(f"{namespace}</td>") == n
        return len(ctx.captured_queries)

    from durable_celery.models import Schedule

    client.force_login(schedule_user())
    try:
        assert queries(f"few-{uid}", 2) == queries(f"many-{uid}", 30)
    finally:
        Schedule.objects.filter(namespace__in=[f"few-{uid}", f"many-{uid}"]).delete()


def test_actions_need_the_permission_and_csrf(client, schedule, schedule_user, uid):
    client.force_login(schedule_user())
    for action in ("pause", "unpause", "trigger", "delete"):
        assert client.get(url(action, f"adm-{uid}")).status_code == 403
        assert client.post(url(action, f"adm-{uid}")).status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(schedule_user(operate=True))
    assert strict.post(url("pause", f"adm-{uid}"), {"note": "x"}).status_code == 403
    info = schedule.describe()
    assert info["paused"] is False and info["runs_started"] == 0
    assert [e["event"] for e in info["log"]] == ["created"]


def test_pause_unpause_trigger_and_delete_from_the_admin(client, schedule, schedule_user, uid):
    from django.contrib.admin.models import LogEntry

    from durable_celery.models import Schedule

    user = schedule_user(operate=True)
    client.force_login(user)
    assert "Pause…" in client.get(url("change", f"adm-{uid}")).content.decode()
    confirm = client.get(url("pause", f"adm-{uid}")).content.decode()
    assert "What will happen" in confirm and "not made up" in confirm
    assert schedule.describe()["paused"] is False  # a GET changes nothing

    response = client.post(url("pause", f"adm-{uid}"), {"note": "db maintenance"})
    assert response.status_code == 302 and response["Location"] == url("change", f"adm-{uid}")
    info = schedule.describe()
    assert info["paused"] is True and info["note"] == "db maintenance"
    assert (info["log"][0]["event"], info["log"][0]["user"]) == ("paused", user.username)
    assert LogEntry.objects.filter(user=user, object_id=str(_pk(f"adm-{uid}")),
                                   change_message__contains="paused").exists()
    assert "Unpause…" in client.get(url("change", f"adm-{uid}")).content.decode()

    assert client.post(url("unpause", f"adm-{uid}"), {"note": ""}).status_code == 302
    assert schedule.describe()["paused"] is False

    assert client.post(url("trigger", f"adm-{uid}")).status_code == 302
    [run_id] = schedule.describe()["recent"]
    from durable_celery import DurableClient

    run = DurableClient().get_handle(run_id)
    assert run.result(timeout=30) == run_id and count(f"adm-{uid}") == 1
    operator = [r for r in run.history() if r["kind"] == "operator"]
    assert [(r["name"], r["input"]["user"]) for r in operator] == [("trigger", user.username)]

    pk = _pk(f"adm-{uid}")
    assert "cannot be undone" in client.get(url("delete", f"adm-{uid}")).content.decode()
    response = client.post(reverse("admin:durable_celery_schedule_delete", args=[pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:durable_celery_schedule_changelist")
    assert not Schedule.objects.filter(pk=pk).exists()
    assert LogEntry.objects.filter(user=user, object_id=str(pk), action_flag=3).exists()
    assert run.status() == "completed"  # its run stays
