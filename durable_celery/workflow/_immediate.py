"""An awaitable whose value is already known: for durable calls that never suspend."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Generic, TypeVar

from ..engine import current_context
from ..errors import DurableError

__all__ = ["Immediate", "ImmediateError", "record_in_storage"]

T = TypeVar("T")


class Immediate(Generic[T]):
    """Awaiting it returns ``value`` at once. The position was taken when it was built."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self.value
        yield  # pragma: no cover - makes this a generator


class ImmediateError:
    """Awaiting it raises ``error``: a durable call refused when it was made."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __await__(self) -> Generator[Any, None, Any]:
        raise self.error
        yield  # pragma: no cover - makes this a generator


def record_in_storage(kind: str, name: str, spec: dict[str, Any],
                      operation: str = "") -> Immediate[Any] | ImmediateError:
    """Take a position for a call that storage performs in the step (``ctx.port``).

    First run: the port performs ``operation`` of ``kind`` with ``spec`` and the outcome is
    recorded; a refusal (a ``DurableError``) is recorded too. Replay: the stored outcome, or the
    stored refusal. Either way the awaitable returns the outcome or raises the refusal.
    """
    ctx = current_context()
    try:
        value, _ = ctx.record_now(kind, name,
                                  lambda _seq: ctx.port.perform(kind, operation, spec), spec)
    except DurableError as error:
        return ImmediateError(error)
    return Immediate(value)
