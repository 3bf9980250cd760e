"""JSON is the only payload format: check values before anything is stored or sent."""

from __future__ import annotations

import json
from typing import Any

from .errors import NotJSONSerializableError

__all__ = ["ensure_json", "json_roundtrip"]


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


def json_roundtrip(value: Any, *, where: str) -> Any:
    """Return ``value`` as it will read back from storage (tuples become lists, and so on).

    Args:
        value: Any JSON-serialisable value.
        where: Names the call, for the error message.

    Raises:
        NotJSONSerializableError: (a ``TypeError``) ``value`` cannot be encoded as JSON.
    """
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise NotJSONSerializableError(f"{where} must be JSON-serialisable: {exc}") from None
