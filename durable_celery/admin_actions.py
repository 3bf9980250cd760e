"""Operator actions of the workflow admin: signal, interrupt, retry, re-run an activity.

Each action needs the ``durable_celery.operate_workflow`` permission, shows a confirmation page
saying what will happen (GET), and acts on a CSRF-protected POST. What was done is recorded in
the execution's history (see :mod:`durable_celery.store.operations`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from .admin_detail import execution_url, pretty_json
from .errors import DurableError
from .models import ExecutionStatus, HistoryEvent, HistoryStatus, WorkflowExecution
from .serialization import json_roundtrip
from .statuses import RESUMABLE_STATUSES
from .store import operations

__all__ = ["OPERATE_PERMISSION", "InterruptForm", "SignalForm", "can_operate", "cancel_view",
           "interrupt_view", "rerun_view", "resume_view", "retry_view", "signal_view"]

OPERATE_PERMISSION = "durable_celery.operate_workflow"


def can_operate(request: HttpRequest) -> bool:
    """Whether the user may signal, interrupt and retry workflows."""
    return bool(request.user.is_active and request.user.has_perm(OPERATE_PERMISSION))


class SignalForm(forms.Form):
    """A signal id and a JSON payload, validated before anything is sent."""

    signal_id = forms.CharField(max_length=255, strip=True)
    payload = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60, "class": "vLargeTextField"}),
        initial="null", help_text="JSON: an object, list, string, number, true/false or null.")

    def clean_payload(self) -> Any:
        """Parse the payload as JSON.

        Raises:
            ValidationError: It is not valid JSON.
        """
        text = self.cleaned_data["payload"]
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"The payload is not valid JSON: {exc}") from None
        try:
            return json_roundtrip(value, where="the signal payload")
        except TypeError as exc:
            raise forms.ValidationError(str(exc)) from None


class InterruptForm(forms.Form):
    """An optional reason, and whether descendants are interrupted too."""

    reason = forms.CharField(max_length=500, required=False, strip=True)
    descend = forms.BooleanField(required=False, label="Also interrupt every descendant")


def _execution(admin: ModelAdmin, request: HttpRequest, object_id: str) -> WorkflowExecution:
    if not can_operate(request):
        raise PermissionDenied("operating workflows needs the operate_workflow permission")
    execution = admin.get_object(request, object_id)
    if execution is None:
        raise Http404(f"no workflow execution {object_id!r}")
    return execution


def _render(admin: ModelAdmin, request: HttpRequest, execution: WorkflowExecution, action: str,
            explanation: list[str], form: forms.Form | None = None,
            **extra: Any) -> TemplateResponse:
    opts = admin.model._meta
    context = {
        **admin.admin_site.each_context(request),
        "opts": opts, "app_label": opts.app_label, "execution": execution,
        "title": f"{action.capitalize()}: {execution.workflow_id}", "action": action,
        "explanation": explanation, "form": form, "detail_url": execution_url(execution.pk),
        **extra,
    }
    return TemplateResponse(request, "admin/durable_celery/workflowexecution/confirm.html",
                            context)


def _run(request: HttpRequest, execution: WorkflowExecution,
         operation: Callable[[], str]) -> HttpResponse:
    try:
        messages.success(request, operation())
    except DurableError as error:
        messages.error(request, f"Nothing was done: {error.message or error}")
    return HttpResponseRedirect(execution_url(execution.pk))


def _user(request: HttpRequest) -> str:
    return str(request.user.get_username())


def _stop_view(admin: ModelAdmin, request: HttpRequest, execution: WorkflowExecution,
               action: str, explanation: list[str],
               stop: Callable[[dict[str, Any]], str]) -> HttpResponse:
    """Interrupt or cancel an active run: confirm with a reason and ``descend``, then ``stop``
    with the form's data."""
    if not execution.is_active:
        messages.error(request, f"Workflow is {execution.status}; nothing to {action}.")
        return HttpResponseRedirect(execution_url(execution.pk))
    if request.method != "POST":
        return _render(admin, request, execution, action, explanation, InterruptForm())
    form = InterruptForm(request.POST)
    if not form.is_valid():
        return _render(admin, request, execution, action, explanation, form)
    return _run(request, execution, lambda: stop(form.cleaned_data))


