"""``activity``: the decorator that registers activities, and their runtime context."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import CompleteAsyncError
from .registry import register_activity

__all__ = ["ActivityContext", "activity"]

_current_activity: contextvars.ContextVar[ActivityContext | None] = contextvars.ContextVar(
    "durable_celery_activity_context", default=None)

#: ``(details) -> (still current, cancelled)``: records a heartbeat (set by the runner).
HeartbeatRecorder = Callable[[Any], tuple[bool, bool]]


@dataclass
class ActivityContext:
    """What an activity knows about the call that runs it.

    Attributes:
        heartbeat_details: The details of the previous attempt's last heartbeat (``None`` on
            a first attempt or when it never heartbeat).
        task_token: Names this attempt, for ``client.complete_activity`` /
            ``client.fail_activity`` after ``activity.raise_complete_async()``.
        cancelled: Turns true once the workflow was cancelled (learned at a heartbeat).
    """

    activity_name: str
    args: list[Any]
    workflow_id: str
    attempt: int
    task_queue: str
    headers: dict[str, Any] = field(default_factory=dict)
    heartbeat_details: Any = None
    task_token: str = ""
    heartbeat_timeout: float | None = None
    cancelled: bool = False
    last_heartbeat: float = field(default_factory=time.monotonic)
    recorder: HeartbeatRecorder | None = field(default=None, repr=False)
    _last_recorded: float = field(default=0.0, repr=False)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def heartbeat(self, *details: Any) -> None:
        """Record liveness (and ``details``); see :meth:`_Activity.heartbeat`."""
        self.last_heartbeat = now = time.monotonic()
        value = None if not details else details[0] if len(details) == 1 else list(details)
        spacing = min(1.0, (self.heartbeat_timeout or 2.0) / 2)
        if self.recorder is not None and (now - self._last_recorded >= spacing or details):
            self._last_recorded = now
            current, cancelled = self.recorder(value)
            self.cancelled = self.cancelled or cancelled or not current
        if self.cancelled:
            raise asyncio.CancelledError(
                f"activity {self.activity_name!r} of workflow {self.workflow_id!r} was "
                f"cancelled (its workflow was cancelled or no longer wants this attempt)")


class _Activity:
    """``@activity`` / ``@activity(name=..., task_queue=...)`` and ``activity.get_context()``.

    The decorated function stays callable as before and is also a real Celery task
    (``greet.delay(...)``, ``greet.apply_async(...)``) named ``durable_celery.activity.<name>``
    (``durable_celery.activity.<task_queue>.<name>`` when it names a task queue).
    """

    def __call__(self, function: Callable[..., Any] | None = None, /, *,
                 name: str | None = None, task_queue: str | None = None) -> Any:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            definition = register_activity(fn, name, task_queue)
            _attach_celery_task(fn, definition.name, definition.task_queue,
                                definition.is_async)
            fn.__durable_activity__ = definition  # type: ignore[attr-defined]
            return fn

        return register(function) if function is not None else register

    @staticmethod
    def get_context() -> ActivityContext:
        """The context of the activity running now.

        Raises:
            RuntimeError: Called outside an activity run by durable_celery.
        """
        ctx = _current_activity.get()
        if ctx is None:
            raise RuntimeError("activity.get_context() can only be called inside an activity "
                               "that a durable workflow is running")
        return ctx

    @staticmethod
    def heartbeat(*details: Any) -> None:
        """Tell the workflow engine this activity is alive, optionally with progress ``details``.

        The last details reach the next attempt as ``get_context().heartbeat_details``. An
        attempt with a ``heartbeat_timeout`` that does not heartbeat within it is a failed
        attempt. Once the workflow was cancelled, this raises ``asyncio.CancelledError``.

        Raises:
            RuntimeError: Called outside an activity.
            asyncio.CancelledError: The workflow was cancelled.
        """
        _Activity.get_context().heartbeat(*details)

    @staticmethod
    def raise_complete_async() -> None:
        """End this attempt without a result: someone completes it later with
        ``client.complete_activity(get_context().task_token, result)`` (or
        ``client.fail_activity``). Never returns.

        Raises:
            RuntimeError: Called outside an activity.
        """
        ctx = _Activity.get_context()
        raise CompleteAsyncError(f"activity {ctx.activity_name!r} completes asynchronously")

    @staticmethod
    def running(ctx: ActivityContext) -> contextvars.Token[ActivityContext | None]:
        """Enter ``ctx`` for the activity about to run (the activity runner does this)."""
        return _current_activity.set(ctx)

    @staticmethod
    def finished(token: contextvars.Token[ActivityContext | None]) -> None:
        """Leave the context entered by :meth:`running`."""
        _current_activity.reset(token)


activity = _Activity()


def _attach_celery_task(fn: Callable[..., Any], name: str, task_queue: str | None,
                        is_async: bool) -> None:
    from celery import shared_task

    body: Callable[..., Any]
    if is_async:
        @functools.wraps(fn)
        def body(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(fn(*args, **kwargs))
    else:
        body = fn
    # Activities are registered per task queue, so the Celery task name carries the queue.
    celery_name = (f"durable_celery.activity.{task_queue}.{name}" if task_queue
                   else f"durable_celery.activity.{name}")
    task = shared_task(name=celery_name, serializer="json")(body)
    fn.delay = task.delay  # type: ignore[attr-defined]
    fn.apply_async = task.apply_async  # type: ignore[attr-defined]
    fn.celery_task = task  # type: ignore[attr-defined]
