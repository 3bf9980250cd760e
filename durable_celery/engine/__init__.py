"""The pure replay core: history in, decision out. Imports only the standard library."""

from .calls import CallGroup, DurableCall
from .context import ReplayContext, WorkflowInfo, current_context, deterministic_random
from .history import BLOCKING_KINDS, Command, HistoryRecord, StepStatus
from .replay import ReplayStep, StepOutcome, WorkflowRun

__all__ = [
    "BLOCKING_KINDS",
    "CallGroup",
    "Command",
    "DurableCall",
    "HistoryRecord",
    "ReplayContext",
    "ReplayStep",
    "StepOutcome",
    "StepStatus",
    "WorkflowInfo",
    "WorkflowRun",
    "current_context",
    "deterministic_random",
]
