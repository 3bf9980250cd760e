"""Model instances from the rows of a hand-written statement, cheaply.

``Model.objects.raw()`` works out again, for every statement it runs, which column is which
field, which converters each needs and where the model's constructor wants each value; in a
profile of a pool process claiming delivered activities that bookkeeping took about a third of
the claim's samples. :func:`fetch_models` does the same thing as ``raw()`` — the same
instances, the same converters, other columns set as attributes — and works the bookkeeping out
once per model and column list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from django.db import connection, models

__all__ = ["fetch_models"]

M = TypeVar("M", bound=models.Model)

Converter = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class _Reading:
    """How to turn one row of a given column list into a model instance."""

    field_names: tuple[str, ...]  # attnames of the fields read, in the model's field order
    positions: tuple[int, ...]  # the column of each of them
    converters: tuple[tuple[int, tuple[Converter, ...], Any], ...]  # (value index, calls, col)
    extras: tuple[tuple[str, int], ...]  # columns that are no field: (attribute, column)


@lru_cache(maxsize=64)
def _reading(model: type[models.Model], columns: tuple[str, ...], vendor: str) -> _Reading:
    field_columns = {field.column for field in model._meta.concrete_fields}
    where = {name: index for index, name in enumerate(columns)}
    fields = [field for field in model._meta.concrete_fields
              if field.column is not None and field.column in where]
    converters = []
    for index, field in enumerate(fields):
        col = field.get_col(model._meta.db_table)
        calls = tuple(connection.ops.get_db_converters(col)) + tuple(
            field.get_db_converters(connection))
        if calls:
            converters.append((index, calls, col))
    return _Reading(
        field_names=tuple(field.attname for field in fields),
        positions=tuple(where[str(field.column)] for field in fields),
        converters=tuple(converters),
        extras=tuple((name, index) for index, name in enumerate(columns)
                     if name not in field_columns))


def fetch_models(model: type[M], sql: str, params: Sequence[Any] | Mapping[str, Any],
                 columns: tuple[str, ...] | None = None) -> list[M]:
    """Run ``sql`` and return one ``model`` instance per row it returns, as
    ``model.objects.raw(sql, params)`` would: each column named like a field's column fills that
    field (through the field's converters); any other column becomes an attribute of that name,
    as the driver returned it. ``columns``, when the statement names its result columns, saves
    asking the driver for them (psycopg builds that description anew for each statement)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if columns is None:
            if cursor.description is None:
                return []
            columns = tuple(column[0] for column in cursor.description)
        rows = cursor.fetchall()
    if not rows:
        return []
    reading = _reading(model, columns, connection.vendor)
    instances = []
    for row in rows:
        values = [row[position] for position in reading.positions]
        for index, calls, col in reading.converters:
            for call in calls:
                values[index] = call(values[index], col, connection)
        instance = model.from_db(connection.alias, reading.field_names, values)
        for name, position in reading.extras:
            setattr(instance, name, row[position])
        instances.append(instance)
    return instances
