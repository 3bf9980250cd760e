"""``activity``: the decorator that registers activities, and their runtime context."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import CompleteAsyncError
from .registry import ActivityDefinition, add_activity

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
    token_source: Callable[[], str] | None = field(default=None, repr=False)
    heartbeat_timeout: float | None = None
    cancelled: bool = False
    last_heartbeat: float = field(default_factory=time.monotonic)
    recorder: HeartbeatRecorder | None = field(default=None, repr=False)
    _last_recorded: float = field(default=0.0, repr=False)
    _task_token: str | None = field(default=None, repr=False)

    @property
    def task_token(self) -> str:
        """Names this attempt for ``client.complete_activity`` / ``fail_activity``: signed
        when first asked for (most activities never ask; signing cost 0.1 ms each)."""
        if self._task_token is None:
            self._task_token = self.token_source() if self.token_source is not None else ""
        return self._task_token

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

    A bound method registers by the method's name: ``activity(task_queue="q")(service.charge)``
    returns a function that calls it and carries the Celery task; the worker that imports the
    module holding this line runs the method of that same instance. Registration is all or
    nothing: when a step fails, nothing is registered.
    """

    def __call__(self, function: Callable[..., Any] | None = None, /, *,
                 name: str | None = None, task_queue: str | None = None) -> Any:
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            return _register(fn, name, task_queue)

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


def _register(fn: Callable[..., Any], name: str | None,
              task_queue: str | None) -> Callable[..., Any]:
    """Register ``fn`` and return what the decorator returns; on any failure, nothing is."""
    activity_name = name or getattr(fn, "__name__", None)
    if not callable(fn) or not activity_name:
        raise TypeError(f"@activity needs a function or a bound method (or name=), got {fn!r}")
    definition = ActivityDefinition(activity_name, fn, task_queue)
    add_activity(definition, dry_run=True)  # a name taken by another function
    target = _bound_method_caller(fn, definition.is_async) if inspect.ismethod(fn) else fn
    try:
        target.__durable_activity__ = definition  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        raise TypeError(f"@activity cannot register {fn!r}: it takes no attributes; register "
                        f"a function or a bound method") from None
    try:
        task = _celery_task(fn, definition.name, definition.task_queue, definition.is_async)
    except BaseException:
        del target.__durable_activity__  # type: ignore[attr-defined]
        raise
    target.delay = task.delay  # type: ignore[attr-defined]
    target.apply_async = task.apply_async  # type: ignore[attr-defined]
    target.celery_task = task  # type: ignore[attr-defined]
    add_activity(definition)
    return target


def _bound_method_caller(method: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """A plain function calling ``method`` (a bound method takes no attributes of its own)."""
    caller: Callable[..., Any]
    if is_async:
        async def caller(*args: Any, **kwargs: Any) -> Any:
            return await method(*args, **kwargs)
    else:
        def caller(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)
    return functools.wraps(method)(caller)


def _celery_task(fn: Callable[..., Any], name: str, task_queue: str | None,
                 is_async: bool) -> Any:
    from celery import shared_task

    # Celery builds its task class around a plain function; a coroutine runs to completion.
    def body(*args: Any, **kwargs: Any) -> Any:
        value = fn(*args, **kwargs)
        return asyncio.run(value) if is_async else value

    functools.update_wrapper(body, fn)
    # Celery checks a call's arguments against the signature it reads (``__signature__`` wins).
    body.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    # Activities are registered per task queue, so the Celery task name carries the queue.
    celery_name = (f"durable_celery.activity.{task_queue}.{name}" if task_queue
                   else f"durable_celery.activity.{name}")
    return shared_task(name=celery_name, serializer="json")(body)
