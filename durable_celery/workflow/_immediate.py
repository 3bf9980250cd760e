"""An awaitable whose value is already known: for durable calls that never suspend."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Generic, TypeVar

__all__ = ["Immediate"]

T = TypeVar("T")


class Immediate(Generic[T]):
    """Awaiting it returns ``value`` at once. The position was taken when it was built."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self.value
        yield  # pragma: no cover - makes this a generator
