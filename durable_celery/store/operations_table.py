"""Which storage operation computes the outcome of each kind of storage-computed call."""

from __future__ import annotations

from .composition import hook_operation, interrupt_operation, start_child_operation
from .data import entity_operation, search_operation
from .effects import StepOperation
from .observe import emit_operation, trace_operation

__all__ = ["STEP_OPERATIONS"]

#: ``kind -> operation`` for ``ReplayContext.port.perform(kind, ...)``.
STEP_OPERATIONS: dict[str, StepOperation] = {
    "search": search_operation,
    "entity": entity_operation,
    "emit": emit_operation,
    "trace": trace_operation,
    "start": start_child_operation,
    "hook": hook_operation,
    "interrupt": interrupt_operation,
}
