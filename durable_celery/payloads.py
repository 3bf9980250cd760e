"""Payloads beyond plain JSON: dataclasses and pydantic models as arguments and results.

Values travel as JSON. :func:`encode` turns dataclass and pydantic model instances (anywhere in
a JSON structure) into plain JSON and refuses anything else that is not JSON. The receiving side
rebuilds them from the type hints of the function that receives them: :func:`decode_args` for a
workflow's or activity's parameters, :func:`decode_result` for a return value.
:func:`check_args` is the start-time check: the arguments bind to the signature and rebuild.
Both refuse arguments that do not bind with :class:`ArgumentMismatchError` (not retried).

Only hints that mention a dataclass or a pydantic model convert anything; every other value is
handed over exactly as it reads back from JSON, as before. The conversion is pydantic's
``TypeAdapter`` (imported only when a dataclass or model is first met).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .errors import ArgumentMismatchError, DurableError, PayloadConversionError
from .serialization import storable_json

__all__ = ["check_args", "decode_args", "decode_result", "encode", "needs_conversion",
           "result_decoder"]

logger = logging.getLogger(__name__)

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def encode(value: Any, *, where: str) -> Any:
    """Return ``value`` as it will read back from storage: plain JSON.

    Dataclass and pydantic model instances become their JSON form (by their field types; alias
    names for models that declare them); tuples become lists, as JSON does.

    Args:
        value: Arguments, a result or a payload.
        where: Names the call, for the message (e.g. ``"arguments of workflow 'order_flow'"``).

    Raises:
        NotJSONSerializableError: (a ``TypeError``) something in ``value`` is neither JSON nor a
            dataclass or pydantic model whose fields are, or the whole cannot be stored (a NUL
            character, over ``DURABLE_MAX_PAYLOAD_BYTES``).
    """
    return storable_json(value, where=where, default=_jsonable)


def decode_args(function: Callable[..., Any], args: Sequence[Any], *,
                where: str = "") -> list[Any]:
    """Rebuild ``args`` (as read from JSON) for ``function``'s parameters.

    The arguments must bind to the signature first (the worker checks this before it runs a
    workflow, hook or activity, so a wrong count fails at once instead of being retried). Each
    positional argument whose parameter's hint mentions a dataclass or pydantic model is
    rebuilt by that hint; the others pass unchanged.

    Raises:
        ArgumentMismatchError: The arguments do not bind to the signature (too many, too few).
        PayloadConversionError: An argument does not fit its parameter's hint (a ``TypeError``;
            a ``DurableFatalError``, so it is not retried).
    """
    plan = _plan(function)
    _bind(function, plan, args, where)
    decoded = list(args)
    for index, value in enumerate(decoded):
        if index < len(plan.positional):
            name, adapter = plan.positional[index]
        elif plan.var_positional is not None:
            name, adapter = plan.var_positional
        else:
            break
        if adapter is not None:
            decoded[index] = _validate(adapter, value,
                                       f"argument {name!r} of {where or _describe(function)}")
    return decoded


def decode_result(function: Callable[..., Any], value: Any, *, where: str = "") -> Any:
    """Rebuild ``value`` (as read from JSON) by ``function``'s return annotation.

    Returned unchanged when the annotation mentions no dataclass or pydantic model.

    Raises:
        PayloadConversionError: The value does not fit the return annotation.
    """
    adapter = _plan(function).result
    if adapter is None:
        return value
    return _validate(adapter, value, f"the result of {where or _describe(function)}")


def result_decoder(function: Callable[..., Any] | None,
                   where: str) -> Callable[[Any], Any] | None:
    """What a workflow hands a call's stored result through: :func:`decode_result` by
    ``function``'s return annotation, when this process has the function (``None`` otherwise:
    the plain JSON arrives). Error objects (``throw_on_error=False``) pass unchanged."""
    if function is None:
        return None
    known = function

    def decode(value: Any) -> Any:
        if isinstance(value, DurableError):
            return value
        return decode_result(known, value, where=where)

    return decode


def check_args(function: Callable[..., Any], args: Sequence[Any], *, where: str) -> list[Any]:
    """Check, before anything is stored, that ``args`` can call ``function``; return them encoded.

    Args:
        function: The receiving function (a workflow's).
        args: The caller's arguments.
        where: Names the receiver for messages (``"workflow 'order_flow'"``).

    Raises:
        TypeError: The arguments do not bind to the signature (``ArgumentMismatchError``: too
            many, too few), are not JSON (``NotJSONSerializableError``), or do not rebuild as
            the parameters' hints say (``PayloadConversionError``). All three are
            ``DurableFatalError``: raised in workflow code they fail it without retry.
    """
    stored = encode(list(args), where=f"arguments of {where}")
    decode_args(function, stored, where=where)
    return stored


def needs_conversion(hint: Any) -> bool:
    """Whether a type hint mentions a dataclass or a pydantic model (at any depth)."""
    if typing.get_origin(hint) is None and isinstance(hint, type):
        return dataclasses.is_dataclass(hint) or _is_model_class(hint)
    return any(needs_conversion(arg) for arg in typing.get_args(hint))


# -- internals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How to rebuild one function's arguments and result: an adapter per converted hint, and
    the signature the arguments must bind to (``None``: it cannot be read, as for some
    builtins; the call itself will tell)."""

    positional: list[tuple[str, Any]]
    var_positional: tuple[str, Any] | None
    result: Any
    signature: inspect.Signature | None = None


def _bind(function: Callable[..., Any], plan: _Plan, args: Sequence[Any], where: str) -> None:
    if plan.signature is None:
        return
    try:
        plan.signature.bind(*args)
    except TypeError as exc:
        raise ArgumentMismatchError(
            f"{where or _describe(function)} cannot be called with {len(args)} argument(s)"
            f"{_reply_note(args)}: {exc}; its signature is "
            f"{_describe(function)}{plan.signature}") from None


def _reply_note(args: Sequence[Any]) -> str:
    """Names the argument ``exec_hook`` adds, so the count in the message adds up."""
    last = args[-1] if args else None
    if isinstance(last, dict) and last.get("$durable") and "signal" in last:
        return " (the last is the reply address exec_hook adds)"
    return ""


def _plan(function: Callable[..., Any]) -> _Plan:
    # Keyed by the plain function (a bound method's instance may not be hashable).
    underlying = getattr(function, "__func__", function)
    return _plan_for(underlying, inspect.ismethod(function))


@lru_cache(maxsize=1024)
def _plan_for(function: Callable[..., Any], bound: bool) -> _Plan:
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:  # unresolvable names (e.g. imported under TYPE_CHECKING only)
        logger.warning("durable_celery: the type hints of %s cannot be resolved (%s); its "
                       "arguments and result are passed as plain JSON", _describe(function), exc)
        hints = {}
    signature: inspect.Signature | None
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # no signature to read (some builtins)
        signature, parameters = None, []
    else:
        parameters = list(signature.parameters.values())
        if bound and parameters and parameters[0].kind in _POSITIONAL:  # the bound self
            parameters = parameters[1:]
            signature = signature.replace(parameters=parameters)
    positional = [(p.name, _adapter_for(hints.get(p.name), function, p.name))
                  for p in parameters if p.kind in _POSITIONAL]
    var_positional = next(((p.name, _adapter_for(hints.get(p.name), function, p.name))
                           for p in parameters if p.kind == inspect.Parameter.VAR_POSITIONAL),
                          None)
    return _Plan(positional, var_positional, _adapter_for(hints.get("return"), function, "return"),
                 signature)


def _adapter_for(hint: Any, function: Callable[..., Any], name: str) -> Any:
    if hint is None or not needs_conversion(hint):
        return None
    try:
        return _type_adapter(hint)
    except Exception as exc:  # pydantic cannot build a schema for the hint
        return _Unconvertible(f"the hint {hint!r} of {name!r} in {_describe(function)} cannot "
                              f"be rebuilt from JSON: {exc}")


class _Unconvertible:
    """Stands for an adapter pydantic could not build; using it raises the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _validate(adapter: Any, value: Any, what: str) -> Any:
    if isinstance(adapter, _Unconvertible):
        raise PayloadConversionError(adapter.reason)
    try:
        return adapter.validate_python(value)
    except ValueError as exc:  # pydantic's ValidationError
        raise PayloadConversionError(f"{what} cannot be rebuilt from its JSON "
                                     f"{_preview(value)}: {exc}") from None


def _type_adapter(hint: Any) -> Any:
    try:
        return _cached_type_adapter(hint)
    except TypeError:  # an unhashable hint (rare: Annotated with unhashable metadata)
        from pydantic import TypeAdapter

        return TypeAdapter(hint)


@lru_cache(maxsize=1024)
def _cached_type_adapter(hint: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(hint)


def _jsonable(value: Any) -> Any:
    """``json.dumps``'s hook: the JSON form of a dataclass or pydantic model instance."""
    cls = type(value)
    if not (dataclasses.is_dataclass(cls) or _is_model_class(cls)):
        raise TypeError(f"Object of type {cls.__name__} is not JSON serializable")
    try:
        return _type_adapter(cls).dump_python(value, mode="json", by_alias=True)
    except Exception as exc:  # pydantic's serialisation or schema errors
        raise TypeError(f"{cls.__name__} cannot be turned into JSON: {exc}") from None


def _is_model_class(cls: type) -> bool:
    # Only a process that imported pydantic can hold a model; others never import it here.
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(cls, pydantic.BaseModel)


def _describe(function: Callable[..., Any]) -> str:
    return str(getattr(function, "__qualname__", None) or repr(function))


def _preview(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."
