"""Bulk actions of the workflow list: interrupt, cancel, resume, and retry failed runs from
their failed step.

Each is a Django admin action (so the list's own CSRF-protected POST carries the selection),
needs the ``operate_workflow`` permission, and first shows a confirmation page listing every
selected run and whether the action applies to it; only the confirming POST acts. Each run
acted on records the action in its history exactly as the single actions do
(:mod:`durable_celery.store.operations`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import ModelAdmin, helpers
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.template.response import TemplateResponse

from .admin_actions import InterruptForm, can_operate
from .admin_detail import execution_url
from .admin_format import STATUS_COLOURS, error_view
from .errors import DurableError
from .models import ExecutionStatus, WorkflowExecution
from .statuses import RESUMABLE_STATUSES
from .store import operations

__all__ = ["BULK_ACTIONS", "BulkAction", "RetryForm", "bulk_cancel", "bulk_interrupt",
           "bulk_resume", "bulk_retry", "run_bulk_action"]

#: Most runs one confirmation page lists by name (all selected runs are acted on).
LISTED = 500


class RetryForm(forms.Form):
    """Retrying takes no options."""


@dataclass(frozen=True)
class BulkAction:
    """One bulk action: what it is called, which runs it applies to, what it does to one."""

    name: str
    verb: str
    explanation: tuple[str, ...]
    form: type[forms.Form]
    applies: Callable[[WorkflowExecution], str]
    act: Callable[[WorkflowExecution, str, dict[str, Any]], str]


def _interrupt_applies(run: WorkflowExecution) -> str:
    return "" if run.is_active else f"is {run.status}: only an active run is interrupted"


def _interrupt(run: WorkflowExecution, user: str, options: dict[str, Any]) -> str:
    ids = operations.interrupt_as_operator(run.namespace, run.workflow_id, user,
                                           reason=options.get("reason") or None,
                                           descend=bool(options.get("descend")),
                                           run_id=run.run_id)
    return ", ".join(ids)


def _cancel_applies(run: WorkflowExecution) -> str:
    return "" if run.is_active else f"is {run.status}: only an active run is cancelled"


def _cancel(run: WorkflowExecution, user: str, options: dict[str, Any]) -> str:
    ids = operations.cancel_as_operator(run.namespace, run.workflow_id, user,
                                        reason=options.get("reason") or None,
                                        descend=bool(options.get("descend")),
                                        run_id=run.run_id)
    return ", ".join(ids) or f"{run.workflow_id} (already asked)"


def _resume_applies(run: WorkflowExecution) -> str:
    if run.status not in RESUMABLE_STATUSES:
        return f"is {run.status}: only an interrupted or failed run is resumed"
    if getattr(run, "latest_pk", run.pk) != run.pk:
        return "is not the latest run of its id: resume the latest one"
    return ""


def _resume(run: WorkflowExecution, user: str, options: dict[str, Any]) -> str:
    report = operations.resume_as_operator(run.namespace, run.workflow_id, user,
                                           run_id=run.run_id)
    return run.workflow_id if report["resumed"] else f"{run.workflow_id} (nothing to do)"


def _retry_applies(run: WorkflowExecution) -> str:
    if run.status != ExecutionStatus.FAILED:
        return f"is {run.status}: only a failed run is retried"
    if getattr(run, "latest_pk", run.pk) != run.pk:
        return "is not the latest run of its id: retry the latest one"
    return ""


def _retry(run: WorkflowExecution, user: str, options: dict[str, Any]) -> str:
    done = operations.retry_execution(run.namespace, run.workflow_id, user, run_id=run.run_id)
    if done["mode"] == "activity":
        return f"{run.workflow_id} (from step {', '.join(map(str, done['events']))})"
    return f"{run.workflow_id} (new replay step)"


BULK_ACTIONS = {
    "interrupt": BulkAction(
        "interrupt", "Interrupted",
        ("Each active run ends as interrupted: its timers are cancelled, its open calls are "
         "marked cancelled and late results are ignored. This cannot be undone.",
         "Tick the box to interrupt every descendant of each run as well."),
        InterruptForm, _interrupt_applies, _interrupt),
    "retry": BulkAction(
        "retry", "Retrying",
        ("Each failed run resumes from its failed step: failed activity calls run again with "
         "fresh attempts (or, when the workflow function itself failed, a new replay step "
         "runs it over its recorded history). Nothing recorded before is run again.",
         "Each run becomes running and its error is cleared."),
        RetryForm, _retry_applies, _retry),
    "cancel": BulkAction(
        "cancel", "Asked to cancel",
        ("Each active run is asked to cancel itself: the durable calls it waits on raise "
         "asyncio.CancelledError in its code, whose cleanup (finally: blocks) runs normally; "
         "running activities learn it at their next heartbeat. A run that handles the "
         "cancellation may still complete.",
         "Tick the box to ask every running descendant of each run as well."),
        InterruptForm, _cancel_applies, _cancel),
    "resume": BulkAction(
        "resume", "Resumed",
        ("Each interrupted or failed run continues from where it stopped: recorded outcomes "
         "stay, the calls that were open when it ended are issued again, and the failed "
         "activity calls of a failed run run again with fresh attempts.",),
        RetryForm, _resume_applies, _resume),
}


def _with_latest(queryset: QuerySet[WorkflowExecution]) -> QuerySet[WorkflowExecution]:
    latest = WorkflowExecution.objects.filter(namespace=OuterRef("namespace"),
                                              workflow_id=OuterRef("workflow_id"))
    return queryset.annotate(latest_pk=Subquery(latest.order_by("-id").values("pk")[:1]))


def run_bulk_action(admin: ModelAdmin, request: HttpRequest,
                    queryset: QuerySet[WorkflowExecution],
                    action: BulkAction) -> TemplateResponse | None:
    """Confirm (first POST) or perform (confirming POST) ``action`` on the selected runs.

    Returns:
        The confirmation page, or ``None`` once done (the list is shown again, with messages).
    """
    if not can_operate(request):  # the action's permission check already ran; be explicit
        messages.error(request, "Operating workflows needs the operate_workflow permission.")
        return None
    runs = list(_with_latest(queryset).defer("document", "args", "result")
                .order_by("-created_at", "-id"))
    rows: list[dict[str, Any]] = [
        {"run": run, "skip": action.applies(run), "url": execution_url(run.pk),
         "colour": STATUS_COLOURS.get(run.status, "#333"), "error": error_view(run.error)}
        for run in runs]
    applicable: list[WorkflowExecution] = [row["run"] for row in rows if not row["skip"]]
    form = action.form(request.POST if request.POST.get("post") == "yes" else None)
    if request.POST.get("post") != "yes" or not form.is_valid():
        return _confirm(admin, request, action, rows, applicable, form)
    user = str(request.user.get_username())
    done: list[str] = []
    for run in applicable:
        try:
            done.append(action.act(run, user, form.cleaned_data))
        except DurableError as error:
            messages.error(request, f"{run.workflow_id}: nothing was done: "
                                    f"{error.message or error}")
    skipped = len(rows) - len(applicable)
    if done:
        messages.success(request, f"{action.verb} {len(done)} workflow(s): {'; '.join(done)}.")
    if skipped:
        messages.warning(request, f"{skipped} selected run(s) were left alone (see the "
                                  f"confirmation page for why).")
    return None


def _confirm(admin: ModelAdmin, request: HttpRequest, action: BulkAction,
             rows: list[dict[str, Any]], applicable: list[WorkflowExecution],
             form: forms.Form) -> TemplateResponse:
    opts = admin.model._meta
    context = {
        **admin.admin_site.each_context(request),
        "opts": opts, "app_label": opts.app_label,
        "title": f"{action.name.capitalize()} {len(applicable)} workflow run(s)?",
        "action": action, "action_name": f"bulk_{action.name}", "rows": rows[:LISTED],
        "hidden": max(len(rows) - LISTED, 0), "applicable": len(applicable), "form": form,
        "selected": [str(row["run"].pk) for row in rows],
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request,
                            "admin/durable_celery/workflowexecution/bulk_confirm.html", context)


def bulk_interrupt(admin: ModelAdmin, request: HttpRequest,
                   queryset: QuerySet[WorkflowExecution]) -> TemplateResponse | None:
    """Admin action: interrupt the selected active runs (after confirmation)."""
    return run_bulk_action(admin, request, queryset, BULK_ACTIONS["interrupt"])


def bulk_cancel(admin: ModelAdmin, request: HttpRequest,
                queryset: QuerySet[WorkflowExecution]) -> TemplateResponse | None:
    """Admin action: ask the selected active runs to cancel themselves (after confirmation)."""
    return run_bulk_action(admin, request, queryset, BULK_ACTIONS["cancel"])


def bulk_resume(admin: ModelAdmin, request: HttpRequest,
                queryset: QuerySet[WorkflowExecution]) -> TemplateResponse | None:
    """Admin action: resume the selected interrupted or failed runs (after confirmation)."""
    return run_bulk_action(admin, request, queryset, BULK_ACTIONS["resume"])


def bulk_retry(admin: ModelAdmin, request: HttpRequest,
               queryset: QuerySet[WorkflowExecution]) -> TemplateResponse | None:
    """Admin action: retry the selected failed runs from their failed step (after
    confirmation)."""
    return run_bulk_action(admin, request, queryset, BULK_ACTIONS["retry"])
