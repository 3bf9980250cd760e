"""Interceptors: code that wraps every workflow run or every proxied activity call.

Both kinds are process-global (register them in a module your workers import, e.g. next to your
workflows) and run inside the workflow, on every replay, so they must be deterministic like
workflow code. First registered is outermost.

* A **workflow interceptor** has ``async execute(ctx, next)``: ``ctx`` is a dict of the context
  fields of ``workflow.get_context()`` (``workflow_id``, ``workflow_name``, ``task_queue``,
  ``namespace``, ``workflow_dimension``, ``replaying`` …); ``await next()`` runs the rest of the
  chain and the workflow function and returns its result. It may call durable functions before
  or after ``next()`` (they take positions like workflow code) and must let control-flow errors
  (``workflow.did_interrupt(error)``) propagate.
* An **activity interceptor** has ``async execute(activity_ctx, workflow_ctx, next)``:
  ``activity_ctx`` is a dict ``{"activity_name", "args", "options"}`` with ``options`` holding
  ``task_queue``, ``retry_policy`` (a ``RetryPolicy`` or a dict of its fields),
  ``start_to_close_timeout`` and ``headers`` (dict);
  changes made before ``await next()`` decide what is scheduled (e.g. add a header, which the
  activity reads from ``activity.get_context().headers``). ``next()`` raises the suspension on
  first run and returns the stored result on replay, so code after it runs on the replay that has
  the result. ``workflow_ctx`` is ``workflow.get_context()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .engine.replay import WorkflowInterceptor

__all__ = [
    "ActivityInterceptor",
    "WorkflowInterceptor",
    "activity_interceptors",
    "clear_interceptors",
    "register_activity_interceptor",
    "register_interceptor",
    "workflow_interceptors",
]


class ActivityInterceptor(Protocol):
    """Wraps every proxied activity call made inside a workflow."""

    async def execute(self, activity_ctx: dict[str, Any], workflow_ctx: dict[str, Any],
                      next: Callable[[], Awaitable[Any]]) -> Any: ...  # noqa: A002


_workflow: list[WorkflowInterceptor] = []
_activity: list[ActivityInterceptor] = []


def _check(obj: object, kind: str) -> None:
    if not callable(getattr(obj, "execute", None)):
        raise TypeError(f"a {kind} interceptor needs an async execute(...) method, got {obj!r}")


def register_interceptor(interceptor: WorkflowInterceptor) -> None:
    """Wrap every workflow run with ``interceptor.execute(ctx, next)`` (after those already
    registered: the first registered is outermost)."""
    _check(interceptor, "workflow")
    _workflow.append(interceptor)


def register_activity_interceptor(interceptor: ActivityInterceptor) -> None:
    """Wrap every proxied activity call with ``interceptor.execute(activity_ctx, workflow_ctx,
    next)`` (first registered is outermost)."""
    _check(interceptor, "activity")
    _activity.append(interceptor)


def clear_interceptors() -> None:
    """Remove every workflow and activity interceptor of this process."""
    _workflow.clear()
    _activity.clear()


def workflow_interceptors() -> list[WorkflowInterceptor]:
    """The workflow interceptors, outermost first (a copy)."""
    return list(_workflow)


def activity_interceptors() -> list[ActivityInterceptor]:
    """The activity interceptors, outermost first (a copy)."""
    return list(_activity)
