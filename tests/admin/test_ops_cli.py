"""``manage.py durable`` for operators: times and durations, tracebacks, validated choices,
``--watch``, ``export`` and ``workers``."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from durable_celery import RetryPolicy
from tests.admin import ops_workflows as ow
from tests.admin.helpers import durable_cmd, manage, wait_history, wait_status
from tests.e2e import workflows as wf

pytestmark = pytest.mark.e2e

CLOCK = re.compile(r"\d\d:\d\d:\d\d\.\d{3}")


def test_history_shows_times_and_durations(durable, uid):
    handle = durable.start(ow.ops_parallel, f"h-{uid}", 2, 0.2, workflow_id=f"cli-h-{uid}")
    handle.result(timeout=30)
    text = durable_cmd("history", handle.workflow_id)
    header, *lines = text.strip().splitlines()
    assert header.split() == ["seq", "dimension", "kind", "name", "status", "attempts",
                              "created", "completed", "duration", "outcome"]
    activity = [line for line in lines if "ops_pause" in line]
    assert len(activity) == 2
    for line in activity:
        assert len(CLOCK.findall(line)) == 2  # created and completed, to the millisecond
        assert re.search(r"\b\d+(\.\d\d)?(ms|s)\b", line)  # duration
    assert any("sleep" in line and "completed" in line for line in lines)


def test_describe_prints_errors_with_tracebacks_and_attempts(durable, uid):
    handle = durable.start(ow.ops_missing_order, f"o-{uid}", workflow_id=f"cli-key-{uid}")
    wait_status(handle, "failed")
    text = durable_cmd("describe", handle.workflow_id)
    assert re.search(rf"error\s+KeyError: 'o-{uid}'  \(as DurableMaxedError, code 597, "
                     r"raised in lookup_order \(ops_workflows.py:\d+\)\)", text)
    assert "Traceback (most recent call last):" in text and "return orders[order_id]" in text
    assert "failures (1):" in text and "#1 activity ops_load_order: failed, attempts 2" in text
    assert re.search(r"attempt 1 failed on \S+ \(.+, next after 100ms\): KeyError", text)
    assert re.search(r"attempt 2 failed on \S+ \(.+\): KeyError", text)
    info = json.loads(durable_cmd("describe", handle.workflow_id, "--json"))
    assert info["error"]["type"] == "KeyError" and "lookup_order" in info["error"]["traceback"]
    log = info["failures"][0]["attempt_log"]
    assert [(a["number"], a["outcome"], a["error"]["type"]) for a in log] == [
        (1, "failed", "KeyError"), (2, "failed", "KeyError")]


def test_describe_shows_every_failed_try_of_the_workflow_function(durable, uid):
    handle = durable.start(ow.ops_workflow_fails, f"f-{uid}", workflow_id=f"cli-fn-{uid}",
                           retry_policy=RetryPolicy(maximum_attempts=1,
                                                    initial_interval="100ms"))
    wait_status(handle, "failed")
    text = durable_cmd("describe", handle.workflow_id)
    assert "- workflow function try: failed, attempts 1" in text
    assert text.count("LookupError: no such customer") >= 2
    assert text.count("in ops_workflow_fails") >= 2  # both tracebacks


def test_choices_are_validated(db_access):
    with pytest.raises(CommandError, match="invalid choice: 'bogus'"):
        durable_cmd("list", "--status", "bogus")
    proc = manage("list", "--status", "bogus")
    assert proc.returncode == 2 and "invalid choice: 'bogus'" in proc.stderr
    assert "running" in proc.stderr  # the valid choices are listed
    proc = manage("list", "--health", "sick")
    assert proc.returncode == 2 and "invalid choice: 'sick'" in proc.stderr


def test_watch_renders_until_the_run_ends(durable, uid):
    handle = durable.start(ow.ops_parallel, f"w-{uid}", 2, 0.5, workflow_id=f"cli-watch-{uid}")
    text = durable_cmd("describe", handle.workflow_id, "--watch", "--interval", "0.2",
                       "--timeout", "60")
    renders = text.count("--- ")
    assert renders >= 2, text
    last = text.rsplit("--- ", 1)[1]
    assert re.search(r"status\s+completed", last) and "ops_pause" in last
    assert handle.status() == "completed"


def test_watch_is_bounded_by_its_timeout(durable, uid):
    handle = durable.start(wf.approval, uid, workflow_id=f"cli-watchto-{uid}")
    wait_history(handle, lambda rows: any(r["kind"] == "wait" for r in rows))
    try:
        out = StringIO()
        with pytest.raises(CommandError, match="still running after 0.6s"):
            call_command("durable", "describe", handle.workflow_id, "--watch", "--interval",
                         "0.2", "--timeout", "0.6", stdout=out)
        assert out.getvalue().count("--- ") >= 3
    finally:
        handle.interrupt()


def test_export_prints_a_run_and_its_history(durable, uid):
    wid = f"cli-export-{uid}"
    first = durable.start(wf.hello, "one", workflow_id=wid)
    assert first.result(timeout=30) == "Hello, one!"
    first_run = first.describe()["run_id"]
    second = durable.start(wf.hello, "two", workflow_id=wid)
    assert second.result(timeout=30) == "Hello, two!"
    latest = json.loads(durable_cmd("export", wid))
    assert latest["format"] == 1 and latest["result"] == "Hello, two!"
    assert [(h["seq"], h["kind"], h["name"]) for h in latest["history"]] == [
        (1, "activity", "greet")]
    older = json.loads(durable_cmd("export", wid, "--run", first_run))
    assert older["run_id"] == first_run and older["result"] == "Hello, one!"
    proc = manage("export", wid, "--run", "0" * 32)
    assert proc.returncode == 1 and "WorkflowNotFoundError" in proc.stderr


def test_workers_lists_live_workers_and_queues(durable, uid):
    report = json.loads(durable_cmd("workers", "--json"))
    shared = [w for w in report["workers"] if "durable" in w["queues"]]
    assert shared and shared[0]["heartbeat_age"] < 30 and shared[0]["processes"]
    queues = {q["queue"]: q for q in report["queues"]}
    assert queues["durable"]["consumers"] and queues["durable-activity"]["consumers"]
    text = durable_cmd("workers")
    assert "live workers (" in text and "queues (" in text and shared[0]["name"] in text
