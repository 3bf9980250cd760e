"""Operator actions in the admin: permission, CSRF, validation, and retry from a failed step."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.admin.helpers import action_url, detail_url, wait_history, wait_status
from tests.e2e import workflows as wf
from tests.support.counters import bump, count

pytestmark = pytest.mark.e2e


def _waiting(durable, uid: str, name: str):
    handle = durable.start(wf.approval, uid, workflow_id=f"{name}-{uid}")
    wait_history(handle, lambda rows: any(r["kind"] == "wait" for r in rows))
    return handle


def test_actions_need_the_operate_permission(client, durable, make_user, uid):
    handle = _waiting(durable, uid, "adm-perm")
    client.force_login(make_user(operate=False))
    for action in ("signal", "interrupt", "retry"):
        assert client.get(action_url(action, handle.workflow_id)).status_code == 403
        assert client.post(action_url(action, handle.workflow_id)).status_code == 403
    assert handle.status() == "running"
    assert "Send signal" not in client.get(detail_url(handle.workflow_id)).content.decode()

    client.force_login(make_user(operate=True))
    page = client.get(action_url("signal", handle.workflow_id)).content.decode()
    assert f"approval-{uid}" in page  # prefilled with what it waits on
    response = client.post(action_url("signal", handle.workflow_id),
                           {"signal_id": f"approval-{uid}", "payload": '{"approved": true}'})
    assert response.status_code == 302
    assert handle.result(timeout=30) is True
    operator = [r for r in handle.history() if r["kind"] == "operator"]
    assert operator[0]["name"] == "signal"
    assert operator[0]["input"]["data"] == {"approved": True}


def test_actions_are_csrf_protected(durable, make_user, uid):
    handle = _waiting(durable, uid, "adm-csrf")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user(operate=True))
    response = browser.post(action_url("interrupt", handle.workflow_id), {})
    assert response.status_code == 403
    assert handle.status() == "running"
    handle.interrupt()


def test_bad_json_is_refused_and_nothing_sent(client, durable, make_user, uid):
    from durable_celery.models import PendingSignal

    handle = _waiting(durable, uid, "adm-badjson")
    client.force_login(make_user(operate=True))
    response = client.post(action_url("signal", handle.workflow_id),
                           {"signal_id": f"approval-{uid}", "payload": "{approved: yes"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "not valid JSON" in body and "The signal was not sent" in body
    assert not PendingSignal.objects.filter(signal_id=f"approval-{uid}").exists()
    assert handle.status() == "running"
    assert not [r for r in handle.history() if r["kind"] == "operator"]
    assert [r["status"] for r in handle.history() if r["kind"] == "wait"] == ["scheduled"]
    handle.interrupt()


def test_retry_from_failed_step_end_to_end(client, durable, make_user, uid):
    key = f"fix-{uid}"
    handle = durable.start(wf.admin_fix_and_retry, key, workflow_id=f"adm-retry-{uid}")
    wait_status(handle, "failed")
    assert count(f"{key}-first") == 1 and count(f"{key}-runs") == 1
    failed = handle.describe()["error"]
    assert failed["class"] == "DurableMaxedError" and "broken" in failed["message"]

    bump(f"{key}-fixed")  # the fix is deployed
    client.force_login(make_user(operate=True))
    page = client.get(action_url("retry", handle.workflow_id)).content.decode()
    assert "admin_fixable" in page and "not run again" in page
    response = client.post(action_url("retry", handle.workflow_id))
    assert response.status_code == 302
    assert handle.result(timeout=30) == ["one", "fixed"]
    assert count(f"{key}-first") == 1  # the first activity did not run again
    assert count(f"{key}-runs") == 2
    history = handle.history()
    main = [(r["seq"], r["name"], r["status"]) for r in history if r["dimension"] == ""]
    assert main == [(1, "counted", "completed"), (2, "admin_fixable", "completed")]
    operator = [r for r in history if r["kind"] == "operator"]
    assert [(r["name"], r["input"]["mode"]) for r in operator] == [("retry", "activity")]
    assert operator[0]["input"]["previous_error"]["class"] == "DurableMaxedError"


def test_rerun_one_failed_activity(client, durable, make_user, uid):
    from durable_celery.models import HistoryEvent

    key = f"rerun-{uid}"
    handle = durable.start(wf.admin_fix_and_retry, key, workflow_id=f"adm-rerun-{uid}")
    wait_status(handle, "failed")
    bump(f"{key}-fixed")
    row = HistoryEvent.objects.get(execution__workflow_id=handle.workflow_id, seq=2,
                                   dimension="")
    client.force_login(make_user(operate=True))
    url = action_url("rerun", handle.workflow_id, row.pk)
    assert "runs again" in client.get(url).content.decode()
    assert client.post(url).status_code == 302
    assert handle.result(timeout=30) == ["one", "fixed"]
    assert count(f"{key}-first") == 1
    # a completed workflow cannot be retried: refused with a message, nothing changes
    response = client.post(action_url("retry", handle.workflow_id), follow=True)
    assert "only a failed one" in response.content.decode()
    assert handle.status() == "completed"
