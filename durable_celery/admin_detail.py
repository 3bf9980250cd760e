"""What the admin's workflow page shows: the execution, its timeline, lineage and open work.

Everything here only reads; it works while every worker is down.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.apps import apps
from django.urls import NoReverseMatch, reverse
from django.utils.http import urlencode

from .models import HistoryEvent, Timer, WorkflowExecution
from .store.operations import OPERATOR_DIMENSION

__all__ = ["detail_context", "execution_url", "format_duration", "pretty_json",
           "task_result_links"]

STATUS_COLOURS = {
    "pending": "#8a8a8a", "running": "#2f6fb3", "completed": "#2e7d32", "failed": "#c62828",
    "interrupted": "#b26a00", "scheduled": "#2f6fb3", "cancelled": "#8a8a8a",
}


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON text (for ``<pre>``; the template escapes it)."""
    try:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def format_duration(start: datetime | None, end: datetime | None) -> str:
    """``end - start`` as ``1h 2m 3s`` / ``4.56s`` / ``12ms``; empty when either is missing."""
    if start is None or end is None:
        return ""
    seconds = max((end - start).total_seconds(), 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "",
             f"{minutes}m" if minutes else "", f"{secs}s"]
    return " ".join(p for p in parts if p)


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


def _timeline(execution: WorkflowExecution) -> list[dict[str, Any]]:
    rows = list(HistoryEvent.objects.filter(execution=execution)
                .order_by("created_at", "dimension", "seq", "id"))
    links = task_result_links([r.celery_task_id for r in rows if r.celery_task_id])
    timeline = []
    for row in rows:
        timeline.append({
            "row": row,
            "operator": row.dimension == OPERATOR_DIMENSION,
            "user": (row.input or {}).get("user") if row.dimension == OPERATOR_DIMENSION else "",
            "colour": STATUS_COLOURS.get(row.status, "#333"),
            "duration": format_duration(row.created_at, row.completed_at),
            "input": pretty_json(row.input) if row.input else "",
            "result": pretty_json(row.result) if row.result is not None else "",
            "error": (row.error or {}).get("message", "") if row.error else "",
            "error_type": (row.error or {}).get("type", "") if row.error else "",
            "task_link": links.get(row.celery_task_id or ""),
            "rerunnable": (execution.status == "failed" and row.kind == "activity"
                           and row.status == "failed"),
        })
    return timeline


def _lineage(execution: WorkflowExecution) -> dict[str, Any]:
    ids = [i for i in (execution.parent_workflow_id, execution.origin_workflow_id) if i]
    known = dict(WorkflowExecution.objects.filter(namespace=execution.namespace,
                                                  workflow_id__in=ids)
                 .values_list("workflow_id", "pk")) if ids else {}

    def link(workflow_id: str | None) -> dict[str, Any] | None:
        if not workflow_id:
            return None
        pk = known.get(workflow_id)
        return {"workflow_id": workflow_id, "url": execution_url(pk) if pk else None}

    children = [
        {"child": child, "url": execution_url(child.pk),
         "colour": STATUS_COLOURS.get(child.status, "#333"),
         "duration": format_duration(child.created_at, child.completed_at)}
        for child in WorkflowExecution.objects.filter(
            namespace=execution.namespace, parent_workflow_id=execution.workflow_id)
        .only("pk", "workflow_id", "workflow_name", "status", "created_at", "completed_at")
        .order_by("created_at", "id")
    ]
    return {"parent": link(execution.parent_workflow_id),
            "origin": link(execution.origin_workflow_id), "children": children}


def _open_work(execution: WorkflowExecution) -> dict[str, Any]:
    timers = list(Timer.objects.filter(execution=execution).select_related("event")
                  .order_by("due_at"))
    waits = [
        {"signal_id": row.name, "since": row.created_at, "seq": row.seq,
         "dimension": row.dimension, "timeout": (row.input or {}).get("timeout")}
        for row in HistoryEvent.objects.filter(execution=execution, kind="wait",
                                               status="scheduled").order_by("created_at")
    ]
    running = list(HistoryEvent.objects.filter(
        execution=execution, status="scheduled").exclude(kind="wait").order_by("created_at"))
    return {"timers": timers, "waits": waits, "scheduled": running}


def _hook_threads(execution: WorkflowExecution) -> list[dict[str, Any]]:
    """The execution's hook threads: which function, in which history dimension, how it ended."""
    return [
        {"thread": thread, "colour": STATUS_COLOURS.get(thread.status, "#333"),
         "duration": format_duration(thread.created_at, thread.completed_at),
         "error": (thread.error or {}).get("message", "")}
        for thread in execution.threads.order_by("created_at", "id")
    ]


def detail_context(execution: WorkflowExecution) -> dict[str, Any]:
    """Everything the workflow page renders (a fixed number of queries)."""
    search = list(execution.search_attributes.order_by("key").values_list("key", "value"))
    return {
        "execution": execution,
        "status_colour": STATUS_COLOURS.get(execution.status, "#333"),
        "duration": format_duration(execution.created_at, execution.completed_at),
        "args_json": pretty_json(execution.args),
        "result_json": pretty_json(execution.result),
        "error_json": pretty_json(execution.error) if execution.error else "",
        "retry_policy_json": pretty_json(execution.retry_policy) if execution.retry_policy else "",
        "document_json": pretty_json(execution.document),
        "document_size": len(json.dumps(execution.document, default=str)),
        "search": search,
        "timeline": _timeline(execution),
        "hook_threads": _hook_threads(execution),
        **_lineage(execution),
        **_open_work(execution),
    }
