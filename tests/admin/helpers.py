"""Helpers of the admin tests: URLs, waiting for a status, running ``manage.py durable``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.urls import reverse

__all__ = ["REPO", "action_url", "detail_url", "durable_cmd", "execution", "manage",
           "wait_history", "wait_status"]

REPO = Path(__file__).resolve().parents[2]


def durable_cmd(*args: str) -> str:
    """``manage.py durable ARGS`` in this process; its standard output."""
    out = StringIO()
    call_command("durable", *args, stdout=out)
    return out.getvalue()


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    """``manage.py durable ARGS`` as its own process (exit code, stdout, stderr)."""
    return subprocess.run([sys.executable, "manage.py", "durable", *args], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=120)


def execution(workflow_id: str) -> Any:
    """The latest stored run of ``workflow_id`` (default namespace)."""
    from durable_celery.models import WorkflowExecution

    run = WorkflowExecution.objects.filter(namespace="durable", workflow_id=workflow_id) \
        .order_by("-id").first()
    assert run is not None, f"no run of {workflow_id}"
    return run


def detail_url(workflow_id: str) -> str:
    """Admin workflow page."""
    return reverse("admin:durable_celery_workflowexecution_change",
                   args=[execution(workflow_id).pk])


def action_url(action: str, workflow_id: str, *extra: Any) -> str:
    """Admin page of an operator action."""
    return reverse(f"admin:durable_celery_workflowexecution_{action}",
                   args=[execution(workflow_id).pk, *extra])


def wait_status(handle: Any, wanted: str | tuple[str, ...], timeout: float = 30) -> str:
    """Poll until the workflow reaches one of ``wanted``; returns it (fails on timeout)."""
    wanted = (wanted,) if isinstance(wanted, str) else wanted
    deadline = time.monotonic() + timeout
    status = handle.status()
    while status not in wanted:
        assert time.monotonic() < deadline, f"{handle.workflow_id} stayed {status}"
        time.sleep(0.05)
        status = handle.status()
    return status


def wait_history(handle: Any, predicate: Any, timeout: float = 30) -> list[dict[str, Any]]:
    """Poll the history until ``predicate(history)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        rows = handle.history()
        if predicate(rows):
            return rows
        assert time.monotonic() < deadline, f"history of {handle.workflow_id}: {rows}"
        time.sleep(0.05)
