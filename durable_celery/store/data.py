"""Search fields and the entity document: the step operations behind ``workflow.search()`` and
``workflow.entity()``, and the client's indexed queries over both.

The operations run through the step port (:mod:`durable_celery.store.effects`) while a step
holds the run: they read and change the run's in-memory fields and document, and the step writes
the changes in the transaction that records their outcomes, so a crash never applies them twice,
and every thread of the run (main and hooks) sees the others' changes in order.

Search fields are :class:`~durable_celery.models.SearchAttribute` rows (text values, indexed by
``(key, value)``). The entity document is ``WorkflowExecution.document``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from django.db import connection
from django.db.models import Expression, F, QuerySet
from django.db.models.fields.json import KeyTransform

from ..errors import InvalidArgumentError
from ..models import ExecutionStatus, SearchAttribute, WorkflowExecution
from ..validation import MAX_SEARCH_VALUE_LENGTH, field_text
from . import documents as doc
from .effects import StepEffects

__all__ = [
    "entity_operation",
    "entity_queryset",
    "find_entities",
    "search_executions",
    "search_operation",
]

#: Longest text a search field may hold: values are indexed, and index rows have a size limit.
MAX_FIELD_LENGTH = MAX_SEARCH_VALUE_LENGTH


def _number(text: str, field: str) -> int | float:
    if text == "":
        return 0
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgumentError(
            f"search field {field!r} holds {text!r}, which is not a number") from None
    if not math.isfinite(value):
        raise InvalidArgumentError(f"search field {field!r} holds {text!r}, not a finite number")
    return value


def _store_number(effects: StepEffects, field: str, value: int | float) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError(f"search field {field!r} would become {value}, not a finite "
                                   f"number")
    effects.set_search_field(field, repr(value))
    return value


def search_operation(execution: WorkflowExecution, effects: StepEffects, operation: str,
                     args: dict[str, Any]) -> Any:
    """Apply one ``Search`` operation to the run's fields and return its outcome.

    The fields are read once per run and changed in memory; the step writes the changed ones
    with the history rows that record the outcomes.
    """
    if operation == "session":
        return True
    fields = effects.search_fields()
    if operation == "set":
        values: dict[str, str] = args["fields"]
        for key, value in values.items():
            effects.set_search_field(key, value)
        return len(values)
    if operation in ("get", "mget"):
        names: list[str] = [args["field"]] if operation == "get" else args["fields"]
        texts = [fields.get(name, "") for name in names]
        return texts[0] if operation == "get" else texts
    if operation == "delete":
        present = [key for key in args["fields"] if key in fields]
        for key in present:
            effects.set_search_field(key, None)
        return len(present)
    if operation in ("incr", "mult"):
        field = args["field"]
        text = fields.get(field)
        if operation == "incr":
            value = _number(text or "", field) + args["by"]
        else:  # the product is stored directly; a missing field starts from 1
            value = (1 if text in (None, "") else _number(text, field)) * args["by"]
        return _store_number(effects, field, value)
    raise InvalidArgumentError(f"unknown search operation {operation!r}")


def entity_operation(execution: WorkflowExecution, effects: StepEffects, operation: str,
                     args: dict[str, Any]) -> Any:
    """Apply one ``Entity`` operation to the run's document and return its outcome.

    The document is changed in memory and written with the step. The outcome is a copy: later
    operations of the same step must not change what an earlier one recorded.
    """
    document = execution.document if isinstance(execution.document, dict) else {}
    execution.document = document
    path: Any = args.get("path")
    value: Any = args.get("value")
    result: Any
    if operation == "session":
        return True
    if operation == "get":
        return copy.deepcopy(doc.get_path(document, path))
    if operation == "set":
        execution.document = document = copy.deepcopy(value)
        result = document
    elif operation == "merge":
        result = doc.deep_merge(document, value)
    elif operation == "append":
        result = (doc.append_document(document, value) if path is None
                  else doc.append_path(document, path, value))
    elif operation == "prepend":
        result = doc.prepend_path(document, path, value)
    elif operation == "remove":
        result = doc.remove_at(document, path, int(args["index"]))
    elif operation == "increment":
        result = doc.increment_path(document, path, args["by"])
    elif operation == "toggle":
        result = doc.toggle_path(document, path)
    elif operation == "set_if_not_exists":
        result = doc.set_if_missing(document, path, value)
    elif operation == "delete":
        result = doc.delete_path(document, path)
    else:
        raise InvalidArgumentError(f"unknown entity operation {operation!r}")
    effects.document_changed = True
    return copy.deepcopy(result)


# -- client-side queries ---------------------------------------------------------------------


def search_executions(namespace: str, workflow_name: str | None = None,
                      status: str | None = None,
                      fields: dict[str, Any] | None = None) -> QuerySet[WorkflowExecution]:
    """Executions whose search fields equal every value of ``fields``, newest first.

    Each field becomes ``id IN (SELECT execution_id … WHERE key = %s AND value = %s)``, which the
    ``(key, value)`` index answers without reading other executions' fields.
    """
    qs = WorkflowExecution.objects.filter(namespace=namespace)
    if workflow_name:
        qs = qs.filter(workflow_name=workflow_name)
    if status:
        qs = qs.filter(status=status)
    for key, value in (fields or {}).items():
        matching = SearchAttribute.objects.filter(key=str(key), value=field_text(value))
        qs = qs.filter(pk__in=matching.values("execution_id"))
    return qs.order_by("-created_at", "-id")


def _key_transform(path: str) -> Expression:
    expression: Any = F("document")
    for segment in path.split("."):
        if not segment:
            raise InvalidArgumentError(f"an entity path is dotted text such as 'user.status', "
                                       f"got {path!r}")
        expression = KeyTransform(segment, expression)
    return expression  # type: ignore[no-any-return]


def _nest(path: str, value: Any) -> dict[str, Any]:
    nested: Any = value
    for segment in reversed(path.split(".")):
        nested = {segment: nested}
    return nested  # type: ignore[no-any-return]


def find_entities(namespace: str, entity: str, conditions: dict[str, Any],
                  status: str | None = None, limit: int | None = None,
                  offset: int = 0) -> list[dict[str, Any]]:
    """Executions of entity type ``entity`` whose document holds each value at each dotted path.

    On PostgreSQL the conditions also become one ``document @> {...}`` containment test, which the
    GIN index ``durable_exec_document_gin`` answers; the exact per-path comparisons then keep only
    true equality. SQLite compares the paths with its JSON functions.

    Returns:
        Newest first: ``workflow_id, workflow_name, entity, status, document, created_at``.
    """
    qs = entity_queryset(namespace, entity, conditions, status)
    rows = qs.values("workflow_id", "workflow_name", "entity", "status", "document",
                     "created_at")
    end = None if limit is None else offset + limit
    return [dict(row) for row in rows[offset:end]]


def entity_queryset(namespace: str, entity: str, conditions: dict[str, Any],
                    status: str | None = None) -> QuerySet[WorkflowExecution]:
    """The query behind :func:`find_entities` (for EXPLAIN and further filtering).

    Runs that continued as new are left out unless ``status="continued"`` asks for them: their
    document moved on to the next run of the chain.
    """
    qs = WorkflowExecution.objects.filter(namespace=namespace, entity=entity)
    if status:
        qs = qs.filter(status=status)
    else:
        qs = qs.exclude(status=ExecutionStatus.CONTINUED)
    if conditions and connection.vendor == "postgresql":
        containment: dict[str, Any] = {}
        for path, value in conditions.items():
            doc.deep_merge(containment, _nest(path, value))
        qs = qs.filter(document__contains=containment)
    for index, (path, value) in enumerate(conditions.items()):
        alias = f"_durable_path_{index}"
        qs = qs.alias(**{alias: _key_transform(path)}).filter(**{alias: value})
    return qs.order_by("-created_at", "-id")
