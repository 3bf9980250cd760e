"""``workflow.search()``, ``workflow.enrich()`` and ``workflow.entity()``: the workflow's data.

Search fields are short text values indexed for ``DurableClient.search``; the entity is one JSON
document per workflow, found with ``DurableClient.find_entities``. Both belong to the execution,
so hook threads share them with the main thread.

Every call (opening the session and each operation, reads included) takes one position. First
run: the operation is applied to the database inside the replay step's transaction, together
with the history row that records its outcome, so it can never be applied twice, even when a
worker dies mid-step. Replay: the recorded outcome is returned and nothing is written.
"""

from __future__ import annotations

import copy
import math
import sys
from typing import Any

from ..engine import current_context
from ..errors import InvalidArgumentError
from ..serialization import json_roundtrip
from ..validation import check_search_field, check_text, field_text
from ._immediate import Immediate

__all__ = ["Entity", "Search", "enrich", "entity", "search"]

_NO_VALUE: Any = object()


def _perform(kind: str, operation: str, args: dict[str, Any]) -> Immediate[Any]:
    ctx = current_context()

    def compute(_seq: int) -> Any:
        if ctx.port is None:
            raise RuntimeError(f"workflow.{kind}() needs the database: it only works in a "
                               f"workflow run by a durable_celery worker")
        return ctx.port.perform(kind, operation, args)

    value, _ = ctx.record_now(kind, operation, compute, args)
    return Immediate(copy.deepcopy(value))


def _field_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidArgumentError(f"a search field name is a str, got {name!r}")
    return check_text(name, "search field name")


def _field_value(name: str, value: Any) -> str:
    return check_search_field(name, field_text(value))


def _number(value: Any, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not math.isfinite(value)):
        raise InvalidArgumentError(f"{what} needs a finite number, got {value!r:.80}")
    return value


class Search:
    """The workflow's search fields (text values). Every method takes one position and returns
    an awaitable; replay returns the recorded outcome."""

    def set(self, *pairs: Any, **fields: Any) -> Immediate[int]:
        """Set fields: ``set({"a": 1})``, ``set(a=1)`` or ``set("a", 1, "b", 2)``.

        Values are stored as text (``str(value)``; ``None`` as ``""``).

        Returns:
            Awaitable of the number of fields written (new or changed).
        """
        values: dict[str, Any] = {}
        if len(pairs) == 1 and isinstance(pairs[0], dict):
            values.update(pairs[0])
        elif len(pairs) % 2 == 0:
            values.update(zip(pairs[::2], pairs[1::2], strict=True))
        else:
            raise InvalidArgumentError(
                f"search().set takes a dict, keyword fields, or field/value pairs, got "
                f"{len(pairs)} positional argument(s): {pairs!r:.80}")
        values.update(fields)
        texts = {_field_name(k): _field_value(k, v) for k, v in values.items()}
        return _perform("search", "set", {"fields": texts})

    def get(self, field: str) -> Immediate[str]:
        """Awaitable of the field's text, ``""`` when it is not set."""
        return _perform("search", "get", {"field": _field_name(field)})

    def mget(self, *fields: str) -> Immediate[list[str]]:
        """Awaitable of the fields' texts, in order (``""`` for each missing one)."""
        return _perform("search", "mget", {"fields": [_field_name(f) for f in fields]})

    def delete(self, *fields: str) -> Immediate[int]:
        """Remove fields; awaitable of how many existed."""
        return _perform("search", "delete", {"fields": [_field_name(f) for f in fields]})

    def incr(self, field: str, n: int | float = 1) -> Immediate[int | float]:
        """Add ``n`` (negative to subtract) to a numeric field (missing counts as 0).

        Returns:
            Awaitable of the new value (an int while everything involved is whole).

        Raises:
            InvalidArgumentError: The field holds text that is not a number (recorded; raised
                again on replay).
        """
        return _perform("search", "incr", {"field": _field_name(field),
                                           "by": _number(n, "search().incr")})

    def mult(self, field: str, n: int | float) -> Immediate[int | float]:
        """Multiply a numeric field by ``n`` (a missing field counts as 1).

        The product itself is stored (not its logarithm, as the TypeScript original does), so
        ``get`` shows the value and ``mult(12)`` then ``mult(10)`` gives exactly ``120``.

        Returns:
            Awaitable of the new value.
        """
        return _perform("search", "mult", {"field": _field_name(field),
                                           "by": _number(n, "search().mult")})


def search() -> Immediate[Search]:
    """Open the workflow's search fields. Takes one position (kind ``search``, name
    ``session``); the awaitable returns a :class:`Search`."""
    _perform("search", "session", {})
    return Immediate(Search())


