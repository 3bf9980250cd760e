"""An awaitable whose value is already known: for durable calls that never suspend."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Generic, TypeVar

__all__ = ["Immediate", "ImmediateError"]

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
