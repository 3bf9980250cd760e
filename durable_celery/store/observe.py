"""The step operations behind ``workflow.emit`` and ``workflow.trace``.

Both act only after the replay step commits, so a step that rolls back (a crash, a lost lock)
emits nothing and a committed ``once=True`` call is never repeated:

* ``emit`` stores one outbox row per event in the step's transaction; the outbox publishes it
  after commit to the topic exchange (see :mod:`durable_celery.transport.events`) and the sweeper
  re-sends rows a broker outage left unsent.
* ``trace`` records an OpenTelemetry span in ``transaction.on_commit``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..models import WorkflowExecution
from ..task_names import EMIT_MESSAGE
from ..telemetry import record_span
from .effects import StepEffects

__all__ = ["emit_operation", "event_body", "trace_operation"]


def event_body(execution: WorkflowExecution, topic: str, payload: Any,
               args: dict[str, Any]) -> dict[str, Any]:
    """What subscribers receive: the payload and where it came from."""
    return {
        "topic": topic, "payload": payload, "workflow_id": execution.workflow_id,
        "workflow_name": args.get("workflow_name") or execution.workflow_name,
        "namespace": execution.namespace, "dimension": args.get("dimension", ""),
        "seq": args.get("seq"),
    }


def emit_operation(execution: WorkflowExecution, effects: StepEffects, operation: str,
                   args: dict[str, Any]) -> bool:
    """Queue each event of ``args["events"]`` in the step's outbox batch."""
    for topic, payload in args["events"].items():
        effects.batch.add(EMIT_MESSAGE, topic, [event_body(execution, topic, payload, args)])
    return True


def trace_operation(execution: WorkflowExecution, effects: StepEffects, operation: str,
                    args: dict[str, Any]) -> bool:
    """Record one span once the step has committed."""
    attributes = {
        **args["attributes"],
        "durable.workflow_id": execution.workflow_id,
        "durable.workflow_name": args.get("workflow_name") or execution.workflow_name,
        "durable.namespace": execution.namespace,
        "durable.task_queue": execution.task_queue,
        "durable.dimension": args.get("dimension", ""),
        "durable.seq": args.get("seq"),
    }
    name = f"trace/{attributes['durable.workflow_name']}"
    effects.defer(lambda: transaction.on_commit(lambda: record_span(name, attributes)))
    return True
