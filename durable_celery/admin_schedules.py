"""The schedule admin's pages: a schedule's page (timing, next runs, recent runs, log) and the
operator actions pause, unpause, trigger and delete.

Each action needs the ``durable_celery.operate_schedule`` permission, shows a confirmation page
saying what will happen (GET), and acts on a CSRF-protected POST. What was done is recorded in
the schedule's log with the user's name (see :mod:`durable_celery.store.schedule_ops`) and in the
admin's own action log; a trigger is also recorded on the run it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode

from .admin_detail import STATUS_COLOURS, execution_url, pretty_json
from .errors import DurableError
from .models import Schedule, WorkflowExecution
from .store import schedule_ops
from .store.schedules import SCHEDULE_SEARCH_KEY, timing_of

__all__ = ["OPERATE_SCHEDULE_PERMISSION", "NoteForm", "can_operate_schedules", "delete_view",
           "pause_view", "schedule_context", "schedule_url", "trigger_view", "unpause_view"]

OPERATE_SCHEDULE_PERMISSION = "durable_celery.operate_schedule"


def can_operate_schedules(request: HttpRequest) -> bool:
    """Whether the user may pause, unpause, trigger and delete schedules."""
    return bool(request.user.is_active and request.user.has_perm(OPERATE_SCHEDULE_PERMISSION))


def schedule_url(pk: int) -> str:
    """Admin page of the schedule ``pk``."""
    return reverse("admin:durable_celery_schedule_change", args=[pk])


class NoteForm(forms.Form):
    """An optional note saying why (kept on the schedule and in its log)."""

    note = forms.CharField(max_length=500, required=False, strip=True)


def schedule_context(schedule: Schedule) -> dict[str, Any]:
    """What the schedule page shows (reads only; two queries)."""
    timing = timing_of(schedule)
    runs = list(schedule.recent_runs or [])
    ids = [r["workflow_id"] for r in runs] + list(schedule.active_runs or [])
    found = {wid: (pk, status) for wid, pk, status in WorkflowExecution.objects.filter(
        namespace=schedule.namespace, workflow_id__in=ids).values_list(
        "workflow_id", "pk", "status")}
    recent = []
    for run in runs:
        pk, status = found.get(run["workflow_id"], (None, "deleted"))
        recent.append({"workflow_id": run["workflow_id"], "url": execution_url(pk) if pk else "",
                       "fire_at": datetime.fromisoformat(run["fire_at"]),
                       "triggered_by": run.get("triggered_by") or "",
                       "status": status, "colour": STATUS_COLOURS.get(status, "#333")})
    log = [{"at": datetime.fromisoformat(entry["at"]) if entry.get("at") else None,
            "event": entry.get("event", ""), "user": entry.get("user", ""),
            "details": pretty_json({k: v for k, v in entry.items()
                                    if k not in ("at", "event", "user")})}
           for entry in schedule.log or []]
    all_runs = reverse("admin:durable_celery_workflowexecution_changelist") + "?" + urlencode(
        {"q": f"{SCHEDULE_SEARCH_KEY}={schedule.schedule_id}"})
    return {
        "schedule": schedule, "timing": timing.text(), "description": timing.describe(),
        "next_runs": schedule_ops.next_runs(schedule), "recent_runs": recent, "log": log,
        "running": [wid for wid in schedule.active_runs or []
                    if found.get(wid, (None, ""))[1] in ("pending", "running")],
        "args_json": pretty_json(schedule.args), "search_json": pretty_json(schedule.search),
        "retry_json": pretty_json(schedule.retry_policy), "all_runs_url": all_runs,
    }


def _schedule(admin: ModelAdmin, request: HttpRequest, object_id: str) -> Schedule:
    if not can_operate_schedules(request):
        raise PermissionDenied("operating schedules needs the operate_schedule permission")
    schedule = admin.get_object(request, object_id)
    if schedule is None:
        raise Http404(f"no schedule {object_id!r}")
    return schedule


def _confirm(admin: ModelAdmin, request: HttpRequest, schedule: Schedule, action: str,
             explanation: list[str], form: forms.Form | None = None) -> TemplateResponse:
    opts = admin.model._meta
    context = {
        **admin.admin_site.each_context(request),
        "opts": opts, "app_label": opts.app_label, "schedule": schedule,
        "title": f"{action.capitalize()} schedule: {schedule.schedule_id}", "action": action,
        "explanation": explanation, "form": form, "detail_url": schedule_url(schedule.pk),
    }
    return TemplateResponse(request, "admin/durable_celery/schedule/confirm.html", context)


def _act(admin: ModelAdmin, request: HttpRequest, schedule: Schedule,
         operation: Callable[[], str]) -> HttpResponse:
    try:
        message = operation()
    except DurableError as error:
        messages.error(request, f"Nothing was done: {error.message or error}")
        return HttpResponseRedirect(schedule_url(schedule.pk))
    admin.log_change(request, schedule, message)
    messages.success(request, message)
    return HttpResponseRedirect(schedule_url(schedule.pk))


def _user(request: HttpRequest) -> str:
    return str(request.user.get_username())


def _pause_or_unpause(admin: ModelAdmin, request: HttpRequest, object_id: str,
                      paused: bool) -> HttpResponse:
    schedule = _schedule(admin, request, object_id)
    action = "pause" if paused else "unpause"
    if schedule.paused == paused:
        messages.error(request, f"Schedule is already {action}d; nothing was done.")
        return HttpResponseRedirect(schedule_url(schedule.pk))
    explanation = (
        ["No run is started until the schedule is unpaused; fires meanwhile are not made up.",
         "Runs already started go on."] if paused else
        ["The schedule fires again from its first fire time after now; the fires it missed "
         "while paused are not made up."])
    form = NoteForm(request.POST if request.method == "POST" else None)
    if request.method != "POST" or not form.is_valid():
        return _confirm(admin, request, schedule, action, explanation, form)

    def act() -> str:
        schedule_ops.set_paused(schedule.namespace, schedule.schedule_id, paused,
                                user=_user(request), note=form.cleaned_data["note"] or None)
        return f"Schedule {schedule.schedule_id} {action}d."

    return _act(admin, request, schedule, act)


def pause_view(admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Pause a schedule (with an optional note)."""
    return _pause_or_unpause(admin, request, object_id, True)


