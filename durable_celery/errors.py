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

import traceback as traceback_module
from typing import Any

__all__ = [
    "ArgumentMismatchError",
    "CompleteAsyncError",
    "ContinueAsNewError",
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
    "OperationError",
    "PayloadConversionError",
    "ScheduleNotFoundError",
    "UnknownActivityError",
    "UnknownWorkflowError",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "WorkflowSandboxError",
    "describe_error",
    "did_interrupt",
    "error_from_dict",
    "safe_str",
]

#: Longest message and traceback text kept in a stored error.
MAX_MESSAGE_LENGTH = 10_000
MAX_TRACEBACK_LENGTH = 50_000


class _Coded:
    """Mixin giving ``code``, ``message``, ``type`` and ``traceback`` to both roots.

    ``type`` is the class name of the exception the failure came from (``"KeyError"`` for a
    ``DurableMaxedError`` whose last attempt raised ``KeyError``); ``traceback`` is the formatted
    traceback of the raising frame, as text, when it is known.
    """

    code: int | None = None

    def __init__(self, message: str = "", *, code: int | None = None, type: str | None = None,
                 traceback: str | None = None, **details: Any) -> None:
        super().__init__(message)  # type: ignore[call-arg]
        self.message = message
        if code is not None:
            self.code = code
        self.type = type or self.__class__.__name__
        self.traceback = traceback
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored on history rows and executions."""
        stored: dict[str, Any] = {"class": self.__class__.__name__, "type": self.type,
                                  "message": _clean(self.message, MAX_MESSAGE_LENGTH),
                                  "code": self.code}
        if self.traceback:
            stored["traceback"] = _clean(self.traceback, MAX_TRACEBACK_LENGTH)
        return stored


class DurableInterruption(_Coded, BaseException):
    """Base of the control-flow signals: the workflow is suspended at a durable call."""


class CompleteAsyncError(DurableInterruption):
    """Raised by ``activity.raise_complete_async()``: the attempt completes from elsewhere."""


class ContinueAsNewError(DurableInterruption):
    """Raised by ``workflow.continue_as_new``: this run ends and a new run of the same workflow
    id starts with the arguments given. Let it propagate (``did_interrupt`` is true for it)."""


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


class OperationError(DurableError):
    """An operation cannot be applied to the run in its current state (resuming a running
    run, retrying one that did not fail …)."""

    code = 400


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


class PayloadConversionError(DurableFatalError, TypeError):
    """A JSON payload that does not rebuild as the type its receiving function declares (a
    dataclass or pydantic model hint): a mismatch that retrying cannot cure."""


class ArgumentMismatchError(DurableFatalError, TypeError):
    """Arguments that do not fit the receiving function's signature (too many, too few, an
    unknown or missing keyword): a workflow, child, hook or activity called wrongly. Retrying
    cannot cure it, so it is not retried; it is also a ``TypeError``."""


_CONTROL_FLOW = (DurableInterruption, DurableTimeoutError, DurableMaxedError, DurableFatalError,
                 DurableRetryError)

_BY_NAME: dict[str, type[_Coded]] = {
    cls.__name__: cls
    for cls in (DurableTimeoutError, DurableMaxedError, DurableFatalError, DurableRetryError,
                DurableInterruptedError, NonDeterminismError, UnknownActivityError,
                UnknownWorkflowError, WorkflowSandboxError, DuplicateWorkflowError,
                InvalidArgumentError, NotJSONSerializableError, PayloadConversionError,
                ArgumentMismatchError, ScheduleNotFoundError, OperationError,
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
    """Rebuild the error stored by :func:`describe_error` (unknown classes become fatal errors).

    Args:
        data: The stored form: ``class``, ``type``, ``message``, ``code``, ``traceback``.
    """
    cls = (_BY_NAME.get(str(data.get("class"))) or _BY_NAME.get(str(data.get("type")))
           or _BY_CODE.get(data.get("code") or 0))
    if cls is None or not issubclass(cls, DurableError):
        cls = DurableFatalError
    error = cls(str(data.get("message", "")), type=data.get("type") or None,
                traceback=data.get("traceback") or None)
    if data.get("code") is not None and cls.code is None:
        error.code = data["code"]
    return error


def safe_str(error: BaseException) -> str:
    """``str(error)``, or its ``repr()``, or its class name: whichever works first.

    Nothing an exception does may stop its failure from being recorded.
    """
    for render in (str, repr):
        try:
            return render(error)
        except Exception:  # noqa: BLE001 - a broken __str__/__repr__ is the case handled here
            continue
    return type(error).__name__


def _format_traceback(error: BaseException) -> str | None:
    if error.__traceback__ is None:
        return None
    try:
        return "".join(traceback_module.format_exception(type(error), error,
                                                         error.__traceback__))
    except Exception:  # noqa: BLE001 - a traceback that cannot be formatted is left out
        return None


def _clean(text: str, limit: int) -> str:
    """Text a database accepts: no NUL characters, at most ``limit`` characters."""
    text = text.replace("\x00", "\\x00")
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more]"


def describe_error(error: BaseException) -> dict[str, Any]:
    """The stored form of any error: ``class``, ``type``, ``message``, ``code``, ``traceback``.

    Durable errors keep their class and code; any other exception is recorded with its class
    name as ``type`` (and ``class`` ``DurableRetryError``: a retryable failure). Messages and
    tracebacks are made safe for storage (no NUL, bounded length); an exception whose ``str()``
    fails is recorded with its ``repr()`` or class name.
    """
    if isinstance(error, _Coded):
        stored = error.to_dict()
        if "traceback" not in stored:
            text = _format_traceback(error)
            if text:
                stored["traceback"] = _clean(text, MAX_TRACEBACK_LENGTH)
        return stored
    stored = {"class": "DurableRetryError", "type": type(error).__name__,
              "message": _clean(safe_str(error), MAX_MESSAGE_LENGTH), "code": 599}
    text = _format_traceback(error)
    if text:
        stored["traceback"] = _clean(text, MAX_TRACEBACK_LENGTH)
    return stored
