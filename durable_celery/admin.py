"""The Django admin of durable_celery: read-only views of what is stored, plus operator actions.

Runs are listed with a constant number of queries per page, with what failed, whether a run is
retrying and when its next retry is due, filters for failing and stuck runs, and bulk actions
(:mod:`durable_celery.admin_bulk`). The workflow page shows the run, its errors with their
tracebacks, a timeline of its calls and their attempts, the other runs of its id, lineage and
open work (:mod:`durable_celery.admin_detail`). Signal, interrupt, retry and re-run need the
``operate_workflow`` permission (see :mod:`durable_celery.admin_actions`). "Workers and queues"
lists live workers, what they hold, and every queue's backlog
(:mod:`durable_celery.admin_workers`). Schedules are listed with their timing, next run and
latest runs; pause, unpause, trigger and delete need the ``operate_schedule`` permission (see
:mod:`durable_celery.admin_schedules`). Nothing here needs a running worker.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, ExpressionWrapper, OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from . import admin_actions, admin_bulk, admin_schedules
from .admin_detail import detail_context, execution_url
from .admin_format import STATUS_COLOURS, error_view, format_duration, format_time
from .admin_workers import workers_context
from .models import (
    HistoryEvent,
    OutboxMessage,
    PendingSignal,
    Schedule,
    Timer,
    Worker,
    WorkflowExecution,
)
from .store import inspect
from .store.schedule_ops import next_runs
from .store.schedules import timing_of

__all__ = ["HealthFilter", "HistoryEventAdmin", "OutboxMessageAdmin", "PendingSignalAdmin",
           "ReadOnlyAdmin", "ScheduleAdmin", "TimerAdmin", "WorkerAdmin",
           "WorkflowExecutionAdmin"]


def _badge(status: str, colour: str | None = None) -> str:
    return format_html(
        '<span style="color:#fff;background:{};padding:1px 7px;border-radius:8px;'
        'font-size:11px;white-space:nowrap">{}</span>',
        colour or STATUS_COLOURS.get(status, "#333"), status)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewing only: no add, change or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Rows are written by the engine only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Rows are written by the engine only."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Rows are written by the engine only."""
        return False


class HealthFilter(admin.SimpleListFilter):
    """Failing, retrying and stuck runs (definitions in :mod:`durable_celery.store.inspect`)."""

    title = "health"
    parameter_name = "health"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """The three filters, with the stuck threshold spelled out."""
        minutes = inspect.stuck_after().total_seconds() / 60
        return [("failing", "failing (failed or retrying)"),
                ("retrying", "retrying after failures"),
                ("stuck", f"stuck (no progress for {minutes:g} min)")]

    def queryset(self, request: HttpRequest,
                 queryset: QuerySet[WorkflowExecution]) -> QuerySet[WorkflowExecution] | None:
        """Runs matching the chosen filter."""
        condition = {"failing": inspect.failing, "retrying": inspect.retrying,
                     "stuck": inspect.stuck}.get(self.value() or "")
        return queryset.filter(condition()) if condition else queryset


