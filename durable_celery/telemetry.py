"""OpenTelemetry spans, when ``opentelemetry-api`` is installed: one trace per workflow.

Every workflow has one trace whose id is derived from its namespace and id, so every process that
touches it — replay steps, activity attempts, ``workflow.trace`` calls — adds spans to the same
trace without passing context around: ``step/<workflow>`` for each replay step,
``activity/<name>`` for each activity attempt, ``trace/<workflow>`` for each ``workflow.trace``.

Install the optional extra (``pip install durable-celery[otel]``) and configure a tracer provider
in the worker process (``opentelemetry.trace.set_tracer_provider(...)``, or the
``opentelemetry-instrument`` launcher). Without the package, or without a configured provider
(the API's default provider records nothing), spans are no-ops. Telemetry never fails a workflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import trace as otel_trace
except ImportError:  # the optional extra is not installed
    otel_trace = None  # type: ignore[assignment]

__all__ = ["TRACER_NAME", "record_span", "span_attributes", "workflow_span", "workflow_trace_ids"]

logger = logging.getLogger(__name__)

#: What ``get_tracer_provider()`` returns while no tracer provider was set: spans go nowhere.
_DROPPING_PROVIDERS: tuple[type, ...] = () if otel_trace is None else (
    otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider)

#: Instrumentation scope of the spans durable_celery creates.
TRACER_NAME = "durable_celery"

_SCALARS = (str, bool, int, float)


def span_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry accepts scalars and lists of one scalar type; anything else becomes JSON
    text, and ``None`` values are left out."""
    clean: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, _SCALARS):
            clean[str(key)] = value
        elif (isinstance(value, list) and value and
              all(isinstance(v, _SCALARS) and type(v) is type(value[0]) for v in value)):
            clean[str(key)] = list(value)
        else:
            clean[str(key)] = json.dumps(value, sort_keys=True)
    return clean


def workflow_trace_ids(namespace: str, workflow_id: str) -> tuple[int, int]:
    """``(trace_id, root_span_id)`` of a workflow's trace: the same in every process."""
    digest = hashlib.sha256(f"{namespace}:{workflow_id}".encode()).hexdigest()
    return int(digest[:32], 16) or 1, int(digest[32:48], 16) or 1


def _workflow_context(namespace: str, workflow_id: str) -> Any:
    assert otel_trace is not None
    trace_id, span_id = workflow_trace_ids(namespace, workflow_id)
    root = otel_trace.NonRecordingSpan(otel_trace.SpanContext(
        trace_id=trace_id, span_id=span_id, is_remote=True,
        trace_flags=otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED)))
    return otel_trace.set_span_in_context(root)


@contextmanager
def workflow_span(name: str, namespace: str, workflow_id: str,
                  attributes: dict[str, Any]) -> Iterator[None]:
    """A span named ``name`` in the workflow's trace around the ``with`` block (nothing while
    no tracer provider is set: OpenTelemetry would drop the span, and building it cost about a
    tenth of a millisecond of every activity and step)."""
    if otel_trace is None or isinstance(otel_trace.get_tracer_provider(), _DROPPING_PROVIDERS):
        yield
        return
    try:
        tracer = otel_trace.get_tracer(TRACER_NAME)
        span = tracer.start_span(name, context=_workflow_context(namespace, workflow_id),
                                 attributes=span_attributes(
                                     {**attributes, "durable.workflow_id": workflow_id,
                                      "durable.namespace": namespace}))
    except Exception:  # telemetry must not fail the work it observes
        logger.exception("durable_celery: could not start span %s", name)
        yield
        return
    try:
        yield
    finally:
        try:
            span.end()
        except Exception:
            logger.exception("durable_celery: could not end span %s", name)


def record_span(name: str, attributes: dict[str, Any]) -> bool:
    """Start and end one span named ``name`` with ``attributes``, in the trace of the workflow
    named by ``attributes["durable.workflow_id"]`` / ``["durable.namespace"]`` when given.

    Returns:
        Whether OpenTelemetry was available (the span may still be dropped when no tracer
        provider is configured). Never raises: telemetry must not fail a workflow.
    """
    if otel_trace is None:
        return False
    workflow_id = attributes.get("durable.workflow_id")
    namespace = attributes.get("durable.namespace")
    try:
        tracer = otel_trace.get_tracer(TRACER_NAME)
        context = (_workflow_context(str(namespace), str(workflow_id))
                   if workflow_id and namespace else None)
        tracer.start_span(name, context=context,
                          attributes=span_attributes(attributes)).end()
    except Exception:  # a broken exporter must not break the step that already committed
        logger.exception("durable_celery: could not record trace span %s", name)
    return True
