"""What the admin's workflow page shows: the run, why it failed or retries, a timeline of its
calls with their attempts, the other runs of its id, lineage and open work.

Everything here only reads, with a fixed number of queries whatever the size of the history;
it works while every worker is down.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.apps import apps
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import urlencode

from .admin_format import (
    STATUS_COLOURS,
    error_view,
    format_duration,
    format_time,
    pretty_json,
)
from .admin_timeline import build_calls, build_gantt
from .models import ActivityAttempt, HistoryEvent, Timer, TimerKind, WorkflowExecution
from .store.inspect import runs_of, unconsumed_waits

__all__ = ["REFRESH_SECONDS", "STATUS_COLOURS", "detail_context", "execution_url",
           "format_duration", "pretty_json", "task_result_links"]

#: Seconds between reloads of the page of an active run.
REFRESH_SECONDS = 5


def execution_url(pk: int) -> str:
    """Admin page of the execution ``pk``."""
    return reverse("admin:durable_celery_workflowexecution_change", args=[pk])


def task_result_links(task_ids: list[str]) -> dict[str, str]:
    """Admin links to the django_celery_results rows of these Celery task ids (one query)."""
    if not task_ids or not apps.is_installed("django_celery_results"):
        return {}
    from django_celery_results.models import TaskResult

    found = dict(TaskResult.objects.filter(task_id__in=task_ids).values_list("task_id", "pk"))
    links: dict[str, str] = {}
    try:
        changelist = reverse("admin:django_celery_results_taskresult_changelist")
    except NoReverseMatch:
        return {}
    for task_id in task_ids:
        if task_id in found:
            links[task_id] = reverse("admin:django_celery_results_taskresult_change",
                                     args=[found[task_id]])
        else:
            links[task_id] = f"{changelist}?{urlencode({'task_id': task_id})}"
    return links


def _lineage(execution: WorkflowExecution) -> dict[str, Any]:
    ids = [i for i in (execution.parent_workflow_id, execution.origin_workflow_id) if i]
    known = dict(WorkflowExecution.objects.filter(namespace=execution.namespace,
                                                  workflow_id__in=ids)
                 .order_by("id").values_list("workflow_id", "pk")) if ids else {}

    def link(workflow_id: str | None) -> dict[str, Any] | None:
        if not workflow_id:
            return None
        pk = known.get(workflow_id)
        return {"workflow_id": workflow_id, "url": execution_url(pk) if pk else None}

    children = [
        {"child": child, "url": execution_url(child.pk),
         "colour": STATUS_COLOURS.get(child.status, "#333"),
         "duration": format_duration(child.created_at, child.completed_at),
         "error": error_view(child.error)}
        for child in WorkflowExecution.objects.filter(
            namespace=execution.namespace, parent_workflow_id=execution.workflow_id)
        .only("pk", "workflow_id", "workflow_name", "status", "created_at", "completed_at",
              "error")
        .order_by("created_at", "id")
    ]
    return {"parent": link(execution.parent_workflow_id),
            "origin": link(execution.origin_workflow_id), "children": children}


def _runs(execution: WorkflowExecution) -> dict[str, Any]:
    runs = runs_of(execution)
    listed: list[dict[str, Any]] = []
    for run in runs:
        if run.pk == execution.pk:
            relation = "this run"
        elif run.run_id == execution.previous_run_id:
            relation = "continued as this run"
        elif run.previous_run_id == execution.run_id:
            relation = "continued from this run"
        else:
            relation = ""
        listed.append({"run": run, "url": execution_url(run.pk), "relation": relation,
                       "current": run.pk == execution.pk,
                       "colour": STATUS_COLOURS.get(run.status, "#333"),
                       "duration": format_duration(run.created_at, run.completed_at),
                       "error": error_view(run.error)})
    previous = next((r for r in listed if r["run"].run_id == execution.previous_run_id), None)
    if previous is None and execution.previous_run_id:  # continued under another id
        found = WorkflowExecution.objects.filter(run_id=execution.previous_run_id) \
            .only("pk", "run_id").first()
        previous = {"run": found, "url": execution_url(found.pk)} if found else None
    return {"runs": listed if len(listed) > 1 else [],
            "is_latest_run": not runs or runs[0].pk == execution.pk,
            "latest_run_url": execution_url(runs[0].pk) if runs else "",
            "previous_run": previous}


def _hook_threads(execution: WorkflowExecution) -> list[dict[str, Any]]:
    """The execution's hook threads: which function, in which history dimension, how it ended."""
    return [
        {"thread": thread, "colour": STATUS_COLOURS.get(thread.status, "#333"),
         "duration": format_duration(thread.created_at, thread.completed_at),
         "error": error_view(thread.error), "tb": f"dc-tb-hook-{thread.dimension}"}
        for thread in execution.threads.order_by("created_at", "id")
    ]


