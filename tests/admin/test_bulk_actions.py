"""Bulk actions of the workflow list: confirmed on a page listing the runs, permission-gated,
CSRF-protected, and recorded in each run's history."""

from __future__ import annotations

import pytest
from django.contrib.admin import helpers
from django.test import Client
from django.urls import reverse

from tests.admin.helpers import execution, wait_history, wait_status
from tests.e2e import workflows as wf
from tests.support.counters import bump, count

pytestmark = pytest.mark.e2e

CHANGELIST = "admin:durable_celery_workflowexecution_changelist"


def _waiting(durable, uid: str, n: int) -> list:
    handles = [durable.start(wf.approval, f"{uid}-{i}", workflow_id=f"bulk-{i}-{uid}")
               for i in range(n)]
    for handle in handles:
        wait_history(handle, lambda rows: any(r["kind"] == "wait" for r in rows))
    return handles


def _select(action: str, handles: list, **extra: str) -> dict[str, object]:
    return {"action": action, helpers.ACTION_CHECKBOX_NAME: [
        str(execution(h.workflow_id).pk) for h in handles], "index": "0", **extra}


def test_bulk_interrupt_confirms_then_interrupts_and_records(client, durable, make_user, uid):
    handles = _waiting(durable, uid, 3)
    user = make_user(operate=True)
    client.force_login(user)
    url = reverse(CHANGELIST)
    listed = client.get(url, {"q": uid}).content.decode()
    assert 'value="bulk_interrupt"' in listed and 'value="bulk_retry"' in listed

    confirm = client.post(url, _select("bulk_interrupt", handles))
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Selected runs: 3 of 3 will be acted on" in page
    assert all(h.workflow_id in page for h in handles)
    assert all(h.status() == "running" for h in handles)  # nothing happens before confirming

    data = {"action": "bulk_interrupt", "post": "yes", "reason": f"maintenance {uid}",
            helpers.ACTION_CHECKBOX_NAME: [str(execution(h.workflow_id).pk) for h in handles]}
    done = client.post(url, data, follow=True)
    assert "Interrupted 3 workflow(s)" in done.content.decode()
    for handle in handles:
        assert handle.status() == "interrupted"
        operator = [r for r in handle.history() if r["kind"] == "operator"]
        assert [(r["name"], r["input"]["user"], r["input"]["reason"]) for r in operator] == [
            ("interrupt", user.username, f"maintenance {uid}")]
        assert handle.describe()["error"]["message"] == f"maintenance {uid}"


def test_bulk_action_leaves_runs_it_does_not_apply_to(client, durable, make_user, uid):
    running = _waiting(durable, uid, 1)[0]
    done = durable.start(wf.hello, "x", workflow_id=f"bulk-done-{uid}")
    assert done.result(timeout=30) == "Hello, x!"
    client.force_login(make_user(operate=True))
    url = reverse(CHANGELIST)
    page = client.post(url, _select("bulk_interrupt", [running, done])).content.decode()
    assert "Selected runs: 1 of 2 will be acted on" in page
    assert "left alone: is completed" in page
    client.post(url, {"action": "bulk_interrupt", "post": "yes", helpers.ACTION_CHECKBOX_NAME: [
        str(execution(h.workflow_id).pk) for h in (running, done)]})
    assert running.status() == "interrupted" and done.status() == "completed"
    assert not [r for r in done.history() if r["kind"] == "operator"]


def test_bulk_retry_resumes_failed_runs_from_their_failed_step(client, durable, make_user,
                                                                uid):
    keys = [f"bfix-{i}-{uid}" for i in range(2)]
    handles = [durable.start(wf.admin_fix_and_retry, key, workflow_id=f"bulk-retry-{key}")
               for key in keys]
    for handle in handles:
        wait_status(handle, "failed")
    for key in keys:
        bump(f"{key}-fixed")
    user = make_user(operate=True)
    client.force_login(user)
    url = reverse(CHANGELIST)
    page = client.post(url, _select("bulk_retry", handles)).content.decode()
    assert "Selected runs: 2 of 2 will be acted on" in page and "RuntimeError" in page
    client.post(url, {"action": "bulk_retry", "post": "yes", helpers.ACTION_CHECKBOX_NAME: [
        str(execution(h.workflow_id).pk) for h in handles]})
    for key, handle in zip(keys, handles, strict=True):
        assert handle.result(timeout=30) == ["one", "fixed"]
        assert count(f"{key}-first") == 1  # what was recorded before did not run again
        operator = [r for r in handle.history() if r["kind"] == "operator"]
        assert [(r["name"], r["input"]["user"], r["input"]["mode"]) for r in operator] == [
            ("retry", user.username, "activity")]