@admin.register(WorkflowExecution)
class WorkflowExecutionAdmin(ReadOnlyAdmin):
    """Executions: filterable list, rich workflow page, operator and bulk actions."""

    list_display = ("workflow_id", "workflow_name", "status_badge", "health", "next_retry",
                    "task_queue", "created", "completed", "duration", "parent_link")
    list_display_links = ("workflow_id",)
    list_filter = ("status", HealthFilter, "workflow_name", "task_queue", "namespace",
                   "created_at")
    search_fields = ("workflow_id", "=search_attributes__value")
    search_help_text = ("Workflow id (part of it), a search-field value (exact), "
                        "or key=value for one search field.")
    list_per_page = 100
    ordering = ("-created_at", "-id")
    actions = ["bulk_interrupt", "bulk_cancel", "bulk_resume", "bulk_retry"]
    show_full_result_count = False

    class Media:
        css = {"all": ("durable_celery/admin.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowExecution]:
        """Executions with their parent's primary key and their health annotated (no query per
        row)."""
        parents = WorkflowExecution.objects.filter(
            namespace=OuterRef("namespace"), workflow_id=OuterRef("parent_workflow_id"))
        queryset = super().get_queryset(request).defer("document", "args", "result").annotate(
            parent_pk=Subquery(parents.order_by("-id").values("pk")[:1]),
            is_stuck=ExpressionWrapper(inspect.stuck(), output_field=BooleanField()))
        return inspect.annotate_health(queryset)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Bulk actions need the ``operate_workflow`` permission."""
        return admin_actions.can_operate(request)

    @admin.action(description="Interrupt selected runs…", permissions=["operate"])
    def bulk_interrupt(self, request: HttpRequest,
                       queryset: QuerySet[WorkflowExecution]) -> HttpResponse | None:
        """Interrupt the selected active runs, after a confirmation page."""
        return admin_bulk.bulk_interrupt(self, request, queryset)

    @admin.action(description="Cancel selected runs (their cleanup code runs)…",
                  permissions=["operate"])
    def bulk_cancel(self, request: HttpRequest,
                    queryset: QuerySet[WorkflowExecution]) -> HttpResponse | None:
        """Ask the selected active runs to cancel themselves, after a confirmation page."""
        return admin_bulk.bulk_cancel(self, request, queryset)

    @admin.action(description="Resume selected interrupted or failed runs…",
                  permissions=["operate"])
    def bulk_resume(self, request: HttpRequest,
                    queryset: QuerySet[WorkflowExecution]) -> HttpResponse | None:
        """Resume the selected interrupted or failed runs, after a confirmation page."""
        return admin_bulk.bulk_resume(self, request, queryset)

    @admin.action(description="Retry selected failed runs from their failed step…",
                  permissions=["operate"])
    def bulk_retry(self, request: HttpRequest,
                   queryset: QuerySet[WorkflowExecution]) -> HttpResponse | None:
        """Retry the selected failed runs, after a confirmation page."""
        return admin_bulk.bulk_retry(self, request, queryset)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[WorkflowExecution],
                           search_term: str) -> tuple[QuerySet[WorkflowExecution], bool]:
        """``key=value`` searches one search field; anything else the default fields."""
        key, sep, value = search_term.partition("=")
        if sep and key.strip() and " " not in key.strip():
            return queryset.filter(search_attributes__key=key.strip(),
                                   search_attributes__value=value.strip()), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: WorkflowExecution) -> str:
        """The status, coloured."""
        return _badge(obj.status)

    @admin.display(description="error / retrying")
    def health(self, obj: WorkflowExecution) -> str:
        """What failed: the error of a failed run, the failing call of a run that retries, or
        "stuck" for an active run without progress."""
        error = None
        where = ""
        if obj.status == "interrupted":
            reason = str((obj.error or {}).get("message") or "")
            return format_html('<span class="dc-health dc-muted">{}</span>', reason[:90])
        if obj.status == "failed":
            badge, error = "", error_view(obj.error)
        elif obj.is_active and getattr(obj, "is_retrying", False):
            badge = _badge("retrying")
            call_name, call_error = getattr(obj, "call_name", None), getattr(obj, "call_error",
                                                                              None)
            if call_name and call_error:
                error = error_view(call_error)
                where = f"{call_name} attempt {getattr(obj, 'call_attempts', '?')}"
            else:
                error = error_view(obj.error)
                where = f"workflow try {obj.attempt}" if obj.attempt > 1 else ""
        elif obj.is_active and getattr(obj, "is_stuck", False):
            badge, where = _badge("stuck", "#6d4c41"), "no progress"
        else:
            return ""
        text = ": ".join(part for part in (where, error.headline if error else "") if part)
        return format_html('<span class="dc-health">{} <span class="{}" title="{}">{}</span>'
                           '</span>', badge, "dc-error" if error else "dc-muted", text,
                           text if len(text) <= 90 else text[:89] + "…")

    @admin.display(description="next retry", ordering="next_retry_at")
    def next_retry(self, obj: WorkflowExecution) -> str:
        """When the earliest pending retry is due."""
        moment = getattr(obj, "next_retry_at", None)
        if not moment or not obj.is_active:
            return ""
        return format_html('<span class="dc-nowrap">{}</span>', format_time(moment))

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: WorkflowExecution) -> str:
        """Creation time, to the second."""
        return format_html('<span class="dc-nowrap">{}</span>', format_time(obj.created_at))

    @admin.display(description="completed", ordering="completed_at")
    def completed(self, obj: WorkflowExecution) -> str:
        """Completion time, to the second."""
        if obj.completed_at is None:
            return "—"
        return format_html('<span class="dc-nowrap">{}</span>', format_time(obj.completed_at))

    @admin.display(description="duration")
    def duration(self, obj: WorkflowExecution) -> str:
        """Creation to completion."""
        return format_duration(obj.created_at, obj.completed_at)

    @admin.display(description="parent", ordering="parent_workflow_id")
    def parent_link(self, obj: WorkflowExecution) -> str:
        """Link to the parent execution's page, when it is stored."""
        if not obj.parent_workflow_id:
            return "—"
        pk = getattr(obj, "parent_pk", None)
        if pk is None:
            return obj.parent_workflow_id
        return format_html('<a href="{}">{}</a>', execution_url(pk), obj.parent_workflow_id)

    def get_urls(self) -> list[URLPattern]:
        """Operator action pages before the default ones."""
        wrap = self.admin_site.admin_view

        def view(function: Any) -> Any:
            return wrap(lambda request, *args, **kwargs: function(self, request, *args,
                                                                  **kwargs))

        custom = [
            path("<path:object_id>/signal/", view(admin_actions.signal_view),
                 name="durable_celery_workflowexecution_signal"),
            path("<path:object_id>/interrupt/", view(admin_actions.interrupt_view),
                 name="durable_celery_workflowexecution_interrupt"),
            path("<path:object_id>/cancel/", view(admin_actions.cancel_view),
                 name="durable_celery_workflowexecution_cancel"),
            path("<path:object_id>/resume/", view(admin_actions.resume_view),
                 name="durable_celery_workflowexecution_resume"),
            path("<path:object_id>/retry/", view(admin_actions.retry_view),
                 name="durable_celery_workflowexecution_retry"),
            path("<path:object_id>/rerun/<int:event_id>/", view(admin_actions.rerun_view),
                 name="durable_celery_workflowexecution_rerun"),
        ]
        return custom + super().get_urls()

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The workflow page (read-only; actions are separate pages)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        execution = self.get_object(request, object_id)
        if execution is None:
            raise Http404(f"no workflow execution {object_id!r}")
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "opts": opts, "app_label": opts.app_label, "original": execution,
            "title": f"Workflow {execution.workflow_id}",
            "can_operate": admin_actions.can_operate(request),
            **detail_context(execution),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/durable_celery/workflowexecution/detail.html",
                                context)


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    """Workers and queues: one page (the list) with live workers, what they hold, and every
    queue's backlog. Whoever may view workflows may view it."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Viewing workers or viewing workflows is enough."""
        return super().has_view_permission(request, obj) or bool(
            request.user.is_active and request.user.has_perm(
                "durable_celery.view_workflowexecution"))

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The workers and queues page."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "opts": opts, "app_label": opts.app_label, "title": "Workers and queues",
            **workers_context(timezone.now()),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/durable_celery/worker/overview.html", context)


@admin.register(HistoryEvent)
class HistoryEventAdmin(ReadOnlyAdmin):
    """History rows across executions."""

    list_display = ("execution_link", "dimension", "seq", "kind", "name", "status_badge",
                    "attempts", "created_at", "completed_at")
    list_filter = ("kind", "status")
    search_fields = ("=execution__workflow_id", "name")
    list_select_related = ("execution",)
    list_per_page = 100
    show_full_result_count = False

    @admin.display(description="workflow", ordering="execution__workflow_id")
    def execution_link(self, obj: HistoryEvent) -> str:
        """Link to the execution's workflow page."""
        return format_html('<a href="{}">{}</a>', execution_url(obj.execution_id),
                           obj.execution.workflow_id)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: HistoryEvent) -> str:
        """The status, coloured."""
        return _badge(obj.status)


