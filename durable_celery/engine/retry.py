"""The one retry decision: after a failed attempt, try again (and when) or fail for good.

Activities, child workflows, workflow functions and hook threads all fail through
:func:`decide_retry`; the store only records what it decides. Rules (API.md "Retries and errors"):

* ``DurableFatalError``, ``DurableTimeoutError`` or ``DurableMaxedError`` raised by user code end
  the call at once; the caller sees that same class and message.
* An exception whose class (or a base class) is named in the policy's
  ``non_retryable_error_types`` ends the call at once as ``DurableFatalError`` whose ``.type`` is
  the original class name.
* Anything else — an exception, an attempt that exceeded its ``start_to_close_timeout`` or
  ``heartbeat_timeout``, an attempt whose worker died — is retried while the policy allows:
  retry ``k`` waits ``min(initial_interval * backoff_coefficient ** (k - 1), maximum_interval)``.
* When retries run out: ``DurableTimeoutError`` if the last attempt timed out, else
  ``DurableMaxedError`` carrying the last message and the original ``.type``.
* A ``schedule_to_close_timeout`` bounds all attempts together: a retry that could not start
  before it ends the call with ``DurableTimeoutError``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import (
    DurableFatalError,
    DurableMaxedError,
    DurableTimeoutError,
)

__all__ = ["AttemptFailure", "FailureKind", "RetryDecision", "RetryRules", "decide_retry"]

#: Classes user code raises to stop retrying (subclasses included).
_NOT_RETRIED = {"DurableFatalError", "DurableTimeoutError", "DurableMaxedError"}


class RetryRules(Protocol):
    """What the decision needs of a retry policy (``durable_celery.RetryPolicy``)."""

    @property
    def maximum_attempts(self) -> int: ...

    def delay_before_retry(self, retry: int) -> float: ...

    def is_non_retryable(self, type_names: tuple[str, ...]) -> bool: ...


class FailureKind(enum.Enum):
    """How an attempt failed."""

    RAISED = "raised"            #: user code raised (``error`` describes the exception)
    TIMED_OUT = "timed_out"      #: exceeded start_to_close_timeout or heartbeat_timeout
    WORKER_LOST = "worker_lost"  #: the process running it died (or its claim was lost)


@dataclass(frozen=True)
class AttemptFailure:
    """One failed attempt, as the decision sees it.

    Attributes:
        kind: How it failed.
        error: Stored form of the failure (``describe_error``): ``class``, ``type``,
            ``message``, ``code``, ``traceback``.
        type_names: The raised class and its bases, by ``__name__`` and dotted path (for
            ``non_retryable_error_types``); empty when nothing was raised.
    """

    kind: FailureKind
    error: dict[str, Any]
    type_names: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class RetryDecision:
    """What follows a failed attempt.

    Attributes:
        retry: Whether another attempt runs.
        delay: Seconds before it (when ``retry``).
        error: What to store: the attempt's failure (when retrying) or the final error.
    """

    retry: bool
    delay: float
    error: dict[str, Any]


def decide_retry(policy: RetryRules, attempt: int, failure: AttemptFailure, *,
                 seconds_left: float | None = None) -> RetryDecision:
    """Decide what follows failed attempt number ``attempt`` (1-based) under ``policy``.

    Args:
        policy: The call's retry policy.
        attempt: Which attempt failed (``1`` is the first try).
        failure: How it failed.
        seconds_left: Time left before the call's ``schedule_to_close_timeout`` ends it
            (``None``: no such limit).
    """
    error = failure.error
    if failure.kind is FailureKind.RAISED:
        if error.get("class") in _NOT_RETRIED or _raised_not_retried(failure.type_names):
            return RetryDecision(False, 0.0, error)
        if policy.is_non_retryable(failure.type_names):
            return RetryDecision(False, 0.0, _as(DurableFatalError, error))
    if attempt <= policy.maximum_attempts:
        delay = policy.delay_before_retry(attempt)
        if seconds_left is None or delay < seconds_left:
            return RetryDecision(True, delay, error)
        return RetryDecision(False, 0.0, _as(DurableTimeoutError, error, prefix=(
            "schedule_to_close_timeout exceeded before the next retry; last attempt: ")))
    if failure.kind is FailureKind.TIMED_OUT:
        return RetryDecision(False, 0.0, _as(DurableTimeoutError, error))
    return RetryDecision(False, 0.0, _as(DurableMaxedError, error))


def _raised_not_retried(type_names: tuple[str, ...]) -> bool:
    return any(name in _NOT_RETRIED or name.rsplit(".", 1)[-1] in _NOT_RETRIED
               for name in type_names)


def _as(cls: type[DurableFatalError] | type[DurableTimeoutError] | type[DurableMaxedError],
        error: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``error`` restated as ``cls``, keeping its original type, message and traceback."""
    return cls(prefix + str(error.get("message", "")), type=error.get("type") or None,
               traceback=error.get("traceback") or None).to_dict()
