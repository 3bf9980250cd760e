"""``manage.py durable``: every subcommand against real workflows, text and --json, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError

from tests.admin.helpers import REPO, durable_cmd, wait_history, wait_status
from tests.e2e import workflows as wf
from tests.support.counters import bump, count

pytestmark = pytest.mark.e2e



def test_start_describe_history_list(durable, uid):
    wid = f"cli-hello-{uid}"
    started = json.loads(durable_cmd("start", "hello", '["cli"]', "--id", wid, "--json"))
    assert started["workflow_id"] == wid
    assert durable.get_handle(wid).result(timeout=30) == "Hello, cli!"

    info = json.loads(durable_cmd("describe", wid, "--json"))
    assert info["status"] == "completed" and info["result"] == "Hello, cli!"
    assert "completed" in durable_cmd("describe", wid)

    history = json.loads(durable_cmd("history", wid, "--json"))
    assert [(h["seq"], h["kind"], h["name"]) for h in history] == [(1, "activity", "greet")]
    assert "greet" in durable_cmd("history", wid)

    rows = json.loads(durable_cmd("list", "--name", "hello", "--status", "completed",
                                  "--limit", "1000", "--json"))
    assert wid in [r["workflow_id"] for r in rows]
    assert all(r["status"] == "completed" and r["workflow_name"] == "hello" for r in rows)
    assert wid in durable_cmd("list", "--name", "hello", "--limit", "1000")
    assert json.loads(durable_cmd("list", "--name", f"none-{uid}", "--json")) == []


def test_signal_and_interrupt(durable, uid):
    waiting = durable.start(wf.approval, uid, workflow_id=f"cli-sig-{uid}")
    wait_history(waiting, lambda rows: any(r["kind"] == "wait" for r in rows))
    out = json.loads(durable_cmd("signal", f"approval-{uid}", '{"approved": false}', "--json"))
    assert out == {"signal_id": f"approval-{uid}", "woken": 1}
    assert waiting.result(timeout=30) is False
    assert [r["name"] for r in waiting.history() if r["kind"] == "operator"] == ["signal"]

    with pytest.raises(CommandError, match="not valid JSON"):
        durable_cmd("signal", f"approval-{uid}", "{nope")

    other = durable.start(wf.wait_with_timeout, f"never-{uid}", "1h",
                          workflow_id=f"cli-int-{uid}")
    wait_history(other, lambda rows: any(r["kind"] == "wait" for r in rows))
    out = json.loads(durable_cmd("interrupt", other.workflow_id, "--descend", "--json"))
    assert out == {"interrupted": [other.workflow_id]}
    assert other.status() == "interrupted"
    with pytest.raises(CommandError, match="interrupted"):
        durable_cmd("interrupt", other.workflow_id)


def test_retry_activity_and_workflow_function(durable, uid):
    key = f"cli-fix-{uid}"
    handle = durable.start(wf.admin_fix_and_retry, key, workflow_id=f"cli-retry-{uid}")
    wait_status(handle, "failed")
    bump(f"{key}-fixed")
    out = json.loads(durable_cmd("retry", handle.workflow_id, "--json"))
    assert out["mode"] == "activity" and out["events"] == [2]
    assert handle.result(timeout=30) == ["one", "fixed"]
    assert count(f"{key}-first") == 1

    from durable_celery import RetryPolicy

    fkey = f"cli-fn-{uid}"
    failing = durable.start(wf.failing_workflow, fkey, 1, workflow_id=f"cli-fn-{uid}",
                            retry_policy=RetryPolicy(maximum_attempts=0))
    wait_status(failing, "failed")
    assert "retrying" in durable_cmd("retry", failing.workflow_id)
    assert failing.result(timeout=30) == "ok after 2"


def test_errors_exit_non_zero(db_access, uid):
    with pytest.raises(CommandError, match="WorkflowNotFoundError"):
        durable_cmd("describe", f"missing-{uid}")
    with pytest.raises(CommandError, match="WorkflowNotFoundError"):
        durable_cmd("retry", f"missing-{uid}")
    with pytest.raises(CommandError, match="JSON list"):
        durable_cmd("start", "hello", '{"a": 1}')
    with pytest.raises(CommandError, match="UnknownWorkflowError: .* pass --queue QUEUE"):
        durable_cmd("start", f"nope_{uid}", "[1]")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "manage.py", "durable", "history", f"missing-{uid}",
                           "--json"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "WorkflowNotFoundError" in proc.stderr