def test_bulk_actions_need_the_operate_permission(client, durable, make_user, uid):
    handle = _waiting(durable, uid, 1)[0]
    client.force_login(make_user(operate=False))
    url = reverse(CHANGELIST)
    assert "bulk_interrupt" not in client.get(url, {"q": uid}).content.decode()
    client.post(url, _select("bulk_interrupt", [handle]))
    client.post(url, {"action": "bulk_interrupt", "post": "yes",
                      helpers.ACTION_CHECKBOX_NAME: [str(execution(handle.workflow_id).pk)]})
    assert handle.status() == "running"
    assert not [r for r in handle.history() if r["kind"] == "operator"]

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user(operate=True))
    response = browser.post(url, {"action": "bulk_interrupt", "post": "yes",
                                  helpers.ACTION_CHECKBOX_NAME: [
                                      str(execution(handle.workflow_id).pk)]})
    assert response.status_code == 403
    assert handle.status() == "running"
    handle.interrupt()


def test_bulk_cancel_runs_each_workflows_cleanup_and_is_recorded(client, durable, make_user,
                                                                  uid):
    from tests.e2e import lifecycle_workflows as lw

    keys = [f"bcancel-{i}-{uid}" for i in range(2)]
    handles = [durable.start(lw.cancel_and_compensate, key, workflow_id=f"bulk-{key}")
               for key in keys]
    for handle in handles:
        wait_history(handle, lambda rows: any(r["kind"] == "wait" for r in rows))
    user = make_user(operate=True)
    client.force_login(user)
    url = reverse(CHANGELIST)
    page = client.post(url, _select("bulk_cancel", handles)).content.decode()
    assert "Selected runs: 2 of 2 will be acted on" in page
    assert all(h.status() == "running" for h in handles)  # nothing before confirming
    done = client.post(url, {**_select("bulk_cancel", handles), "post": "yes"}, follow=True)
    assert "Asked to cancel 2 workflow(s)" in done.content.decode()
    for key, handle in zip(keys, handles, strict=True):
        result = handle.result(timeout=30)  # the workflow handled it: cleanup, then returned
        assert result[:2] == ["before", "cleaned"]
        assert count(f"{key}-cleanup") == 1 and count(f"{key}-cleanup-told") == 0
        operator = [r for r in handle.history() if r["kind"] == "operator"]
        assert [(r["name"], r["input"]["user"]) for r in operator] == [("cancel", user.username)]


def test_bulk_resume_continues_interrupted_runs(client, durable, make_user, uid):
    handles = _waiting(durable, uid, 2)
    for handle in handles:
        handle.interrupt("stopped for maintenance")
        wait_status(handle, "interrupted")
    user = make_user(operate=True)
    client.force_login(user)
    url = reverse(CHANGELIST)
    page = client.post(url, _select("bulk_resume", handles)).content.decode()
    assert "Selected runs: 2 of 2 will be acted on" in page
    done = client.post(url, {**_select("bulk_resume", handles), "post": "yes"}, follow=True)
    assert "Resumed 2 workflow(s)" in done.content.decode()
    for i, handle in enumerate(handles):
        wait_status(handle, "running")
        wait_history(handle, lambda rows: any(r["kind"] == "wait" and r["status"] == "scheduled"
                                              for r in rows))
        durable.signal(f"approval-{uid}-{i}", {"approved": True})
        assert handle.result(timeout=30) is True
        operator = [r["name"] for r in handle.history() if r["kind"] == "operator"]
        assert operator == ["resume"]


def test_single_cancel_and_resume_pages_need_the_permission(client, durable, make_user, uid):
    handle = _waiting(durable, uid, 1)[0]
    pk = execution(handle.workflow_id).pk
    cancel = reverse("admin:durable_celery_workflowexecution_cancel", args=[pk])
    resume = reverse("admin:durable_celery_workflowexecution_resume", args=[pk])
    client.force_login(make_user(operate=False))
    assert client.get(cancel).status_code == 403 and client.post(cancel).status_code == 403
    client.force_login(make_user(operate=True))
    page = client.get(cancel).content.decode()
    assert "asyncio.CancelledError" in page and "csrfmiddlewaretoken" in page
    handle.interrupt("to be resumed")
    wait_status(handle, "interrupted")
    assert "continues from where it stopped" in client.get(resume).content.decode()
    client.post(resume, {}, follow=True)
    wait_status(handle, "running")
    assert [r["name"] for r in handle.history() if r["kind"] == "operator"] == ["resume"]
