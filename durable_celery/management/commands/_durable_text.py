"""What ``manage.py durable`` prints: tables, a run's description with its failures and
tracebacks, its history with times and durations, and the workers and queues report.

(A leading underscore keeps Django from taking this module for a command.)
"""

from __future__ import annotations

import json
from typing import Any

from django.utils import timezone

from ...admin_format import error_view, format_duration, format_seconds, format_time
from ...models import ActivityAttempt, WorkflowExecution
from ...store.executions import describe_execution
from ...store.failures import RETRIES_DIMENSION
from ...store.inspect import queue_overview, worker_overview
from ...store.workers import live_workers

__all__ = ["describe_lines", "failures_of", "history_table", "table", "workers_report",
           "workers_text"]

HISTORY_COLUMNS = ("seq", "dimension", "kind", "name", "status", "attempts", "created",
                   "completed", "duration", "outcome")


def table(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    """Rows as aligned text columns; ``(none)`` for no rows."""
    if not rows:
        return "(none)"
    cells = [[str(row.get(c, "") if row.get(c) is not None else "") for c in columns]
             for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
              for r in cells]
    return "\n".join(lines)


def _text(value: Any) -> str:
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)


def failures_of(execution: WorkflowExecution) -> list[dict[str, Any]]:
    """Failed and retrying calls of a run, each with its failed attempts (two queries)."""
    rows = list(execution.history.filter(error__isnull=False).order_by("dimension", "seq"))
    logged: dict[int, list[ActivityAttempt]] = {}
    for attempt in ActivityAttempt.objects.filter(event__in=[r.pk for r in rows]) \
            .order_by("event_id", "number"):
        logged.setdefault(attempt.event_id, []).append(attempt)
    return [{
        "seq": row.seq, "dimension": row.dimension, "kind": row.kind, "name": row.name,
        "status": row.status, "attempts": row.attempts, "error": row.error,
        "at": row.completed_at or row.created_at,
        "attempt_log": [{"number": a.number, "outcome": a.outcome, "worker": a.worker_name,
                         "started_at": a.started_at, "finished_at": a.finished_at,
                         "retry_delay": a.retry_delay, "error": a.error}
                        for a in logged.get(row.pk, [])],
    } for row in rows]


def describe_lines(execution: WorkflowExecution, *, tracebacks: bool = True) -> list[str]:
    """A run as text: its fields, its error with the traceback, and every failure."""
    info = describe_execution(execution)
    now = timezone.now()
    lines = []
    for key, value in info.items():
        if key == "error":
            continue
        if key.endswith("_at"):
            value = format_time(value, millis=True) if value else "—"
        lines.append(f"{key:<20} {_text(value)}")
    lines.append(f"{'duration':<20} " + (format_duration(
        execution.created_at, execution.completed_at or now) or "—")
        + (" (so far)" if execution.is_active else ""))
    error = error_view(execution.error)
    if error:
        lines.append(f"{'error':<20} " + error.lines(with_traceback=False)[0])
        if tracebacks and error.traceback:
            lines += ["  " + line for line in error.traceback.rstrip().splitlines()]
    failures = failures_of(execution)
    if failures:
        lines += ["", f"failures ({len(failures)}):"]
    for failure in failures:
        what = ("workflow function try" if failure["dimension"] == RETRIES_DIMENSION
                else f"#{failure['seq']} {failure['kind']} {failure['name']}")
        where = f" [{failure['dimension']}]" if failure["dimension"] not in ("",
                                                                            RETRIES_DIMENSION) \
            else ""
        lines.append(f"- {what}{where}: {failure['status']}, attempts {failure['attempts']}, "
                     f"at {format_time(failure['at'], millis=True)}")
        for attempt in failure["attempt_log"]:
            seen = error_view(attempt["error"])
            wait = (f", next after {format_seconds(attempt['retry_delay'])}"
                    if attempt["retry_delay"] is not None else "")
            lines.append(f"    attempt {attempt['number']} {attempt['outcome']} on "
                         f"{attempt['worker'] or '?'} "
                         f"({format_duration(attempt['started_at'], attempt['finished_at'])}"
                         f"{wait})" + (f": {seen.lines(with_traceback=False)[0]}" if seen
                                       else ""))
            if tracebacks and seen and seen.traceback:
                lines += ["      " + line for line in seen.traceback.rstrip().splitlines()]
        seen = error_view(failure["error"])
        if seen and not failure["attempt_log"]:
            lines += ["    " + line for line in seen.lines(with_traceback=tracebacks)]
    return lines


def history_table(execution: WorkflowExecution) -> str:
    """The run's history with times (to the millisecond) and durations."""
    rows = []
    for row in execution.history.order_by("dimension", "seq"):
        error = error_view(row.error) if row.status != "completed" else None
        rows.append({
            "seq": row.seq, "dimension": row.dimension, "kind": row.kind, "name": row.name,
            "status": row.status, "attempts": row.attempts if row.kind == "activity" else "",
            "created": format_time(row.created_at, date=False, millis=True),
            "completed": format_time(row.completed_at, date=False, millis=True)
            if row.completed_at else "—",
            "duration": format_duration(row.created_at, row.completed_at)
            or ("running" if row.status == "scheduled" else ""),
            "outcome": error.headline[:80] if error else
            (json.dumps(row.result, default=str)[:60] if row.status == "completed" else ""),
        })
    return table(HISTORY_COLUMNS, rows)


def workers_report() -> dict[str, Any]:
    """Live workers and queues, as JSON-ready values."""
    live = list(live_workers())
    workers = worker_overview(workers=live)
    queues = queue_overview(workers=live)
    return {
        "workers": [{
            "name": s.worker.name, "hostname": s.worker.hostname, "pid": s.worker.pid,
            "pool": s.worker.pool, "version": s.worker.version, "queues": s.worker.queues,
            "started_at": s.worker.started_at, "heartbeat_at": s.worker.heartbeat_at,
            "heartbeat_age": round(s.heartbeat_age, 1),
            "processes": [p.pid for p in s.processes],
            "running_attempts": [{"workflow_id": a["execution__workflow_id"], "seq": a["seq"],
                                  "activity": a["name"], "attempt": a["attempts"]}
                                 for a in s.attempts],
            "step_claims": [c["workflow_id"] for c in s.steps],
        } for s in workers],
        "queues": [{
            "queue": q.name, "consumers": q.consumers, "steps_waiting": q.steps_waiting,
            "steps_running": q.steps_running, "attempts_waiting": q.attempts_waiting,
            "attempts_running": q.attempts_running, "attempts_retry_wait": q.attempts_retry_wait,
            "outbox": q.outbox,
        } for q in queues],
    }


def workers_text(report: dict[str, Any]) -> str:
    """:func:`workers_report` as two tables."""
    workers = [{**w, "queues": ",".join(w["queues"]), "heartbeat": f"{w['heartbeat_age']}s ago",
                "processes": ",".join(map(str, w["processes"])) or "—",
                "running": len(w["running_attempts"]), "steps": len(w["step_claims"])}
               for w in report["workers"]]
    queues = [{**q, "consumers": ",".join(q["consumers"]) or "NO LIVE WORKER"}
              for q in report["queues"]]
    return "\n".join([
        f"live workers ({len(workers)}):",
        table(("name", "hostname", "pid", "pool", "queues", "heartbeat", "processes",
               "running", "steps"), workers),
        "", f"queues ({len(queues)}):",
        table(("queue", "consumers", "steps_waiting", "steps_running", "attempts_waiting",
               "attempts_running", "attempts_retry_wait", "outbox"), queues),
    ])
