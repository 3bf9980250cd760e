"""The one error tree of durable_celery.

Two roots:

* :class:`DurableInterruption` (a ``BaseException``) for the engine's control flow: a durable call
  whose outcome is not known yet suspends the workflow. User code's ``except Exception:`` cannot
  swallow these.
* :class:`DurableError` (an ``Exception``) for failures a workflow can see and handle: activity and
  child failures, retries exhausted, interrupts, and the client's own errors.

Every class that API.md gives a code carries it as ``.code``; every instance has ``.message``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DurableChildError",
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
    "DuplicateWorkflowError",
    "InvalidArgumentError",
    "NotJSONSerializableError",
    "NonDeterminismError",
    "ScheduleNotFoundError",
    "UnknownActivityError",
    "UnknownWorkflowError",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "WorkflowSandboxError",
    "did_interrupt",
    "error_from_dict",
]


class _Coded:
    """Mixin giving ``code`` and ``message`` to both roots."""

    code: int | None = None

    def __init__(self, message: str = "", *, code: int | None = None, **details: Any) -> None:
        super().__init__(message)  # type: ignore[call-arg]
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored on history rows and executions."""
        return {"type": type(self).__name__, "message": self.message, "code": self.code}


class DurableInterruption(_Coded, BaseException):
    """Base of the control-flow signals: the workflow is suspended at a durable call."""


class DurableSleepError(DurableInterruption):
    """First run of ``sleep_for``: the workflow sleeps on a stored timer."""

    code = 588


class DurableWaitForAllError(DurableInterruption):
    """Several durable calls suspended together in one step."""

    code = 589


class DurableChildError(DurableInterruption):
    """First run of ``exec_child`` / ``start_child``."""

    code = 590


class DurableProxyError(DurableInterruption):
    """First run of an activity call."""

    code = 591


class DurableWaitForError(DurableInterruption):
    """First run of ``wait_for``."""

    code = 595


class DurableError(_Coded, Exception):
    """Base of every failure durable_celery reports."""


class DurableTimeoutError(DurableError):
    """``start_to_close_timeout`` exceeded, or raised by user code to fail without retry."""

    code = 596


class DurableMaxedError(DurableError):
    """Retries exhausted; carries the last error's message."""

    code = 597


class DurableFatalError(DurableError):
    """Raised by user code to fail at once, without retry."""

    code = 598


class DurableRetryError(DurableError):
    """A retryable failure (any other exception counts as one)."""

    code = 599


class DurableInterruptedError(DurableError):
    """``handle.result()`` of a workflow that was interrupted."""

    code = 410


class DuplicateWorkflowError(DurableError):
    """A workflow with this id is still running in this namespace."""


class WorkflowNotFoundError(DurableError):
    """No workflow with this id exists in this namespace."""


class ScheduleNotFoundError(DurableError, LookupError):
    """No schedule with this id exists in this namespace."""


class WorkflowNotRunningError(DurableError):
    """The workflow has finished; it cannot receive this request."""


class NonDeterminismError(DurableError):
    """Replay reached a different durable call than history recorded at that position."""


class UnknownWorkflowError(DurableError, LookupError):
    """No workflow function is registered under this name."""


class UnknownActivityError(DurableFatalError, LookupError):
    """No activity function is registered under this name on the worker that received it."""


class WorkflowSandboxError(DurableFatalError):
    """Workflow code did something replay cannot reproduce (real timers, real sleeps)."""


class InvalidArgumentError(DurableFatalError, ValueError):
    """A durable call got a value it cannot use (a malformed duration, a bad option)."""


class NotJSONSerializableError(DurableFatalError, TypeError):
    """Arguments, a result or a payload that cannot travel as JSON."""


_CONTROL_FLOW = (DurableInterruption, DurableTimeoutError, DurableMaxedError, DurableFatalError,
                 DurableRetryError)

_BY_NAME: dict[str, type[_Coded]] = {
    cls.__name__: cls
    for cls in (DurableTimeoutError, DurableMaxedError, DurableFatalError, DurableRetryError,
                DurableInterruptedError, NonDeterminismError, UnknownActivityError,
                UnknownWorkflowError, WorkflowSandboxError, DuplicateWorkflowError,
                InvalidArgumentError, NotJSONSerializableError, ScheduleNotFoundError,
                WorkflowNotFoundError, WorkflowNotRunningError, DurableError)
}
_BY_CODE: dict[int, type[_Coded]] = {
    596: DurableTimeoutError, 597: DurableMaxedError, 598: DurableFatalError,
    599: DurableRetryError, 410: DurableInterruptedError,
}


def did_interrupt(error: BaseException) -> bool:
    """Return ``True`` for the engine's control-flow errors and the durable failure classes.

    Args:
        error: Any exception caught in workflow or interceptor code.
    """
    return isinstance(error, _CONTROL_FLOW)


def error_from_dict(data: dict[str, Any]) -> DurableError:
    """Rebuild the error stored by :meth:`_Coded.to_dict` (unknown types become fatal errors).

    Args:
        data: The stored form: ``type``, ``message`` and ``code``.
    """
    cls = _BY_NAME.get(str(data.get("type"))) or _BY_CODE.get(data.get("code") or 0)
    if cls is None or not issubclass(cls, DurableError):
        cls = DurableFatalError
    error = cls(str(data.get("message", "")))
    if data.get("code") is not None and cls.code is None:
        error.code = data["code"]
    return error
