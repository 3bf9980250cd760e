"""``manage.py durable schedule list|describe|pause|unpause|trigger|delete``: text, --json, exit
codes."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError

from tests.admin.helpers import durable_cmd, manage
from tests.e2e import schedule_workflows as sw
from tests.support.counters import count

pytestmark = pytest.mark.e2e



def test_schedule_subcommands(durable, uid):
    sid = f"cli-{uid}"
    durable.schedule(sw.scheduled_tick, sid, schedule_id=sid, cron="0 0 1 1 *")
    try:
        rows = {r["schedule_id"]: r for r in json.loads(durable_cmd("schedule", "list",
                                                                   "--json"))}
        assert rows[sid]["timing"] == "0 0 1 1 *" and rows[sid]["paused"] is False
        assert rows[sid]["next_run"].endswith("-01-01 00:00:00+00:00")
        assert sid in durable_cmd("schedule", "list")
        assert json.loads(durable_cmd("schedule", "describe", sid, "--json"))["cron"] == \
            "0 0 1 1 *"

        out = json.loads(durable_cmd("schedule", "pause", sid, "--note", "freeze", "--json"))
        assert out == {"schedule_id": sid, "paused": True, "changed": True}
        assert "already paused" in durable_cmd("schedule", "pause", sid)
        info = durable.get_schedule(sid).describe()
        assert info["paused"] is True and info["note"] == "freeze"
        assert info["log"][0]["event"] == "paused" and info["log"][0]["user"].startswith("cli")
        assert "unpaused" in durable_cmd("schedule", "unpause", sid)

        triggered = json.loads(durable_cmd("schedule", "trigger", sid, "--json"))
        run = durable.get_handle(triggered["workflow_id"])
        assert run.result(timeout=30) == run.workflow_id and count(sid) == 1

        assert json.loads(durable_cmd("schedule", "delete", sid, "--json"))["deleted"] is True
        with pytest.raises(CommandError, match="ScheduleNotFoundError"):
            durable_cmd("schedule", "describe", sid)
    finally:
        from durable_celery.models import Schedule

        Schedule.objects.filter(schedule_id=sid).delete()


def test_schedule_errors_exit_non_zero(db_access, uid):
    with pytest.raises(CommandError, match="needs a SCHEDULE_ID"):
        durable_cmd("schedule", "pause")
    proc = manage("schedule", "trigger", f"missing-{uid}", "--json")
    assert proc.returncode == 1 and "ScheduleNotFoundError" in proc.stderr
    proc = manage("schedule", "frobnicate")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    proc = manage("schedule", "list", "--json", "--namespace", f"empty-{uid}")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
