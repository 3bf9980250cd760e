"""Where decorated workflows and activities are registered, and found again by name."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from .errors import UnknownActivityError, UnknownWorkflowError
from .payloads import check_args, decode_args, encode

if TYPE_CHECKING:
    from .handle import WorkflowHandle

__all__ = [
    "ActivityDefinition",
    "WorkflowDefinition",
    "add_activity",
    "durable_workflow",
    "find_activity",
    "find_workflow",
    "lookup_activity",
    "lookup_workflow",
    "register_activity",
    "registered_activities",
    "registered_workflows",
]

_workflows: dict[str, WorkflowDefinition] = {}
_activities: dict[tuple[str | None, str], ActivityDefinition] = {}


@dataclass
class WorkflowDefinition:
    """A registered workflow function.

    Attributes:
        name: Registered name (the function's ``__name__`` unless ``name=`` was given).
        function: The ``async def`` function.
        task_queue: Default task queue; ``None`` means the setting ``DURABLE_DEFAULT_TASK_QUEUE``.
    """

    name: str
    function: Callable[..., Any]
    task_queue: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    async def entry(self, *args: Any) -> Any:
        """What a replay step runs: the function on its stored (JSON) arguments.

        Arguments are rebuilt by the function's parameter hints (dataclasses, pydantic models)
        and the result is returned as the JSON that will be stored.

        Raises:
            PayloadConversionError: A stored argument does not fit its hint (not retried).
            NotJSONSerializableError: The result is not JSON (not retried).
        """
        what = f"workflow {self.name!r}"
        result = await self.function(*decode_args(self.function, args, where=what))
        return encode(result, where=f"the result of {what}")

    def check_args(self, args: Sequence[Any]) -> list[Any]:
        """Check that ``args`` bind to the function's signature and rebuild by its hints;
        return them as the JSON to store.

        Raises:
            TypeError: They cannot (a ``NotJSONSerializableError`` when not JSON).
        """
        return check_args(self.function, args, where=f"workflow {self.name!r}")

    def start(self, *args: Any, **options: Any) -> WorkflowHandle:
        """Start this workflow; the options are those of ``DurableClient.start``.

        Raises:
            TypeError: An option ``DurableClient.start`` does not take (a workflow's own
                arguments are positional: they travel as a JSON list).
        """
        from .client import DurableClient

        known = inspect.signature(DurableClient.start).parameters
        unknown = sorted(name for name in options if name not in known)
        if unknown:
            raise TypeError(
                f"{self.name}.start() got unknown option(s) {', '.join(map(repr, unknown))}: "
                f"the workflow's arguments are positional ({self.name}.start(*args)), and the "
                f"options are those of DurableClient.start "
                f"({', '.join(n for n in known if n not in ('self', 'workflow', 'args'))})")
        return DurableClient().start(self, *args, **options)

    def delay(self, *args: Any) -> WorkflowHandle:
        """Start this workflow with a generated id (the Celery idiom)."""
        return self.start(*args)


@dataclass
class ActivityDefinition:
    """A registered activity function.

    Attributes:
        name: Registered name.
        function: The function, sync or ``async def``.
        task_queue: The task queue it serves (Celery queue ``{task_queue}-activity``); ``None``
            serves any queue its worker consumes.
    """

    name: str
    function: Callable[..., Any]
    task_queue: str | None = None
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.function)

    def invoke(self, args: list[Any]) -> Any:
        """Run the function with ``args`` to completion (async ones on a fresh event loop)."""
        if self.is_async:
            return asyncio.run(self.function(*args))
        return self.function(*args)


@overload
def durable_workflow(function: Callable[..., Any], /) -> WorkflowDefinition: ...


@overload
def durable_workflow(*, name: str | None = None,
                     task_queue: str | None = None) -> Callable[[Callable[..., Any]],
                                                                WorkflowDefinition]: ...


def durable_workflow(function: Callable[..., Any] | None = None, /, *, name: str | None = None,
                     task_queue: str | None = None) -> Any:
    """Register a module-level ``async def`` as a durable workflow.

    Usable bare (``@durable_workflow``) or with options
    (``@durable_workflow(name="orders", task_queue="orders")``).

    Raises:
        TypeError: The function is not an ``async def``.
        ValueError: Another function is already registered under the same name.
    """
    def register(fn: Callable[..., Any]) -> WorkflowDefinition:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@durable_workflow needs an async def function; "
                            f"{fn.__qualname__} is not one")
        definition = WorkflowDefinition(name or fn.__name__, fn, task_queue)
        existing = _workflows.get(definition.name)
        if existing is not None and _qualified(existing.function) != _qualified(fn):
            raise ValueError(f"a workflow named {definition.name!r} is already registered "
                             f"({_qualified(existing.function)})")
        _workflows[definition.name] = definition
        functools.update_wrapper(definition, fn)  # type: ignore[arg-type]
        return definition

    return register(function) if function is not None else register


def register_activity(fn: Callable[..., Any], name: str | None = None,
                      task_queue: str | None = None) -> ActivityDefinition:
    """Register ``fn`` (a function or a bound method) as an activity and return its definition.

    Raises:
        ValueError: Another function is already registered under this name and task queue.
    """
    definition = ActivityDefinition(name or fn.__name__, fn, task_queue)
    add_activity(definition, dry_run=True)
    add_activity(definition)
    return definition


def add_activity(definition: ActivityDefinition, *, dry_run: bool = False) -> None:
    """Put ``definition`` in the registry (with ``dry_run``, only check that it may be).

    The same function registered again (a module imported twice) replaces itself.

    Raises:
        ValueError: Another function is already registered under its name and task queue.
    """
    key = (definition.task_queue, definition.name)
    existing = _activities.get(key)
    if existing is not None and _qualified(existing.function) != _qualified(definition.function):
        raise ValueError(f"an activity named {definition.name!r} is already registered for "
                         f"task queue {definition.task_queue!r} "
                         f"({_qualified(existing.function)})")
    if not dry_run:
        _activities[key] = definition


def find_workflow(name: str) -> WorkflowDefinition:
    """Return the workflow registered as ``name``.

    Raises:
        UnknownWorkflowError: Nothing is registered under ``name`` in this process.
    """
    try:
        return _workflows[name]
    except KeyError:
        known = ", ".join(sorted(_workflows)) or "none"
        raise UnknownWorkflowError(
            f"no workflow named {name!r} is registered in process {os.getpid()} on "
            f"{socket.gethostname()} (registered: {known}); "
            f"is the module that defines it imported by the worker (CELERY_IMPORTS or "
            f"autodiscover_tasks)?") from None


def find_activity(name: str, task_queue: str | None) -> ActivityDefinition:
    """Return the activity ``name`` for ``task_queue`` (or one registered for any queue).

    Raises:
        UnknownActivityError: Nothing is registered under ``name`` in this process.
    """
    definition = lookup_activity(name, task_queue)
    if definition is None:
        known = ", ".join(sorted({n for _, n in _activities})) or "none"
        raise UnknownActivityError(
            f"no activity named {name!r} is registered for task queue {task_queue!r} on this "
            f"worker (registered: {known})")
    return definition


def lookup_activity(name: str, task_queue: str | None) -> ActivityDefinition | None:
    """As :func:`find_activity`, but ``None`` when this process has no such activity."""
    definition = _activities.get((task_queue, name)) or _activities.get((None, name))
    if definition is None:
        candidates = [d for (queue, n), d in _activities.items() if n == name]
        if len(candidates) == 1:
            return candidates[0]
    return definition


def lookup_workflow(name: str) -> WorkflowDefinition | None:
    """The workflow registered as ``name`` in this process, or ``None``."""
    return _workflows.get(name)


def registered_workflows() -> dict[str, WorkflowDefinition]:
    """A copy of the workflow registry."""
    return dict(_workflows)


def registered_activities() -> dict[tuple[str | None, str], ActivityDefinition]:
    """A copy of the activity registry, keyed by ``(task_queue, name)``."""
    return dict(_activities)


def _qualified(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"
