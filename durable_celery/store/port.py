"""``StepPort``: database operations a replay step performs while the workflow runs.

Some durable calls (search fields, the entity document) have outcomes that storage computes, such
as the new value of a counter. The replay context calls ``port.perform(kind, operation, args)``
on first run; the operation runs in the step's transaction, so its write and the history row that
records its outcome commit together — a crash can never apply it twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..models import WorkflowExecution
from .commands import CommandEffects

__all__ = ["StepOperation", "StepPort", "register_step_operation"]

#: ``(execution, effects, operation, args) -> outcome``, run inside the step's transaction.
StepOperation = Callable[[WorkflowExecution, CommandEffects, str, dict[str, Any]], Any]

_operations: dict[str, StepOperation] = {}


def register_step_operation(kind: str, operation: StepOperation) -> None:
    """Let workflow calls of ``kind`` perform ``operation`` through the step port."""
    _operations[kind] = operation


class StepPort:
    """The port handed to one replay step of ``execution``."""

    def __init__(self, execution: WorkflowExecution, effects: CommandEffects) -> None:
        self.execution = execution
        self.effects = effects

    def perform(self, kind: str, operation: str, args: dict[str, Any]) -> Any:
        """Run storage operation ``operation`` of ``kind`` now and return its outcome.

        Raises:
            LookupError: No operation is registered for ``kind``.
        """
        try:
            handler = _operations[kind]
        except KeyError:
            raise LookupError(f"no storage operation is registered for {kind!r} calls") from None
        # The workflow's private event loop is running on this thread, and Django refuses ORM
        # calls under a running loop. The operation must use this thread's connection (it is
        # part of the step's transaction) and nothing else runs on that loop meanwhile, so the
        # loop is set aside for the duration of the call.
        loop = asyncio._get_running_loop()
        asyncio._set_running_loop(None)
        try:
            return handler(self.execution, self.effects, operation, args)
        finally:
            asyncio._set_running_loop(loop)
