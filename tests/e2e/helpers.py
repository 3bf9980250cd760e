"""Small helpers shared by the end-to-end tests: polling, history reading, publish capture."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["capture_publishes", "history_rows", "wait_until"]


def wait_until(predicate: Callable[[], Any], timeout: float = 20, interval: float = 0.02,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises:
        AssertionError: ``timeout`` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def history_rows(handle: Any) -> list[tuple[Any, ...]]:
    """``(seq, kind, name, status)`` of every history row of ``handle``, in order."""
    return [(h["seq"], h["kind"], h["name"], h["status"]) for h in handle.history()]


@contextmanager
def capture_publishes(*, send: bool = True,
                      fail: bool = False) -> Iterator[list[tuple[str, str, list[Any]]]]:
    """Record every message this process's outbox publishes, as ``(task, queue, args)``.

    Args:
        send: Also hand the messages to the broker (the installed publisher).
        fail: Make every publication fail (the broker is "down"): messages stay in the outbox.
    """
    from durable_celery.store import outbox

    original, original_batch = outbox._publisher, outbox._batch
    sent: list[tuple[str, str, list[Any]]] = []

    def recorder(task_name: str, queue: str, args: list[Any]) -> None:
        if fail:
            raise ConnectionError("broker unreachable (simulated by the test)")
        sent.append((task_name, queue, args))
        if send and original is not None:
            original(task_name, queue, args)

    outbox.set_publisher(recorder)
    try:
        yield sent
    finally:
        outbox._publisher, outbox._batch = original, original_batch
