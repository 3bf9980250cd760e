"""Running activity interceptors around a proxied call, without giving up "position at call".

A durable call takes its position when it is called. With activity interceptors, the position is
taken when the interceptor chain reaches ``next()``; :class:`EagerCall` therefore starts the chain
at once, in the caller's frame, and only hands over to the event loop when the chain first
suspends (usually on the activity's own pending outcome).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from ..interceptors import ActivityInterceptor
from ..payloads import encode
from .control import get_context

__all__ = ["EagerCall", "intercepted_activity"]

_NOT_DONE = object()


class EagerCall:
    """Runs ``coroutine`` up to its first suspension now; awaiting it finishes it."""

    __slots__ = ("_coroutine", "_yielded", "_result", "_error")

    def __init__(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        self._coroutine = coroutine
        self._result: Any = _NOT_DONE
        self._error: BaseException | None = None
        self._yielded: Any = None
        try:
            self._yielded = coroutine.send(None)
        except StopIteration as stop:
            self._result = stop.value
        except BaseException as error:  # delivered to whoever awaits
            self._error = error

    def __await__(self) -> Generator[Any, Any, Any]:
        if self._error is not None:
            raise self._error
        if self._result is not _NOT_DONE:
            return self._result
        yielded = self._yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as thrown:  # noqa: B902 - relayed into the chain as asyncio does
                try:
                    yielded = self._coroutine.throw(thrown)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                yielded = self._coroutine.send(sent)
            except StopIteration as stop:
                return stop.value


def intercepted_activity(interceptors: list[ActivityInterceptor], name: str, args: list[Any],
                         options: dict[str, Any],
                         schedule: Callable[[str, list[Any], dict[str, Any]], Awaitable[Any]],
                         ) -> EagerCall:
    """Run ``interceptors`` (outermost first) around ``schedule(name, args, options)``.

    Interceptors may replace ``activity_ctx["args"]`` or change ``activity_ctx["options"]``
    (``headers``, ``task_queue``, ``retry_policy``, ``start_to_close_timeout``) before
    ``next()``; the call is scheduled with what they leave there.
    """
    activity_ctx: dict[str, Any] = {"activity_name": name, "args": list(args),
                                    "options": options}
    workflow_ctx = get_context()

    async def innermost() -> Any:
        final_args = encode(list(activity_ctx["args"]), where=f"arguments of activity {name!r}")
        return await schedule(name, final_args, activity_ctx["options"])

    chain: Callable[[], Awaitable[Any]] = innermost
    for interceptor in reversed(interceptors):
        chain = _bind(interceptor, activity_ctx, workflow_ctx, chain)
    return EagerCall(chain())  # type: ignore[arg-type]


def _bind(interceptor: ActivityInterceptor, activity_ctx: dict[str, Any],
          workflow_ctx: dict[str, Any],
          inner: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return await interceptor.execute(activity_ctx, workflow_ctx, inner)
    return call