def enrich(fields: dict[str, Any]) -> Immediate[bool]:
    """Set search fields, like ``(await search()).set(fields)`` but in one position.

    Returns:
        Awaitable of ``True``. Replay writes nothing.
    """
    if not isinstance(fields, dict):
        raise InvalidArgumentError(f"enrich needs a dict of fields, got {fields!r}")
    Search().set(fields)
    return Immediate(True)


def _path(path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise InvalidArgumentError(f"an entity path is dotted text such as 'user.tags', got "
                                   f"{path!r:.80}")
    # any length (documents are bounded by DURABLE_MAX_PAYLOAD_BYTES), but no NUL: the
    # database cannot store one in a JSON key
    return check_text(path, "entity path", max_length=sys.maxsize)


def _json(value: Any, what: str) -> Any:
    return json_roundtrip(value, where=what)


class Entity:
    """The workflow's JSON document. Paths are dotted (``"user.tags"``; digits index lists).
    Every method takes one position and returns an awaitable; replay returns the recorded
    outcome."""

    def get(self, path: str | None = None) -> Immediate[Any]:
        """Awaitable of the whole document, or of the value at ``path`` (``None`` if missing)."""
        return _perform("entity", "get", {"path": None if path is None else _path(path)})

    def set(self, document: dict[str, Any]) -> Immediate[dict[str, Any]]:
        """Replace the document; awaitable of it."""
        if not isinstance(document, dict):
            raise InvalidArgumentError(f"an entity document is a dict, got {document!r}")
        return _perform("entity", "set", {"value": _json(document, "entity document")})

    def merge(self, document: dict[str, Any]) -> Immediate[dict[str, Any]]:
        """Deep-merge ``document`` into the stored one: objects merge key by key at every
        depth, anything else (lists too) replaces. Awaitable of the full document."""
        if not isinstance(document, dict):
            raise InvalidArgumentError(f"entity merge needs a dict, got {document!r}")
        return _perform("entity", "merge", {"value": _json(document, "entity merge")})

    def append(self, path: str | dict[str, Any], value: Any = _NO_VALUE) -> Immediate[Any]:
        """``append(path, value)``: add ``value`` to the list at ``path`` (created if missing);
        awaitable of the list. ``append(doc)``: extend every list at the paths where ``doc``
        has lists (``{"user": {"tags": ["x"]}}`` extends ``user.tags``); awaitable of the
        document."""
        if value is _NO_VALUE:
            if not isinstance(path, dict):
                raise InvalidArgumentError("entity append takes (path, value) or one dict")
            return _perform("entity", "append", {"path": None,
                                                 "value": _json(path, "entity append")})
        return _perform("entity", "append", {"path": _path(path),
                                             "value": _json(value, "entity append")})

    def prepend(self, path: str, value: Any) -> Immediate[list[Any]]:
        """Insert ``value`` at the start of the list at ``path``; awaitable of the list."""
        return _perform("entity", "prepend", {"path": _path(path),
                                              "value": _json(value, "entity prepend")})

    def remove(self, path: str, index: int) -> Immediate[list[Any]]:
        """Drop element ``index`` of the list at ``path``; awaitable of the list."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise InvalidArgumentError(f"entity remove needs an int index, got {index!r}")
        return _perform("entity", "remove", {"path": _path(path), "index": index})

    def increment(self, path: str, n: int | float = 1) -> Immediate[int | float]:
        """Add ``n`` to the number at ``path`` (missing counts as 0); awaitable of it."""
        return _perform("entity", "increment", {"path": _path(path),
                                                "by": _number(n, "entity increment")})

    def toggle(self, path: str) -> Immediate[bool]:
        """Flip the boolean at ``path`` (missing counts as ``False``); awaitable of it."""
        return _perform("entity", "toggle", {"path": _path(path)})

    def set_if_not_exists(self, path: str, value: Any) -> Immediate[Any]:
        """Set ``path`` only when it holds nothing; awaitable of the value now there."""
        return _perform("entity", "set_if_not_exists", {
            "path": _path(path), "value": _json(value, "entity set_if_not_exists")})

    def delete(self, path: str) -> Immediate[dict[str, Any]]:
        """Remove the key at ``path``; awaitable of the document."""
        return _perform("entity", "delete", {"path": _path(path)})


def entity() -> Immediate[Entity]:
    """Open the workflow's entity document. Takes one position (kind ``entity``, name
    ``session``); the awaitable returns an :class:`Entity`."""
    _perform("entity", "session", {})
    return Immediate(Entity())
