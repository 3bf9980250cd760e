"""The workflow page's history: every call with its attempts, and a Gantt chart of them.

Works on rows the page already loaded (no queries here). An activity call is drawn as its
attempts: time waiting in the queue, each attempt's run (coloured by how it ended), the
back-off before the next one. Sleeps, waits for a signal and child workflows are drawn as
shaded waits; calls that take no time (random, search, emit …) and operator actions are marks.
Calls that ran at the same time sit on separate lanes over the same stretch of the time axis,
so parallel branches are visibly parallel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .admin_format import STATUS_COLOURS, error_view, format_seconds, pretty_json
from .models import ActivityAttempt, HistoryEvent, Timer, TimerKind, WorkflowExecution
from .store.failures import RETRIES_DIMENSION
from .store.operations import OPERATOR_DIMENSION

__all__ = ["GANTT_LANES", "Lane", "Segment", "build_calls", "build_gantt"]

#: Most lanes the chart draws (the table below it lists every call).
GANTT_LANES = 300

_WAIT_KINDS = {"sleep": "sleep", "wait": "wait", "child": "child"}


@dataclass
class Segment:
    """One bar of a lane: ``left``/``width`` in percent of the time axis."""

    css: str
    left: str
    width: str
    title: str


@dataclass
class Lane:
    """One call on the chart."""

    label: str
    kind: str
    status: str
    duration: str
    segments: list[Segment] = field(default_factory=list)
    marker: Segment | None = None
    anchor: str = ""


def _attempt_dicts(row: HistoryEvent, logged: list[ActivityAttempt],
                   retry_at: datetime | None, links: dict[str, str]) -> list[dict[str, Any]]:
    """The attempts of an activity call, oldest first: logged failures, then the current one."""
    attempts = [{
        "number": a.number, "started_at": a.started_at, "finished_at": a.finished_at,
        "worker": a.worker_name, "outcome": a.outcome, "label": a.get_outcome_display(),
        "colour": STATUS_COLOURS.get(a.outcome, "#333"), "error": error_view(a.error),
        "duration": _span(a.started_at, a.finished_at),
        "wait_after": format_seconds(a.retry_delay) if a.retry_delay is not None else "",
        "task_id": a.celery_task_id or "", "task_link": links.get(a.celery_task_id or ""),
        "tb": f"dc-tb-att-{row.pk}-{a.number}",
    } for a in logged]
    if row.attempts and row.attempts not in {a.number for a in logged}:
        if row.status == "scheduled" and row.started_at is None:
            outcome = "retry wait" if retry_at else (
                "queued" if row.dispatched_at else "waiting for a step")
        else:
            outcome = {"scheduled": "running"}.get(row.status, row.status)
        started_task = (row.celery_task_id or "") if row.started_at is not None else ""
        attempts.append({
            "number": row.attempts, "started_at": row.started_at,
            "finished_at": row.completed_at, "current": True,
            "worker": row.worker.name if row.worker_id and row.worker else "",
            "outcome": outcome, "label": outcome,
            "colour": STATUS_COLOURS.get(row.status, "#333"),
            "error": error_view(row.error) if row.status == "failed" else None,
            "duration": _span(row.started_at, row.completed_at),
            "wait_after": "", "task_id": started_task,
            "task_link": links.get(started_task),
            "heartbeat_at": row.heartbeat_at, "tb": f"dc-tb-att-{row.pk}-{row.attempts}",
        })
    return attempts


def _span(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return format_seconds((end - start).total_seconds())


def build_calls(execution: WorkflowExecution, rows: list[HistoryEvent],
                logged: list[ActivityAttempt], timers: list[Timer],
                links: dict[str, str]) -> list[dict[str, Any]]:
    """One dict per history row for the page's table: the row, its outcome, its attempts."""
    by_event: dict[int, list[ActivityAttempt]] = {}
    for attempt in logged:
        by_event.setdefault(attempt.event_id, []).append(attempt)
    retry_at = {t.event_id: t.due_at for t in timers
                if t.kind == TimerKind.ACTIVITY_RETRY and t.event_id is not None}
    calls = []
    for row in rows:
        operator = row.dimension == OPERATOR_DIMENSION
        attempts = _attempt_dicts(row, by_event.get(row.pk, []), retry_at.get(row.pk),
                                  links) if row.kind == "activity" else []
        retrying = row.status == "scheduled" and (row.attempts > 1 or bool(by_event.get(row.pk)))
        calls.append({
            "row": row, "operator": operator,
            "workflow_attempt": row.dimension == RETRIES_DIMENSION,
            "user": (row.input or {}).get("user") if operator else "",
            "tb": f"dc-tb-call-{row.pk}",
            "status": "retrying" if retrying else row.status,
            "colour": STATUS_COLOURS.get("retrying" if retrying else row.status, "#333"),
            "duration": _span(row.created_at, row.completed_at),
            "input": pretty_json(row.input) if row.input else "",
            "result": pretty_json(row.result) if row.result is not None else "",
            "error": error_view(row.error) if row.status != "completed" else None,
            "next_retry_at": retry_at.get(row.pk),
            "attempts": attempts,
            "task_link": links.get(row.celery_task_id or ""),
            "rerunnable": (execution.status == "failed" and row.kind == "activity"
                           and row.status == "failed"),
        })
    return calls