def unpause_view(admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Unpause a schedule (with an optional note)."""
    return _pause_or_unpause(admin, request, object_id, False)


def trigger_view(admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Start one run of a schedule now."""
    schedule = _schedule(admin, request, object_id)
    explanation = [
        f"One run of {schedule.workflow_name} starts now, named after the current second, "
        f"whatever the overlap policy ({schedule.overlap}) and even while paused.",
        "The run's history records that you triggered it.",
    ]
    if request.method != "POST":
        return _confirm(admin, request, schedule, "trigger", explanation)

    def act() -> str:
        workflow_id = schedule_ops.trigger_schedule(schedule.namespace, schedule.schedule_id,
                                                    user=_user(request))
        return f"Schedule {schedule.schedule_id} triggered: run {workflow_id}."

    return _act(admin, request, schedule, act)


def delete_view(admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Delete a schedule (its runs go on)."""
    schedule = _schedule(admin, request, object_id)
    explanation = [
        "The schedule is deleted with its log: it never fires again. This cannot be undone.",
        f"Its runs stay and go on ({len(schedule.active_runs or [])} may still be running).",
    ]
    if request.method != "POST":
        return _confirm(admin, request, schedule, "delete", explanation)
    try:
        with transaction.atomic():
            admin.log_deletions(request, Schedule.objects.filter(pk=schedule.pk))
            schedule_ops.delete_schedule(schedule.namespace, schedule.schedule_id,
                                         user=_user(request))
    except DurableError as error:
        messages.error(request, f"Nothing was done: {error.message or error}")
        return HttpResponseRedirect(schedule_url(schedule.pk))
    messages.success(request, f"Schedule {schedule.schedule_id} deleted.")
    return HttpResponseRedirect(reverse("admin:durable_celery_schedule_changelist"))
