"""durable_celery: durable, replay-based workflows on Celery and Django.

Add ``"durable_celery"`` to ``INSTALLED_APPS``; decorate workflows with ``@durable_workflow``
and activities with ``@activity``; start them with ``DurableClient``. This module imports no
models: the client and handle reach the store only when called.
"""

from __future__ import annotations

from . import errors, workflow
from .activity import activity
from .client import DurableClient
from .errors import (
    ArgumentMismatchError,
    DuplicateWorkflowError,
    DurableChildError,
    DurableError,
    DurableFatalError,
    DurableInterruptedError,
    DurableInterruption,
    DurableMaxedError,
    DurableProxyError,
    DurableRetryError,
    DurableSleepError,
    DurableTimeoutError,
    DurableWaitForAllError,
    DurableWaitForError,
    InvalidArgumentError,
    NonDeterminismError,
    NotJSONSerializableError,
    OperationError,
    PayloadConversionError,
    ScheduleNotFoundError,
    UnknownActivityError,
    UnknownWorkflowError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowSandboxError,
    did_interrupt,
)
from .handle import WorkflowHandle
from .interceptors import clear_interceptors, register_activity_interceptor, register_interceptor
from .registry import durable_workflow
from .retry import RetryPolicy

#: The version of this distribution, its single source: setup.cfg reads it (``version = attr:``)
#: from this file without importing the package. Not in ``__all__``, as is usual for dunders.
__version__ = "0.2.0"

__all__ = [
    "ArgumentMismatchError",
    "DuplicateWorkflowError",
    "DurableChildError",
    "DurableClient",
    "DurableError",
    "DurableFatalError",
    "DurableInterruptedError",
    "DurableInterruption",
    "DurableMaxedError",
    "DurableProxyError",
    "DurableRetryError",
    "DurableSleepError",
    "DurableTimeoutError",
    "DurableWaitForAllError",
    "DurableWaitForError",
    "InvalidArgumentError",
    "NonDeterminismError",
    "NotJSONSerializableError",
    "OperationError",
    "PayloadConversionError",
    "RetryPolicy",
    "ScheduleNotFoundError",
    "UnknownActivityError",
    "UnknownWorkflowError",
    "WorkflowHandle",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "WorkflowSandboxError",
    "activity",
    "clear_interceptors",
    "did_interrupt",
    "durable_workflow",
    "errors",
    "register_activity_interceptor",
    "register_interceptor",
    "workflow",
]
