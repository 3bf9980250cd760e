"""Counters shared by the test process and worker processes: one file per counter, one line
per increment (appends are atomic), so tests can prove how often a side effect ran."""

from __future__ import annotations

import os

__all__ = ["bump", "count", "get", "put", "reset"]


def _path(name: str) -> str:
    return os.path.join(os.environ["DURABLE_TEST_COUNTERS"], name.replace("/", "_"))


def bump(name: str) -> int:
    """Add one to counter ``name``; returns the new count."""
    with open(_path(name), "a", encoding="utf-8") as handle:
        handle.write("1\n")
    return count(name)


def count(name: str) -> int:
    """Current value of counter ``name`` (0 if never bumped)."""
    try:
        with open(_path(name), encoding="utf-8") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


def reset(name: str) -> None:
    """Set counter ``name`` back to 0."""
    try:
        os.remove(_path(name))
    except FileNotFoundError:
        pass


def put(name: str, text: str) -> None:
    """Store ``text`` under ``name`` (a value a worker hands to the test, e.g. a task token)."""
    path = _path(f"{name}.value")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def get(name: str) -> str | None:
    """The text stored under ``name``, or ``None``."""
    try:
        with open(_path(f"{name}.value"), encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