@admin.register(Timer)
class TimerAdmin(ReadOnlyAdmin):
    """Stored wake-ups."""

    list_display = ("execution_link", "kind", "due_at", "created_at")
    list_filter = ("kind",)
    list_select_related = ("execution",)
    search_fields = ("=execution__workflow_id",)

    @admin.display(description="workflow")
    def execution_link(self, obj: Timer) -> str:
        """Link to the execution's workflow page."""
        return format_html('<a href="{}">{}</a>', execution_url(obj.execution_id),
                           obj.execution.workflow_id)


@admin.register(PendingSignal)
class PendingSignalAdmin(ReadOnlyAdmin):
    """Signals kept until a ``wait_for`` takes them."""

    list_display = ("signal_id", "namespace", "created_at")
    list_filter = ("namespace",)
    search_fields = ("signal_id",)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    """Messages decided but not yet confirmed sent."""

    list_display = ("task_name", "queue", "publish_attempts", "created_at")
    list_filter = ("task_name", "queue")


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyAdmin):
    """Schedules: list with timing and next run, a page with runs and log, operator actions."""

    list_display = ("schedule_id", "workflow_name", "timing", "paused_badge", "next_run",
                    "recent_runs_links", "runs_started", "fires_skipped", "namespace")
    list_display_links = ("schedule_id",)
    list_filter = ("paused", "overlap", "namespace", "workflow_name")
    search_fields = ("schedule_id", "workflow_name")
    list_per_page = 100
    actions = None
    show_full_result_count = False

    @admin.display(description="timing")
    def timing(self, obj: Schedule) -> str:
        """The cron expression or interval, and what it means."""
        timing = timing_of(obj)
        return format_html('<code style="white-space:nowrap">{}</code><br>'
                           '<span class="dc-muted">{}</span>', timing.text(),
                           timing.describe())

    @admin.display(description="state", ordering="paused")
    def paused_badge(self, obj: Schedule) -> str:
        """Paused or active, coloured."""
        return format_html(
            '<span style="color:#fff;background:{};padding:1px 7px;border-radius:8px;'
            'font-size:11px" title="{}">{}</span>', "#b26a00" if obj.paused else "#2e7d32",
            obj.note, "paused" if obj.paused else "active")

    @admin.display(description="next run (UTC)", ordering="next_fire_at")
    def next_run(self, obj: Schedule) -> str:
        """The next fire time, or a dash while paused."""
        upcoming = next_runs(obj, count=1)
        return f"{upcoming[0]:%Y-%m-%d %H:%M:%S}" if upcoming else "—"

    @admin.display(description="recent runs")
    def recent_runs_links(self, obj: Schedule) -> str:
        """Links to the workflow pages of the three latest runs (no query per row)."""
        runs = [r for r in (obj.recent_runs or [])[:3] if r.get("pk")]
        if not runs:
            return "—"
        return format_html_join(
            mark_safe("<br>"), '<a href="{}">{}</a>',
            ((execution_url(r["pk"]), r["workflow_id"]) for r in runs))

    def get_urls(self) -> list[URLPattern]:
        """Operator action pages before the default ones."""
        wrap = self.admin_site.admin_view

        def view(function: Any) -> Any:
            return wrap(lambda request, *args, **kwargs: function(self, request, *args,
                                                                  **kwargs))

        custom = [
            path(f"<path:object_id>/{action}/", view(getattr(admin_schedules, f"{action}_view")),
                 name=f"durable_celery_schedule_{action}")
            for action in ("pause", "unpause", "trigger", "delete")
        ]
        return custom + super().get_urls()

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The schedule page (read-only; actions are separate pages)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        schedule = self.get_object(request, object_id)
        if schedule is None:
            raise Http404(f"no schedule {object_id!r}")
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "opts": opts, "app_label": opts.app_label, "original": schedule,
            "title": f"Schedule {schedule.schedule_id}",
            "can_operate": admin_schedules.can_operate_schedules(request),
            **admin_schedules.schedule_context(schedule),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/durable_celery/schedule/detail.html", context)
