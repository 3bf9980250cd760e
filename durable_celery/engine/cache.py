"""``RunCache``: suspended workflow runs kept in a process's memory between steps.

A replay step that finds its run here delivers only the new outcomes to the suspended coroutine
(after replaying the steps other processes took since, when it is behind the database) instead
of replaying the history from the top, so a step costs the same at position 10 and at position
10,000. An entry is *taken out* while a step uses
it, so two threads of one process never step the same coroutine; it is put back only after the
step's decision was recorded. Least recently used entries are closed when the cache is full.

What it changes, visibly: code between durable calls runs once per run kept in memory rather
than once per replay. ``emit(..., once=False)`` / ``trace(..., once=False)`` act each time the
code that calls them runs — on first run, again when a run is rebuilt from history (another
worker, a restart, an eviction), and for the code a run behind the database re-runs when it
catches up on steps another process took (``WorkflowRun.catch_up``). Workflow interceptors
likewise wrap a run, not a step.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

__all__ = ["Closable", "RunCache"]


class Closable(Protocol):
    """What the cache holds: something to close when it is dropped."""

    def close(self) -> None: ...


E = TypeVar("E", bound=Closable)


class RunCache(Generic[E]):
    """A bounded, thread-safe LRU of entries that are checked out while in use.

    Args:
        capacity: Most entries kept; ``0`` keeps nothing.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(int(capacity), 0)
        self._entries: OrderedDict[Hashable, E] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, key: Hashable) -> E | None:
        """Remove and return the entry of ``key`` (the caller now owns it), or ``None``."""
        with self._lock:
            return self._entries.pop(key, None)

    def peek(self, key: Hashable) -> E | None:
        """The entry of ``key`` without taking it out (read it only as a hint: another thread
        may take it meanwhile)."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: Hashable, entry: E) -> None:
        """Keep ``entry`` for ``key``, closing whatever it replaces or pushes out."""
        dropped: list[E] = []
        with self._lock:
            if self.capacity == 0:
                dropped.append(entry)
            else:
                old = self._entries.pop(key, None)
                if old is not None and old is not entry:
                    dropped.append(old)
                self._entries[key] = entry
                while len(self._entries) > self.capacity:
                    dropped.append(self._entries.popitem(last=False)[1])
        for item in dropped:
            item.close()

    def discard(self, key: Hashable) -> None:
        """Drop and close the entry of ``key``, if any."""
        entry = self.take(key)
        if entry is not None:
            entry.close()

    def clear(self) -> None:
        """Drop and close every entry."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            entry.close()
