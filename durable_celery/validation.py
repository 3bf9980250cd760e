"""Checks of the names and ids users pass, against what the database columns hold.

A value the database would refuse (too long for its column, a NUL character PostgreSQL cannot
store) is refused where it is written, with an :class:`~durable_celery.errors.InvalidArgumentError`
(a ``ValueError``) that names the field and the limit — never a raw database error later, and
never a workflow stuck retrying it.
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidArgumentError

__all__ = ["MAX_ID_LENGTH", "MAX_NAMESPACE_LENGTH", "MAX_SEARCH_FIELD_BYTES",
           "MAX_SEARCH_VALUE_LENGTH", "check_search_field", "check_text",
           "field_text"]

#: Longest workflow id, signal id, task queue, workflow or activity name, entity, search key.
MAX_ID_LENGTH = 255
#: Longest namespace.
MAX_NAMESPACE_LENGTH = 100
#: Longest search field value (values are indexed; index rows have a size limit).
MAX_SEARCH_VALUE_LENGTH = 2000
#: Most bytes (UTF-8) a search field's name and value may take together: they form one row of
#: the ``(key, value)`` index, and PostgreSQL refuses index rows over 2704 bytes. 2000
#: characters of Chinese or emoji take up to 8000.
MAX_SEARCH_FIELD_BYTES = 2600


def check_text(value: Any, field: str, *, max_length: int = MAX_ID_LENGTH,
               allow_empty: bool = False) -> str:
    """Return ``value`` if the database can store it in a column of ``max_length`` characters.

    Args:
        value: What the user passed.
        field: Names it in the message (``"workflow_id"``, ``"signal id"`` …).
        max_length: The column's length.
        allow_empty: Whether ``""`` is acceptable.

    Raises:
        InvalidArgumentError: It is not a ``str``, is empty, holds a NUL character, or is too
            long (not retried when raised in workflow code: the run fails naming the cause).
    """
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{field} must be a str, got {type(value).__name__} "
                                   f"{value!r:.80}")
    if not value and not allow_empty:
        raise InvalidArgumentError(f"{field} must not be empty")
    if "\x00" in value:
        raise InvalidArgumentError(f"{field} must not contain a NUL character (\\x00): "
                                   f"{value!r:.80}")
    if len(value) > max_length:
        raise InvalidArgumentError(f"{field} is {len(value)} characters long; at most "
                                   f"{max_length} are allowed ({value[:40]!r}...)")
    return value


def field_text(value: Any) -> str:
    """How a search field value is stored and compared: ``str(value)``; ``None`` becomes
    ``""`` (the same for ``client.start(search=...)``, ``workflow.search().set`` and
    ``client.search``)."""
    return "" if value is None else str(value)


def check_search_field(name: Any, value: str) -> str:
    """Return ``value`` if a search field ``name`` may hold it: both are storable text, the
    value within :data:`MAX_SEARCH_VALUE_LENGTH` characters, and the two within
    :data:`MAX_SEARCH_FIELD_BYTES` bytes of UTF-8 (one row of the index).

    Raises:
        InvalidArgumentError: Naming the field, what it takes and the limit.
    """
    check_text(name, "search field name")
    check_text(value, f"search field {name!r}", max_length=MAX_SEARCH_VALUE_LENGTH,
               allow_empty=True)
    size = len(name.encode("utf-8")) + len(value.encode("utf-8"))
    if size > MAX_SEARCH_FIELD_BYTES:
        raise InvalidArgumentError(
            f"search field {name!r} takes {size} bytes (UTF-8, name and value together); at "
            f"most {MAX_SEARCH_FIELD_BYTES} are indexed (keep large data in the entity "
            f"document)")
    return value
