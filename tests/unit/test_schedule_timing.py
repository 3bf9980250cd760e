"""Schedule timing without a database: cron and interval parsing, fire times, run ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable_celery.schedules import (
    ScheduleTiming,
    check_schedule_id,
    parse_catchup_window,
    parse_overlap,
    run_workflow_id,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_cron_fire_times_are_utc_and_strictly_after() -> None:
    timing = ScheduleTiming.parse(cron="0 3 * * *")
    assert timing.next_after(at("2024-01-01T02:59:59")) == at("2024-01-01T03:00:00")
    assert timing.next_after(at("2024-01-01T03:00:00")) == at("2024-01-02T03:00:00")
    assert timing.fires(at("2024-01-01T03:00:00"), at("2024-01-03T03:00:00"), 10) == [
        at("2024-01-01T03:00:00"), at("2024-01-02T03:00:00"), at("2024-01-03T03:00:00")]
    assert timing.describe().startswith("At 03:00")
    assert ScheduleTiming.parse(cron="  @Daily ").cron == "@daily"


def test_every_fires_on_multiples_since_the_epoch() -> None:
    hourly = ScheduleTiming.parse(every="1 hour")
    assert hourly.every == 3600
    assert hourly.next_after(at("2024-01-01T02:10:00")) == at("2024-01-01T03:00:00")
    assert hourly.next_after(at("2024-01-01T03:00:00")) == at("2024-01-01T04:00:00")
    assert hourly.describe() == "every 1 hour"
    second = ScheduleTiming.parse(every=1)
    start = at("2024-01-01T00:00:00.250000")
    assert second.fires(start, start + timedelta(seconds=3), 10) == [
        at("2024-01-01T00:00:01"), at("2024-01-01T00:00:02"), at("2024-01-01T00:00:03")]
    assert second.fires(start, start + timedelta(seconds=3), 2) == [
        at("2024-01-01T00:00:01"), at("2024-01-01T00:00:02")]
    assert second.count_fires(at("2024-01-01T00:00:00"), at("2024-01-01T01:00:00")) == 3600
    assert ScheduleTiming.parse(every="30s").describe() == "every 30 seconds"
    assert ScheduleTiming.parse(every=90).describe() == "every 90 seconds"


def test_cron_count_of_fires_in_a_range() -> None:
    timing = ScheduleTiming.parse(cron="*/15 * * * *")
    assert timing.count_fires(at("2024-01-01T00:00:00"), at("2024-01-01T01:00:00")) == 4


def test_run_ids_carry_the_fire_time_to_the_second() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 999, tzinfo=UTC)
    assert run_workflow_id("daily", moment) == "daily-20240506T070809Z"


@pytest.mark.parametrize(("cron", "every", "error", "message"), [
    ("61 * * * *", None, ValueError, "malformed cron"),
    ("* * *", None, ValueError, "5 fields"),
    ("* * * * * *", None, ValueError, "5 fields"),
    ("bogus", None, ValueError, "5 fields"),
    ("@reboot", None, ValueError, "aliases"),
    ("0 0 30 2 *", None, ValueError, "malformed cron"),
    (5, None, TypeError, "cron= must be a str"),
    (None, "0s", ValueError, "at least 1"),
    (None, "1.5s", ValueError, "whole number"),
    (None, "500ms", ValueError, "whole number"),
    (None, -1, ValueError, "cannot be negative"),
    (None, 1e12, ValueError, "at most ten years"),
    (None, "soon", ValueError, "malformed"),
    (None, None, ValueError, "exactly one"),
    ("0 3 * * *", "1h", ValueError, "exactly one"),
])
def test_malformed_timing_is_refused(cron: Any, every: Any, error: type[Exception],
                                     message: str) -> None:
    with pytest.raises(error, match=message):
        ScheduleTiming.parse(cron=cron, every=every)


def test_overlap_catchup_and_ids_are_checked() -> None:
    assert parse_overlap("buffer_one") == "buffer_one"
    with pytest.raises(ValueError, match="overlap must be one of"):
        parse_overlap("sometimes")
    assert parse_catchup_window(None) == 3600
    assert parse_catchup_window("10m") == 600
    with pytest.raises(ValueError, match="at least 10 seconds"):
        parse_catchup_window("5s")
    with pytest.raises(ValueError, match="at most ten years"):
        parse_catchup_window(1e20)
    with pytest.raises(ValueError, match="malformed catchup_window"):
        parse_catchup_window("later")
    with pytest.raises(ValueError, match="schedule_id"):
        check_schedule_id("")
    with pytest.raises(ValueError, match="schedule_id"):
        check_schedule_id("x" * 201)
    with pytest.raises(TypeError, match="schedule_id"):
        check_schedule_id(7)