def signal_view(admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Send a signal to the namespace of a running workflow (prefilled with what it waits on)."""
    execution = _execution(admin, request, object_id)
    waits = list(HistoryEvent.objects.filter(execution=execution, kind="wait",
                                             status=HistoryStatus.SCHEDULED)
                 .order_by("created_at").values_list("name", flat=True))
    explanation = [
        f"The payload is delivered to every workflow thread in namespace "
        f"“{execution.namespace}” now waiting on the signal id (not only this workflow).",
        "If none waits, the signal is kept until a wait_for on that id takes it.",
        f"This workflow waits on: {', '.join(waits) if waits else 'nothing right now'}.",
    ]
    if not execution.is_active:
        messages.error(request, f"Workflow is {execution.status}; no signal was sent.")
        return HttpResponseRedirect(execution_url(execution.pk))
    if request.method != "POST":
        form = SignalForm(initial={"signal_id": waits[0] if waits else "", "payload": "null"})
        return _render(admin, request, execution, "signal", explanation, form, waits=waits)
    form = SignalForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The signal was not sent: correct the errors below.")
        return _render(admin, request, execution, "signal", explanation, form, waits=waits)
    signal_id, payload = form.cleaned_data["signal_id"], form.cleaned_data["payload"]

    def act() -> str:
        woken = operations.signal_as_operator(execution.namespace, signal_id, payload,
                                              _user(request), workflow_id=execution.workflow_id)
        if woken:
            return f"Signal “{signal_id}” delivered to {woken} waiting workflow thread(s)."
        return f"Signal “{signal_id}” stored: nobody waits for it yet."

    return _run(request, execution, act)


def interrupt_view(admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Interrupt a running workflow (optionally with its descendants)."""
    execution = _execution(admin, request, object_id)
    children = WorkflowExecution.objects.filter(
        namespace=execution.namespace, parent_workflow_id=execution.workflow_id).active().count()
    explanation = [
        "The workflow ends as interrupted: its timers are cancelled, its open calls are marked "
        "cancelled and late results are ignored. This cannot be undone.",
        f"It has {children} running child workflow(s); tick the box to interrupt every "
        f"descendant as well.",
    ]

    def act(data: dict[str, Any]) -> str:
        ids = operations.interrupt_as_operator(
            execution.namespace, execution.workflow_id, _user(request),
            reason=data["reason"] or None, descend=data["descend"], run_id=execution.run_id)
        return f"Interrupted {len(ids)} workflow(s): {', '.join(ids)}."

    return _stop_view(admin, request, execution, "interrupt", explanation, act)


def cancel_view(admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Ask a running workflow to cancel itself (optionally with its descendants)."""
    execution = _execution(admin, request, object_id)
    explanation = [
        "The workflow is asked to cancel itself: the durable calls it waits on raise "
        "asyncio.CancelledError in its code, and its cleanup (finally: blocks, which may call "
        "activities) runs normally; running activities learn it at their next heartbeat.",
        "If its code lets the cancellation propagate the workflow ends as interrupted; if it "
        "handles it, the workflow may still complete. Tick the box to ask every running "
        "descendant as well.",
    ]

    def act(data: dict[str, Any]) -> str:
        ids = operations.cancel_as_operator(
            execution.namespace, execution.workflow_id, _user(request),
            reason=data["reason"] or None, descend=data["descend"], run_id=execution.run_id)
        if not ids:
            return "Its cancellation had already been asked for."
        return f"Asked {len(ids)} workflow(s) to cancel: {', '.join(ids)}."

    return _stop_view(admin, request, execution, "cancel", explanation, act)


def resume_view(admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Continue an interrupted (or failed) run from where it stopped."""
    execution = _execution(admin, request, object_id)
    if execution.status not in RESUMABLE_STATUSES:
        messages.error(request, f"Workflow is {execution.status}; only an interrupted or "
                                f"failed run is resumed.")
        return HttpResponseRedirect(execution_url(execution.pk))
    explanation = [
        "The run continues from where it stopped: recorded outcomes stay, and the calls that "
        "were open when it ended are issued again (activities dispatched, timers re-armed at "
        "their original due time, waits reopened).",
        "The workflow becomes running and its error is cleared.",
    ]
    if request.method != "POST":
        return _render(admin, request, execution, "resume", explanation,
                       error_json=pretty_json(execution.error))

    def act() -> str:
        report = operations.resume_as_operator(execution.namespace, execution.workflow_id,
                                               _user(request), run_id=execution.run_id)
        reopened = len(report["reopened"]) + len(report["failed"])
        return f"Resumed: {reopened} call(s) issued again."

    return _run(request, execution, act)


def retry_view(admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Resume a failed workflow from its failed step."""
    execution = _execution(admin, request, object_id)
    if execution.status != ExecutionStatus.FAILED:
        messages.error(request, f"Workflow is {execution.status}; only a failed one is retried.")
        return HttpResponseRedirect(execution_url(execution.pk))
    rows = operations.failed_step_of(execution)
    if rows:
        what = ", ".join(f"#{r.seq} {r.name}" for r in rows)
        explanation = [f"The failed activity call(s) {what} run again with fresh attempts; "
                       f"everything recorded before them is kept and not run again.",
                       "The workflow becomes running and its error is cleared."]
    else:
        explanation = ["The workflow function itself failed: a new replay step runs it again "
                       "over its recorded history (nothing recorded is run again).",
                       "The workflow becomes running and its error is cleared."]
    if request.method != "POST":
        return _render(admin, request, execution, "retry", explanation,
                       error_json=pretty_json(execution.error))

    def act() -> str:
        done = operations.retry_execution(execution.namespace, execution.workflow_id,
                                          _user(request), run_id=execution.run_id)
        if done["mode"] == "activity":
            return f"Retrying from step(s) {', '.join(map(str, done['events']))}."
        return "Retrying: a new replay step was requested."

    return _run(request, execution, act)


def rerun_view(admin: ModelAdmin, request: HttpRequest, object_id: str,
               event_id: int) -> HttpResponse:
    """Run one permanently failed activity call of a failed workflow again."""
    execution = _execution(admin, request, object_id)
    row = HistoryEvent.objects.filter(pk=event_id, execution=execution).first()
    if row is None:
        raise Http404(f"no history row {event_id} in this workflow")
    if execution.status != ExecutionStatus.FAILED or row.kind != "activity" \
            or row.status != HistoryStatus.FAILED:
        messages.error(request, "Only a failed activity call of a failed workflow is re-run.")
        return HttpResponseRedirect(execution_url(execution.pk))
    explanation = [
        f"Activity call #{row.seq} “{row.name}” (dimension “{row.dimension}”) runs again with "
        f"fresh attempts; the workflow becomes running and continues with its new outcome.",
        "If the workflow had already handled this failure and went on, re-running it changes "
        "an outcome the workflow acted on: its replay may then take another path.",
    ]
    if request.method != "POST":
        return _render(admin, request, execution, "re-run activity", explanation,
                       error_json=pretty_json(row.error), row=row)

    def act() -> str:
        operations.rerun_activity(execution.namespace, execution.workflow_id, row.pk,
                                  _user(request), run_id=execution.run_id)
        return f"Activity #{row.seq} {row.name} dispatched again."

    return _run(request, execution, act)
