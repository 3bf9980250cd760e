"""OpenTelemetry spans for ``workflow.trace``, when ``opentelemetry-api`` is installed.

Install the optional extra (``pip install durable-celery[otel]``) and configure a tracer provider
in the worker process (``opentelemetry.trace.set_tracer_provider(...)``, or the
``opentelemetry-instrument`` launcher). Without the package, or without a configured provider
(the API's default provider records nothing), a trace is a no-op.
"""

from __future__ import annotations

import json
import logging
from typing import Any

__all__ = ["TRACER_NAME", "record_span", "span_attributes"]

logger = logging.getLogger(__name__)

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


def record_span(name: str, attributes: dict[str, Any]) -> bool:
    """Start and end one span named ``name`` with ``attributes``.

    Returns:
        Whether OpenTelemetry was available (the span may still be dropped when no tracer
        provider is configured). Never raises: telemetry must not fail a workflow.
    """
    try:
        from opentelemetry import trace
    except ImportError:
        return False
    try:
        tracer = trace.get_tracer(TRACER_NAME)
        span = tracer.start_span(name, attributes=span_attributes(attributes))
        span.end()
    except Exception:  # a broken exporter must not break the step that already committed
        logger.exception("durable_celery: could not record trace span %s", name)
    return True
