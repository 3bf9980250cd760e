"""``workflow.emit`` and ``workflow.trace``: telling the outside world what a workflow does.

Both act only when the replay step that makes the call commits (a rolled-back step emits
nothing). With ``once=True`` (the default) the call takes one position and acts on first run
only, so it happens exactly once per workflow position however often the workflow replays. With
``once=False`` it takes no position and acts on every replay that reaches it (progress
reporting).
"""

from __future__ import annotations

from typing import Any

from ..engine import ReplayContext, current_context
from ..errors import InvalidArgumentError
from ..serialization import json_roundtrip
from ._immediate import Immediate

__all__ = ["emit", "trace"]


def _act(ctx: ReplayContext, kind: str, name: str, args: dict[str, Any], once: bool) -> None:
    def perform(seq: int | None) -> bool:
        if ctx.port is not None:
            info = ctx.info
            ctx.port.perform(kind, "once" if once else "replay", {
                **args, "seq": seq, "dimension": info.workflow_dimension,
                "workflow_name": info.workflow_name})
        return True

    if once:
        ctx.record_now(kind, name, perform, args)
    elif not ctx.unwinding:
        perform(None)


def emit(events: dict[str, Any], once: bool = True) -> Immediate[bool]:
    """Publish each ``{topic: payload}`` entry to subscribers (``DurableClient.subscribe``).

    Events travel on the broker's topic exchange ``durable.events`` with the topic as routing
    key, after the step commits (through the outbox, so a broker outage delays them rather than
    losing them).

    Args:
        events: Topic (str, at most 255 characters) to JSON payload.
        once: ``True``: one position; published on first run only. ``False``: no position;
            published again by every replay that reaches the call.

    Returns:
        Awaitable of ``True``.
    """
    if not isinstance(events, dict) or not events:
        raise InvalidArgumentError(f"emit needs a non-empty dict of topic to payload, got "
                                   f"{events!r}")
    for topic in events:
        if not isinstance(topic, str) or not topic or len(topic) > 255:
            raise InvalidArgumentError(f"an emit topic is a non-empty str of at most 255 "
                                       f"characters, got {topic!r}")
    payloads = json_roundtrip(events, where="emitted events")
    _act(current_context(), "emit", ",".join(events)[:255], {"events": payloads}, once)
    return Immediate(True)


def trace(attributes: dict[str, Any], once: bool = True) -> Immediate[bool]:
    """Record an OpenTelemetry span carrying ``attributes`` and the workflow's identity.

    The span is made in the worker when the step commits, if ``opentelemetry-api`` is
    installed and a tracer provider is configured there; otherwise nothing happens (the call
    still takes its position).

    Args:
        attributes: Span attributes (JSON values; non-scalars are sent as JSON text).
        once: ``True``: one position; one span on first run. ``False``: no position; a span on
            every replay that reaches the call.

    Returns:
        Awaitable of ``True``.
    """
    if not isinstance(attributes, dict):
        raise InvalidArgumentError(f"trace needs a dict of attributes, got {attributes!r}")
    stored = json_roundtrip({str(k): v for k, v in attributes.items()},
                            where="trace attributes")
    _act(current_context(), "trace", "", {"attributes": stored}, once)
    return Immediate(True)
