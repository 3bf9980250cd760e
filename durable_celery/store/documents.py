"""Pure operations on an entity document (a JSON object) addressed by dotted paths.

``"user.tags"`` names ``doc["user"]["tags"]``; a segment made of digits indexes a list
(``"items.0.name"``). Writers create missing intermediate objects. Every function works on the
document it is given, in place, and returns what the matching ``Entity`` method returns.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import InvalidArgumentError

__all__ = [
    "MISSING",
    "append_document",
    "append_path",
    "deep_merge",
    "delete_path",
    "get_path",
    "increment_path",
    "prepend_path",
    "remove_at",
    "set_if_missing",
    "set_path",
    "toggle_path",
]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: What :func:`get_path` returns for a path that leads nowhere (when asked to tell).
MISSING: Any = _Missing()


def _segments(path: str) -> list[str]:
    if not isinstance(path, str) or not path or any(not s for s in path.split(".")):
        raise InvalidArgumentError(f"an entity path is dotted text such as 'user.tags', "
                                   f"got {path!r}")
    return path.split(".")


def _step(container: Any, segment: str) -> Any:
    if isinstance(container, dict):
        return container.get(segment, MISSING)
    if isinstance(container, list) and segment.lstrip("-").isdigit():
        index = int(segment)
        return container[index] if -len(container) <= index < len(container) else MISSING
    return MISSING


def get_path(document: dict[str, Any], path: str | None, default: Any = None) -> Any:
    """The value at ``path`` (the whole document when ``path`` is ``None``), else ``default``."""
    if path is None:
        return document
    value: Any = document
    for segment in _segments(path):
        value = _step(value, segment)
        if value is MISSING:
            return default
    return value


def _parent(document: dict[str, Any], path: str) -> tuple[Any, str]:
    """The container holding the last segment of ``path``, creating missing objects."""
    segments = _segments(path)
    container: Any = document
    for segment in segments[:-1]:
        nxt = _step(container, segment)
        if nxt is MISSING or not isinstance(nxt, (dict, list)):
            if not isinstance(container, dict):
                raise InvalidArgumentError(f"entity path {path!r} crosses a list at "
                                           f"{segment!r} with no such element")
            nxt = {}
            container[segment] = nxt
        container = nxt
    return container, segments[-1]


def set_path(document: dict[str, Any], path: str, value: Any) -> Any:
    """Put ``value`` at ``path``; returns ``value``."""
    container, last = _parent(document, path)
    if isinstance(container, list):
        index = int(last) if last.lstrip("-").isdigit() else None
        if index is None or not -len(container) <= index < len(container):
            raise InvalidArgumentError(f"entity path {path!r}: no list element {last!r}")
        container[index] = value
    else:
        container[last] = value
    return value


def delete_path(document: dict[str, Any], path: str) -> dict[str, Any]:
    """Remove the key (or list element) at ``path`` if present; returns the document."""
    segments = _segments(path)
    parent = get_path(document, ".".join(segments[:-1])) if len(segments) > 1 else document
    last = segments[-1]
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and _step(parent, last) is not MISSING:
        del parent[int(last)]
    return document


def deep_merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Merge ``patch`` into ``target`` at every depth: objects merge key by key, any other
    value (lists included) replaces what was there. Returns ``target``."""
    for key, value in patch.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            deep_merge(current, value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _list_at(document: dict[str, Any], path: str) -> list[Any]:
    current = get_path(document, path, MISSING)
    if current is MISSING or current is None:
        return set_path(document, path, [])  # type: ignore[no-any-return]
    if not isinstance(current, list):
        raise InvalidArgumentError(f"entity path {path!r} holds {type(current).__name__}, "
                                   f"not a list")
    return current


def append_path(document: dict[str, Any], path: str, value: Any) -> list[Any]:
    """Add ``value`` at the end of the list at ``path`` (created if missing); returns the list."""
    target = _list_at(document, path)
    target.append(value)
    return target


def prepend_path(document: dict[str, Any], path: str, value: Any) -> list[Any]:
    """Add ``value`` at the start of the list at ``path`` (created if missing); returns it."""
    target = _list_at(document, path)
    target.insert(0, value)
    return target


def append_document(document: dict[str, Any], patch: dict[str, Any],
                    prefix: str = "") -> dict[str, Any]:
    """Extend the lists of ``document`` with the lists found in ``patch``.

    Objects in ``patch`` are walked; a list extends the list at the same path (created if
    missing); any other value is appended to that list as one element. Returns the document.
    """
    for key, value in patch.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            append_document(document, value, path)
        elif isinstance(value, list):
            _list_at(document, path).extend(value)
        else:
            append_path(document, path, value)
    return document


def remove_at(document: dict[str, Any], path: str, index: int) -> list[Any]:
    """Drop element ``index`` of the list at ``path`` (nothing if out of range); returns it."""
    target = _list_at(document, path)
    if -len(target) <= index < len(target):
        del target[index]
    return target


def increment_path(document: dict[str, Any], path: str, by: float) -> float:
    """Add ``by`` to the number at ``path`` (missing counts as 0); returns the new number."""
    current = get_path(document, path, None)
    if current is None:
        current = 0
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        raise InvalidArgumentError(f"entity path {path!r} holds {current!r}, not a number")
    return set_path(document, path, current + by)  # type: ignore[no-any-return]


def toggle_path(document: dict[str, Any], path: str) -> bool:
    """Flip the boolean at ``path`` (missing counts as ``False``); returns the new value."""
    return set_path(document, path, not bool(get_path(document, path, False)))  # type: ignore


def set_if_missing(document: dict[str, Any], path: str, value: Any) -> Any:
    """Set ``path`` to ``value`` only when it holds nothing; returns the value now there."""
    current = get_path(document, path, MISSING)
    if current is MISSING:
        return set_path(document, path, value)
    return current
