"""JSON is the only payload format: check values before anything is stored or sent.

Every value is checked where it is written (a workflow's arguments at the start, an activity's
arguments at the call, a result when it is recorded): it must encode as JSON with finite numbers,
hold no NUL character (PostgreSQL cannot store one in text or JSON), and stay under
``DURABLE_MAX_PAYLOAD_BYTES``. Refusals are ``NotJSONSerializableError`` (a ``TypeError``) that say
what was wrong and where.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .conf import durable_setting
from .errors import NotJSONSerializableError

__all__ = ["ensure_json", "json_roundtrip", "storable_json"]


def ensure_json(value: Any, *, where: str) -> None:
    """Refuse a value that is not JSON-serialisable.

    Args:
        value: Arguments, a result or a payload.
        where: Names the call, for the message (e.g. ``"arguments of workflow 'order_flow'"``).

    Raises:
        NotJSONSerializableError: (a ``TypeError``) ``value`` cannot be encoded as JSON.
    """
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotJSONSerializableError(f"{where} must be JSON-serialisable: {exc}") from None


def storable_json(value: Any, *, where: str,
                  default: Callable[[Any], Any] | None = None) -> Any:
    """Return ``value`` as it will read back from storage (tuples become lists, and so on).

    Args:
        value: Any JSON-serialisable value.
        where: Names the call, for the error message.
        default: Turns other objects into JSON values (``json.dumps``'s ``default``).

    Raises:
        NotJSONSerializableError: (a ``TypeError``) ``value`` cannot be encoded as JSON, holds
            a NUL character, is larger than ``DURABLE_MAX_PAYLOAD_BYTES``, or has dict keys
            that become the same JSON key (``1`` and ``"1"``).
    """
    try:
        text = json.dumps(value, allow_nan=False, default=default)
    except (TypeError, ValueError, RecursionError) as exc:
        detail = " (or dataclasses or pydantic models of JSON fields)" if default else ""
        raise NotJSONSerializableError(
            f"{where} must be JSON-serialisable{detail}: {exc}") from None
    if "\\u0000" in text and _nul_path(value):
        raise NotJSONSerializableError(
            f"{where} holds a NUL character (\\x00) at {_nul_path(value)}; the database cannot "
            f"store it — encode binary data (e.g. base64) before passing it")
    limit = int(durable_setting("DURABLE_MAX_PAYLOAD_BYTES"))
    if len(text) > limit:
        raise NotJSONSerializableError(
            f"{where} is {len(text)} bytes of JSON, over the limit of {limit} "
            f"(DURABLE_MAX_PAYLOAD_BYTES); keep large data elsewhere and pass a reference")
    try:
        return json.loads(text, object_pairs_hook=_distinct_keys)
    except _CollidingKeys as collision:
        raise NotJSONSerializableError(
            f"{where} holds a dict whose keys {collision.key!r} collide as JSON text (JSON keys "
            f"are strings: 1 and '1' are the same key); one value would be lost") from None


class _CollidingKeys(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _distinct_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a key that appears twice (two keys of a Python dict
    that ``json.dumps`` wrote as one text, such as ``1`` and ``"1"``)."""
    built = dict(pairs)
    if len(built) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _CollidingKeys(key)
            seen.add(key)
    return built


def _nul_path(value: Any, path: str = "$") -> str:
    if isinstance(value, str):
        return path if "\x00" in value else ""
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                return f"{path} (a key)"
            found = _nul_path(item, f"{path}.{key}")
            if found:
                return found
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _nul_path(item, f"{path}[{index}]")
            if found:
                return found
    return ""


#: The same as :func:`storable_json` (its earlier name).
json_roundtrip = storable_json
