"""Interrupts on the test clock: what an interrupt cancels never happens, however far time moves
afterwards (moved here from tests/e2e/test_composition.py, where real seconds had to pass)."""

from __future__ import annotations

import pytest

from durable_celery import DurableInterruptedError
from durable_celery.models import Timer
from tests.e2e import composition_workflows as cw
from tests.kit.workflows import KIT_QUEUE
from tests.support.counters import count


def test_interrupt_sleeping_workflow_timer_never_fires(durable_env, uid):
    handle = durable_env.start(cw.child_sleeps, "2 hours", f"never-{uid}",
                               workflow_id=f"sleepy-{uid}", task_queue=KIT_QUEUE)
    assert [h["kind"] for h in handle.history()] == ["sleep"]
    assert handle.interrupt(reason="stop it") == [f"sleepy-{uid}"]
    assert not Timer.objects.filter(execution__workflow_id=f"sleepy-{uid}").exists()

    durable_env.advance("1 day")  # far past the sleep's due time

    assert handle.status() == "interrupted"
    assert [h["status"] for h in handle.history()] == ["cancelled"]
    assert count(f"never-{uid}") == 0
    with pytest.raises(DurableInterruptedError) as raised:
        durable_env.result(handle)
    assert raised.value.code == 410 and raised.value.message == "stop it"
    assert handle.interrupt() == []  # already finished: a no-op, not a crash


def test_workflow_interrupting_itself_stops_there(durable_env, uid):
    key = f"self-{uid}"
    handle = durable_env.start(cw.interrupts_itself, key, workflow_id=f"self-{uid}",
                               task_queue=KIT_QUEUE)
    with pytest.raises(DurableInterruptedError, match="nothing to do"):
        durable_env.result(handle)
    durable_env.advance("1 day")
    assert count(key) == 0
    # the call made after the interrupt in the same step was recorded, then cancelled unrun
    assert [(h["kind"], h["status"]) for h in handle.history()] == [
        ("interrupt", "completed"), ("activity", "cancelled")]
