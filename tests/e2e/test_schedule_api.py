"""The schedule API without firing: bad input refused with nothing stored, updates, lookups."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e import schedule_workflows as sw

FAR_CRON = "0 0 1 1 *"


@pytest.mark.parametrize(("args", "options", "error", "message"), [
    (("k",), {"cron": "61 * * * *", "every": None}, ValueError, "malformed cron"),
    (("k",), {"cron": "0 3 * *", "every": None}, ValueError, "5 fields"),
    (("k",), {"cron": "0 0 30 2 *", "every": None}, ValueError, "malformed cron"),
    (("k",), {"every": "1.5s"}, ValueError, "whole number of seconds"),
    (("k",), {"every": "often"}, ValueError, "malformed schedule interval"),
    (("k",), {"every": 0}, ValueError, "at least 1"),
    (("k",), {"cron": "0 3 * * *"}, ValueError, "exactly one"),
    (("k",), {"every": None}, ValueError, "exactly one"),
    (("k",), {"overlap": "sometimes"}, ValueError, "overlap must be one of"),
    (("k",), {"catchup_window": "2s"}, ValueError, "at least 10 seconds"),
    (("k",), {"catchup_window": "later"}, ValueError, "malformed catchup_window"),
    (("k", "extra"), {}, TypeError, "workflow 'scheduled_tick' cannot be called with 2 argument"),
    ((object(),), {}, TypeError, "JSON-serialisable"),
    (("k",), {"retry_policy": {"maximum_attempts": -1}}, ValueError, "maximum_attempts"),
    (("k",), {"paused": "yes"}, TypeError, "paused"),
    (("k",), {"expire": "whenever"}, ValueError, "malformed expire"),
], ids=lambda value: str(value)[:30])
def test_bad_input_is_refused_and_nothing_stored(db_access, uid, args, options, error, message):
    from durable_celery import DurableClient
    from durable_celery.models import Schedule

    schedule_id = f"bad-{uid}"
    with pytest.raises(error, match=message):
        DurableClient().schedule(sw.scheduled_tick, *args,
                                 **{"schedule_id": schedule_id, "every": "1s", **options})
    assert not Schedule.objects.filter(schedule_id=schedule_id).exists()


def test_unknown_workflow_and_bad_ids_are_refused(db_access, uid):
    from durable_celery import DurableClient, UnknownWorkflowError
    from durable_celery.models import Schedule

    client = DurableClient()
    with pytest.raises(UnknownWorkflowError, match="no_such_flow"):
        client.schedule("no_such_flow", schedule_id=f"bad-{uid}", every="1s")
    with pytest.raises(ValueError, match="schedule_id"):
        client.schedule(sw.scheduled_tick, "k", schedule_id="", every="1s")
    with pytest.raises(ValueError, match="schedule_id"):
        client.schedule(sw.scheduled_tick, "k", schedule_id="x" * 201, every="1s")
    with pytest.raises(TypeError, match="schedule_id"):
        client.schedule(sw.scheduled_tick, "k", schedule_id=None, every="1s")
    assert not Schedule.objects.filter(schedule_id__in=[f"bad-{uid}", ""]).exists()


def test_scheduling_again_updates_the_definition_and_keeps_the_state(db_access, uid):
    from django.utils import timezone

    from durable_celery import DurableClient
    from durable_celery.errors import ScheduleNotFoundError
    from durable_celery.schedules import ScheduleTiming

    client = DurableClient()
    schedule_id = f"upd-{uid}"
    first = client.schedule(sw.scheduled_tick, "a", schedule_id=schedule_id, cron=FAR_CRON,
                            paused=True, search={"team": "ops"})
    try:
        again = client.schedule("scheduled_tick", "b", schedule_id=schedule_id, cron="0 3 * * *",
                                overlap="buffer_one", catchup_window="1 day",
                                search={"team": "ops"})
        info = again.describe()
        assert (info["args"], info["cron"], info["overlap"]) == (["b"], "0 3 * * *", "buffer_one")
        assert info["catchup_window"] == 86400 and info["paused"] is True  # state kept
        assert info["next_runs"] == [] and info["search"] == {"team": "ops"}
        assert [e["event"] for e in info["log"]] == ["updated", "created"]
        assert set(info["log"][0]["changed"]) == {"args", "cron", "overlap", "catchup_window"}
        assert info["description"].startswith("At 03:00")

        first.unpause(note="go")
        expected = ScheduleTiming(cron="0 3 * * *").next_after(timezone.now())
        assert first.describe()["next_runs"][0] == expected
        assert client.get_schedule(schedule_id).describe()["schedule_id"] == schedule_id
        assert schedule_id in [h.schedule_id for h in client.list_schedules()]
        assert schedule_id not in [h.schedule_id for h in client.list_schedules(namespace="x")]
        with pytest.raises(ScheduleNotFoundError):
            client.get_schedule(f"missing-{uid}")
        with pytest.raises(ScheduleNotFoundError):
            client.get_schedule(schedule_id, namespace="elsewhere")
    finally:
        first.delete()
    with pytest.raises(ScheduleNotFoundError):
        first.delete()


def test_a_schedule_that_cannot_fire_is_paused_with_the_reason(db_access, uid):
    from datetime import timedelta

    from django.utils import timezone

    from durable_celery import DurableClient
    from durable_celery.models import Schedule
    from durable_celery.store.schedules import fire_due_schedules

    schedule = DurableClient().schedule(sw.scheduled_tick, "k", schedule_id=f"broken-{uid}",
                                        cron=FAR_CRON, paused=True)
    try:
        # a cron expression a newer parser no longer reads, stored before the upgrade
        Schedule.objects.named("durable", f"broken-{uid}").update(
            cron="99 99 * * *", paused=False, next_fire_at=timezone.now() - timedelta(minutes=1))
        fire_due_schedules()
        info: dict[str, Any] = schedule.describe()
        assert info["paused"] is True and "after an error" in info["note"]
        assert info["log"][0]["event"] == "failed" and info["runs_started"] == 0
    finally:
        schedule.delete()
