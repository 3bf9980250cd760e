"""``workflow.proxy_activities``: call activities durably from a workflow."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..durations import parse_duration
from ..engine import DurableCall, current_context
from ..engine.context import check_timer_seconds
from ..errors import InvalidArgumentError
from ..interceptors import activity_interceptors
from ..payloads import encode, result_decoder
from ..registry import lookup_activity, registered_activities
from ..retry import RetryPolicy
from ..validation import check_text
from .intercept import intercepted_activity

__all__ = ["ActivityOptions", "ActivityProxy", "proxy_activities", "proxy_local_activities"]


@dataclass(frozen=True)
class ActivityOptions:
    """How a proxy's calls run; durations in seconds (``None``: no limit).

    Attributes:
        task_queue: Route calls to ``{task_queue}-activity``.
        retry_policy: How failed attempts are retried.
        start_to_close_timeout: Longest one attempt may run.
        heartbeat_timeout: Longest an attempt may go without ``activity.heartbeat()``.
        schedule_to_close_timeout: Longest all attempts together may take, from the call.
        local: Run in the worker that steps the workflow, never through the broker.
    """

    task_queue: str | None
    retry_policy: RetryPolicy
    start_to_close_timeout: float | None = None
    heartbeat_timeout: float | None = None
    schedule_to_close_timeout: float | None = None
    local: bool = False


class ActivityProxy:
    """``proxy.name(*args)`` schedules activity ``name`` and returns an awaitable of its result.

    First run: the call takes its position, is recorded as scheduled, and the workflow suspends
    until a worker on ``{task_queue}-activity`` (or, for a local activity, the worker stepping
    the workflow) has run it. Replay: the stored result is returned (or the stored error raised,
    or returned when ``throw_on_error=False``).

    Arguments may be dataclasses and pydantic models (stored as JSON); a result is rebuilt by
    the activity's return annotation when the activity is registered in this process.
    """

    def __init__(self, names: set[str] | None, options: ActivityOptions) -> None:
        self._names = names
        self._task_queue = options.task_queue
        self._retry_policy = options.retry_policy
        self._settings = options

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._names is not None and name not in self._names:
            raise AttributeError(f"activity {name!r} is not among the activities this proxy "
                                 f"was given: {', '.join(sorted(self._names))}")

        def call(*args: Any) -> Awaitable[Any]:
            return self._schedule(name, list(args))

        call.__name__ = name
        return call

    def _schedule(self, name: str, args: list[Any]) -> Awaitable[Any]:
        check_text(name, "activity name")
        interceptors = activity_interceptors()
        if interceptors:  # they run first and may change args and options (e.g. headers)
            stored_args = encode(args, where=f"arguments of activity {name!r}")
            return intercepted_activity(interceptors, name, stored_args, self._options(name),
                                        self._record)
        return self._record(name, args, None)

    def _options(self, name: str) -> dict[str, Any]:
        return {
            "task_queue": self._task_queue or _registered_queue(name)
            or current_context().info.task_queue,
            "retry_policy": self._retry_policy,
            "start_to_close_timeout": self._settings.start_to_close_timeout,
            "heartbeat_timeout": self._settings.heartbeat_timeout,
            "schedule_to_close_timeout": self._settings.schedule_to_close_timeout,
            "headers": {},
        }

    def _record(self, name: str, args: list[Any],
                options: dict[str, Any] | None) -> DurableCall:
        policy = (RetryPolicy.coerce(options.get("retry_policy")) if options else None) \
            or self._retry_policy
        ctx = current_context()

        def details(_seq: int) -> dict[str, Any]:
            # Only a new call needs these; a replayed one returns its stored outcome.
            chosen = options if options is not None else self._options(name)
            details = {
                "args": encode(args, where=f"arguments of activity {name!r}"),
                "task_queue": chosen.get("task_queue") or ctx.info.task_queue,
                "retry_policy": policy.to_dict(),
                "start_to_close_timeout": chosen.get("start_to_close_timeout"),
                "headers": dict(chosen.get("headers") or {}),
            }
            for key in ("heartbeat_timeout", "schedule_to_close_timeout"):
                if chosen.get(key) is not None:
                    details[key] = chosen[key]
            if self._settings.local:
                details["local"] = True
            return details

        if options is not None and options.get("task_queue") is not None:
            check_text(options["task_queue"], f"task_queue of activity {name!r} (as an "
                       f"activity interceptor left it)")
        queue = (options or {}).get("task_queue") or self._task_queue or ctx.info.task_queue
        return ctx.schedule("activity", name, details, transform=_result_decoder(name, queue),
                            throw_on_error=policy.throw_on_error)


def proxy_activities(activities: Iterable[Callable[..., Any]] | None = None,
                     task_queue: str | None = None,
                     retry_policy: RetryPolicy | dict[str, Any] | None = None,
                     start_to_close_timeout: str | float | None = None,
                     heartbeat_timeout: str | float | None = None,
                     schedule_to_close_timeout: str | float | None = None) -> ActivityProxy:
    """Return a proxy whose attributes call activities durably. Takes no position.

    Args:
        activities: Optional activity functions; when given, only their names may be called.
        task_queue: Route calls to Celery queue ``{task_queue}-activity`` (default: the
            activity's own task queue if it names one, else the workflow's).
        retry_policy: How failed calls are retried (default ``RetryPolicy()``).
        start_to_close_timeout: Longest one attempt may run; an attempt that exceeds it failed
            and is retried by the policy (when retries run out: ``DurableTimeoutError``).
        heartbeat_timeout: Longest an attempt may go without ``activity.heartbeat()``; one
            that misses it failed, likewise.
        schedule_to_close_timeout: Longest all attempts together may take, from the call;
            past it the call fails with ``DurableTimeoutError``.

    Raises:
        InvalidArgumentError: A duration is malformed; ``task_queue`` is empty, holds a NUL
            character or is longer than 255 characters. Calling an activity whose name is
            longer than that raises it too.
    """
    return ActivityProxy(_names(activities), _options(
        task_queue, retry_policy, start_to_close_timeout, heartbeat_timeout,
        schedule_to_close_timeout, local=False))


def proxy_local_activities(activities: Iterable[Callable[..., Any]] | None = None,
                           task_queue: str | None = None,
                           retry_policy: RetryPolicy | dict[str, Any] | None = None,
                           start_to_close_timeout: str | float | None = None,
                           heartbeat_timeout: str | float | None = None,
                           schedule_to_close_timeout: str | float | None = None) -> ActivityProxy:
    """Like :func:`proxy_activities`, for activities that run in the worker stepping the
    workflow, without a broker hop. Takes no position.

    First run: the call is recorded and claimed by the stepping worker, which runs it right
    after the step commits and records its result like any other activity's; retries (by the
    policy, after a durable backoff) and a dead worker's attempt are run by whichever worker
    steps the workflow next. Replay: the stored outcome. The activity must be registered in
    every worker that runs the workflow's steps.
    """
    return ActivityProxy(_names(activities), _options(
        task_queue, retry_policy, start_to_close_timeout, heartbeat_timeout,
        schedule_to_close_timeout, local=True))


def _names(activities: Iterable[Callable[..., Any]] | None) -> set[str] | None:
    current_context()
    return None if activities is None else {
        getattr(getattr(fn, "__durable_activity__", None), "name", None) or fn.__name__
        for fn in activities}


def _options(task_queue: str | None, retry_policy: RetryPolicy | dict[str, Any] | None,
             start_to_close: str | float | None, heartbeat: str | float | None,
             schedule_to_close: str | float | None, *, local: bool) -> ActivityOptions:
    def seconds(value: str | float | None, what: str) -> float | None:
        if value is None:
            return None
        parsed = check_timer_seconds(parse_duration(value, what=what), what)
        if parsed <= 0:
            raise InvalidArgumentError(f"{what} must be more than 0 seconds, got {value!r}")
        return parsed

    if task_queue is not None:
        check_text(task_queue, "task_queue")
    return ActivityOptions(
        task_queue=task_queue, retry_policy=RetryPolicy.coerce(retry_policy) or RetryPolicy(),
        start_to_close_timeout=seconds(start_to_close, "start_to_close_timeout"),
        heartbeat_timeout=seconds(heartbeat, "heartbeat_timeout"),
        schedule_to_close_timeout=seconds(schedule_to_close, "schedule_to_close_timeout"),
        local=local)


def _result_decoder(name: str, task_queue: str) -> Callable[[Any], Any] | None:
    """Rebuilds the activity's result by its return annotation, when this process has it
    registered."""
    definition = lookup_activity(name, task_queue)
    return result_decoder(definition.function if definition is not None else None,
                          f"activity {name!r}")


def _registered_queue(name: str) -> str | None:
    queues = {queue for (queue, n) in registered_activities() if n == name and queue}
    return queues.pop() if len(queues) == 1 else None
