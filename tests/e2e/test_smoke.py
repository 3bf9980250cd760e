"""The shortest path through the whole system."""

from __future__ import annotations

from tests.e2e import workflows as wf


def test_hello_workflow_completes(client, uid):
    handle = client.start(wf.hello, "durable", workflow_id=f"hello-{uid}")
    assert handle.result(timeout=30) == "Hello, durable!"
    assert handle.status() == "completed"
    history = handle.history()
    assert [(h["seq"], h["kind"], h["name"], h["status"]) for h in history] == [
        (1, "activity", "greet", "completed")]
    assert history[0]["celery_task_id"]