class _Axis:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.seconds = max((end - start).total_seconds(), 0.001)
        self.end = start + timedelta(seconds=self.seconds)

    def pct(self, moment: datetime) -> float:
        offset = (moment - self.start).total_seconds() / self.seconds * 100
        return min(max(offset, 0.0), 100.0)

    def segment(self, css: str, start: datetime, end: datetime, title: str) -> Segment:
        left = self.pct(start)
        width = max(self.pct(min(end, self.end)) - left, 0.25)
        left = min(left, 100 - width)
        return Segment(css, f"{left:.3f}", f"{width:.3f}",
                       f"{title}: {format_seconds((end - start).total_seconds())}")

    def mark(self, css: str, moment: datetime, title: str) -> Segment:
        return Segment(css, f"{self.pct(moment):.3f}", "0", title)


def _activity_segments(axis: _Axis, row: HistoryEvent, logged: list[ActivityAttempt],
                       now: datetime) -> list[Segment]:
    segments: list[Segment] = []
    cursor = row.created_at
    numbers = set()
    for attempt in logged:
        numbers.add(attempt.number)
        start = attempt.started_at or cursor
        if start > cursor:
            segments.append(axis.segment("queue", cursor, start,
                                         f"attempt {attempt.number} queued"))
        segments.append(axis.segment(f"attempt-{attempt.outcome}", start, attempt.finished_at,
                                     f"attempt {attempt.number} {attempt.outcome}"))
        cursor = max(attempt.finished_at, cursor)
        if attempt.retry_delay:
            until = min(cursor + timedelta(seconds=attempt.retry_delay), now)
            if until > cursor:
                segments.append(axis.segment("retry", cursor, until,
                                             f"back-off after attempt {attempt.number}"))
            cursor = max(until, cursor)
    if row.attempts in numbers:
        return segments
    end = row.completed_at or now
    if row.started_at is not None:
        if row.started_at > cursor:
            segments.append(axis.segment("queue", cursor, row.started_at,
                                         f"attempt {row.attempts} queued"))
        state = "running" if row.status == "scheduled" else row.status
        segments.append(axis.segment(f"attempt-{state}", max(row.started_at, cursor), end,
                                     f"attempt {row.attempts} {state}"))
    elif end > cursor:
        waiting = "retry" if row.attempts > 1 and row.dispatched_at is None else "queue"
        segments.append(axis.segment(waiting, cursor, end, f"attempt {row.attempts} "
                                     f"{'waits to retry' if waiting == 'retry' else 'queued'}"))
    return segments


def build_gantt(execution: WorkflowExecution, rows: list[HistoryEvent],
                logged: list[ActivityAttempt], now: datetime) -> dict[str, Any]:
    """The chart: lanes (at most :data:`GANTT_LANES`), the time axis' ticks and its span."""
    if not rows:
        return {"lanes": [], "ticks": [], "span": "", "hidden": 0}
    by_event: dict[int, list[ActivityAttempt]] = {}
    for attempt in logged:
        by_event.setdefault(attempt.event_id, []).append(attempt)
    end = execution.completed_at or now
    for row in rows:
        end = max(end, row.completed_at or row.created_at)
    axis = _Axis(execution.created_at, end)
    ordered = sorted(rows, key=lambda r: (r.created_at, r.dimension, r.seq))
    lanes = []
    for row in ordered[:GANTT_LANES]:
        where = f" [{row.dimension}]" if row.dimension else ""
        lane = Lane(label=f"#{row.seq} {row.kind} {row.name}{where}".strip(), kind=row.kind,
                    status=row.status, duration=_span(row.created_at, row.completed_at)
                    or ("running" if row.status == "scheduled" else ""),
                    anchor=f"dc-call-{row.pk}")
        finish = row.completed_at or (now if row.status == "scheduled" else row.created_at)
        if row.dimension in (OPERATOR_DIMENSION, RETRIES_DIMENSION):
            lane.marker = axis.mark("operator" if row.dimension == OPERATOR_DIMENSION
                                    else "failure", row.created_at, lane.label)
        elif row.kind == "activity":
            lane.segments = _activity_segments(axis, row, by_event.get(row.pk, []), now)
        elif row.kind in _WAIT_KINDS:
            lane.segments = [axis.segment(f"wait-{_WAIT_KINDS[row.kind]}", row.created_at,
                                          finish, f"{row.kind} {row.name}".strip())]
        elif (finish - row.created_at).total_seconds() > axis.seconds / 200:
            lane.segments = [axis.segment(f"attempt-{row.status}", row.created_at, finish,
                                          f"{row.kind} {row.name}")]
        else:
            lane.marker = axis.mark(f"mark-{row.status}", row.created_at, lane.label)
        lanes.append(lane)
    ticks = [{"left": f"{pct}", "label": "+" + format_seconds(axis.seconds * pct / 100)}
             for pct in (0, 25, 50, 75, 100)]
    return {"lanes": lanes, "ticks": ticks, "span": format_seconds(axis.seconds),
            "hidden": max(len(rows) - GANTT_LANES, 0)}
