"""The workflow admin: list, filters, search, constant query count, and the workflow pages."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.admin.helpers import detail_url, wait_history, wait_status
from tests.e2e import workflows as wf

pytestmark = pytest.mark.e2e

CHANGELIST = "admin:durable_celery_workflowexecution_changelist"


def _make_executions(namespace: str, n: int) -> None:
    from durable_celery.models import SearchAttribute, WorkflowExecution

    parent = WorkflowExecution.objects.create(namespace=namespace, workflow_id=f"{namespace}-p",
                                              workflow_name="parent_flow", task_queue="q")
    for i in range(n):
        child = WorkflowExecution.objects.create(
            namespace=namespace, workflow_id=f"{namespace}-{i}", workflow_name="child_flow",
            task_queue="q", status="completed" if i % 2 else "failed",
            parent_workflow_id=parent.workflow_id)
        # "cust…" cannot occur in the hex ids the tests use, so a search for it is exact.
        SearchAttribute.objects.create(execution=child, key="customer", value=f"cust{i}")


def _list_queries(client, namespace: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse(CHANGELIST), {"namespace": namespace})
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


def test_list_page_query_count_does_not_grow(client, make_user, uid,
                                             django_assert_max_num_queries):
    client.force_login(make_user())
    _make_executions(f"few-{uid}", 3)
    _make_executions(f"many-{uid}", 99)
    few, _ = _list_queries(client, f"few-{uid}")
    many, page = _list_queries(client, f"many-{uid}")
    assert many == few, (few, many)
    # its own row plus 99 parent links, without a query per row
    assert page.count(f"many-{uid}-p</a>") == 100
    with django_assert_max_num_queries(few):
        client.get(reverse(CHANGELIST), {"namespace": f"many-{uid}"})


def test_list_filters_and_search(client, make_user, uid):
    client.force_login(make_user())
    ns = f"filters-{uid}"
    _make_executions(ns, 4)
    url = reverse(CHANGELIST)
    body = client.get(url, {"namespace": ns, "status": "failed"}).content.decode()
    assert f"{ns}-0<" in body and f"{ns}-2<" in body and f"{ns}-1<" not in body
    body = client.get(url, {"namespace": ns, "workflow_name": "parent_flow"}).content.decode()
    assert f"{ns}-p<" in body and f"{ns}-0<" not in body
    body = client.get(url, {"namespace": ns, "q": "cust3"}).content.decode()
    assert f"{ns}-3<" in body and f"{ns}-2<" not in body
    body = client.get(url, {"namespace": ns, "q": "customer=cust2"}).content.decode()
    assert f"{ns}-2<" in body and f"{ns}-3<" not in body
    body = client.get(url, {"q": f"{ns}-1"}).content.decode()
    assert f"{ns}-1<" in body and f"{ns}-0<" not in body
    body = client.get(url, {"namespace": ns, "task_queue": "q",
                            "created_at__gte": "2000-01-01 00:00:00+00:00"}).content.decode()
    assert f"{ns}-p<" in body


def test_completed_workflow_page(client, durable, make_user, uid):
    handle = durable.start(wf.hello, "admin", workflow_id=f"adm-done-{uid}",
                           search={"customer": f"acme-{uid}"})
    assert handle.result(timeout=30) == "Hello, admin!"
    client.force_login(make_user())
    body = client.get(detail_url(handle.workflow_id)).content.decode()
    assert "completed" in body and "Hello, admin!" in body
    assert 'id="dc-timeline"' in body and "greet" in body
    assert f"acme-{uid}" in body  # search fields
    assert "dc-task" in body  # celery task linked to its TaskResult page
    assert "Send signal" not in body  # no operate permission, finished anyway
    response = client.get(reverse(CHANGELIST), {"q": f"acme-{uid}"})
    assert handle.workflow_id in response.content.decode()


def test_failed_workflow_page_shows_error(client, durable, make_user, uid):
    handle = durable.start(wf.fatal_flow, f"broken {uid}", workflow_id=f"adm-fail-{uid}")
    wait_status(handle, "failed")
    client.force_login(make_user(operate=True))
    body = client.get(detail_url(handle.workflow_id)).content.decode()
    assert 'id="dc-error"' in body and f"broken {uid}" in body
    assert "DurableFatalError" in body
    assert "Retry from failed step" in body and "Re-run" in body


def test_waiting_workflow_page_shows_open_wait(client, durable, make_user, uid):
    handle = durable.start(wf.wait_with_timeout, f"sig-{uid}", "1h",
                           workflow_id=f"adm-wait-{uid}")
    wait_history(handle, lambda rows: any(r["kind"] == "wait" for r in rows))
    client.force_login(make_user(operate=True))
    body = client.get(detail_url(handle.workflow_id)).content.decode()
    assert 'class="dc-wait"' in body and f"sig-{uid}" in body
    assert 'class="dc-timer"' in body  # the wait's timeout timer
    assert "Send signal" in body and "Interrupt" in body
    handle.interrupt()


def test_interrupted_workflow_page_records_operator(client, durable, make_user, uid):
    handle = durable.start(wf.wait_with_timeout, f"sig-{uid}", "1h",
                           workflow_id=f"adm-int-{uid}")
    wait_history(handle, lambda rows: any(r["kind"] == "wait" for r in rows))
    user = make_user(operate=True)
    client.force_login(user)
    url = reverse("admin:durable_celery_workflowexecution_interrupt",
                  args=[_pk(handle.workflow_id)])
    page = client.get(url).content.decode()
    assert "What will happen" in page and "descendant" in page
    response = client.post(url, {"reason": "ops said so", "descend": "on"})
    assert response.status_code == 302
    assert handle.status() == "interrupted"
    body = client.get(detail_url(handle.workflow_id)).content.decode()
    assert "interrupted" in body and "ops said so" in body
    operator = [r for r in handle.history() if r["kind"] == "operator"]
    assert [(r["dimension"], r["name"], r["input"]["user"]) for r in operator] == [
        ("operator", "interrupt", user.username)]
    assert operator[0]["input"]["descend"] is True


def _pk(workflow_id: str) -> int:
    from tests.admin.helpers import execution

    return execution(workflow_id).pk


def test_read_only_models_are_listed(client, make_user):
    client.force_login(make_user(superuser=True))
    for model in ("workflowexecution", "historyevent", "timer", "pendingsignal",
                  "outboxmessage"):
        response = client.get(reverse(f"admin:durable_celery_{model}_changelist"))
        assert response.status_code == 200, model
        assert reverse(f"admin:durable_celery_{model}_add") not in response.content.decode()


def test_read_paths_change_nothing(client, make_user, uid):
    """Pages and read subcommands work from the database alone (no worker) and write nothing."""
    from io import StringIO

    from django.core.management import call_command

    from durable_celery.models import HistoryEvent, WorkflowExecution

    ns = f"ro-{uid}"
    _make_executions(ns, 2)
    execution = WorkflowExecution.objects.get(namespace=ns, workflow_id=f"{ns}-0")
    HistoryEvent.objects.create(execution=execution, seq=1, kind="wait", name=f"s-{uid}")

    def snapshot() -> tuple[object, ...]:
        return (list(WorkflowExecution.objects.filter(namespace=ns).values()),
                list(HistoryEvent.objects.filter(execution__namespace=ns).values()))

    before = snapshot()
    client.force_login(make_user(operate=True))
    assert client.get(reverse("admin:durable_celery_workflowexecution_change",
                              args=[execution.pk])).status_code == 200
    assert client.get(reverse(CHANGELIST), {"namespace": ns}).status_code == 200
    for args in (["list"], ["describe", execution.workflow_id],
                 ["history", execution.workflow_id]):
        call_command("durable", *args, "--namespace", ns, "--json", stdout=StringIO())
    assert snapshot() == before


def test_workflow_page_shows_hook_threads_and_entity(client, durable, make_user, uid):
    from tests.e2e import composition_workflows as cw

    handle = durable.start(cw.review, f"doc-{uid}", workflow_id=f"adm-hook-{uid}")
    thread = handle.result(timeout=30)["thread"]
    client.force_login(make_user())
    body = client.get(detail_url(handle.workflow_id)).content.decode()
    assert 'id="dc-hooks"' in body and "Hook threads (1)" in body
    assert f"<code>{thread}</code>" in body and "reviewer" in body
    assert f"doc-{uid}" in body  # the entity document the hook wrote