def _retry_state(execution: WorkflowExecution, rows: list[HistoryEvent],
                 timers: list[Timer]) -> dict[str, Any]:
    """Whether the run is retrying after failures, and when the next try is due."""
    workflow_retry = next((t.due_at for t in timers if t.kind == TimerKind.WORKFLOW_RETRY), None)
    retry_times = [t.due_at for t in timers
                   if t.kind in (TimerKind.ACTIVITY_RETRY, TimerKind.WORKFLOW_RETRY)]
    retried_calls = [r for r in rows if r.kind == "activity" and r.status == "scheduled"
                     and r.attempts > 1]
    return {
        "retrying": execution.is_active and bool(retry_times or retried_calls),
        "workflow_retry_at": workflow_retry,
        "next_retry_at": min(retry_times) if retry_times else None,
        "retried_calls": retried_calls,
    }


def _open_state(row: HistoryEvent, timers: list[Timer]) -> str:
    """What an open call is doing now, in words."""
    if row.kind != "activity":
        return {"child": "child workflow running", "sleep": "sleeping"}.get(row.kind,
                                                                             "in flight")
    if row.worker_id is not None:
        worker = row.worker
        return f"running on {worker.name} pid {worker.pid}" if worker else "running"
    if any(t.event_id == row.pk and t.kind == TimerKind.ACTIVITY_RETRY for t in timers):
        return "waiting to retry"
    if row.dispatched_at is not None:
        return "queued, not picked up yet"
    return "waiting for the next step"


def detail_context(execution: WorkflowExecution, now: datetime | None = None) -> dict[str, Any]:
    """Everything the workflow page renders (a fixed number of queries)."""
    now = now or timezone.now()
    rows = list(HistoryEvent.objects.filter(execution=execution).select_related("worker")
                .order_by("created_at", "dimension", "seq", "id"))
    logged = list(ActivityAttempt.objects.filter(event__execution=execution)
                  .order_by("event_id", "number"))
    timers = list(Timer.objects.filter(execution=execution).select_related("event")
                  .order_by("due_at"))
    task_ids = {r.celery_task_id for r in rows if r.celery_task_id}
    task_ids |= {a.celery_task_id for a in logged if a.celery_task_id}
    links = task_result_links(sorted(task_ids))
    calls = build_calls(execution, rows, logged, timers, links)
    open_calls = [r for r in rows if r.status == "scheduled"]
    search = list(execution.search_attributes.order_by("key").values_list("key", "value"))
    workflow_failures = [c for c in calls if c["workflow_attempt"]]
    return {
        "execution": execution,
        "status_colour": STATUS_COLOURS.get(execution.status, "#333"),
        "duration": format_duration(execution.created_at, execution.completed_at or
                                    (now if execution.is_active else None)),
        "times": {"created": format_time(execution.created_at, millis=True),
                  "updated": format_time(execution.updated_at, millis=True),
                  "completed": format_time(execution.completed_at, millis=True)},
        "args_json": pretty_json(execution.args),
        "result_json": pretty_json(execution.result),
        "error": error_view(execution.error),
        "error_json": pretty_json(execution.error) if execution.error else "",
        "retry_policy_json": pretty_json(execution.retry_policy) if execution.retry_policy else "",
        "document_json": pretty_json(execution.document) if execution.document else "",
        "document_size": len(json.dumps(execution.document, default=str)),
        "search": search,
        "calls": [c for c in calls if not c["workflow_attempt"]],
        "call_count": len(rows) - len(workflow_failures),
        "workflow_failures": workflow_failures,
        "gantt": build_gantt(execution, rows, logged, now),
        "hook_threads": _hook_threads(execution),
        "waits": [r for r in open_calls if r.kind == "wait"],
        "scheduled": [{"row": r, "state": _open_state(r, timers)} for r in open_calls
                      if r.kind != "wait"],
        "timers": timers,
        "unconsumed": unconsumed_waits(execution, open_calls),
        "refresh_seconds": REFRESH_SECONDS if execution.is_active else 0,
        **_retry_state(execution, rows, timers),
        **_runs(execution),
        **_lineage(execution),
    }
