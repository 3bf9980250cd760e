"""``RetryPolicy``: how often and how late a failed activity, child or workflow runs again.

The policy only holds numbers and names; what follows a failed attempt is decided in one place,
:func:`durable_celery.engine.retry.decide_retry`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .durations import parse_duration

__all__ = ["RetryPolicy", "exception_type_names"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retry settings, with the defaults of API.md. Durations are parsed once, here.

    Attributes:
        maximum_attempts: Number of **retries**; a call runs at most ``1 + maximum_attempts``
            times. ``0`` means no retry.
        backoff_coefficient: Growth factor of the delay between retries.
        initial_interval: Delay before the first retry (seconds or duration text).
        maximum_interval: Cap on any delay (seconds or duration text).
        throw_on_error: When ``False`` a failed activity call returns the error object instead of
            raising it.
        non_retryable_error_types: Exception class names (``"InvalidAccountError"``) or dotted
            paths (``"billing.errors.InvalidAccountError"``); an exception of such a class, or
            of a subclass, ends the call at once as ``DurableFatalError``.

    Raises:
        ValueError: A field is out of range or a duration cannot be read.
    """

    maximum_attempts: int = 50
    backoff_coefficient: float = 2
    initial_interval: str | float = "1s"
    maximum_interval: str | float = "5m"
    throw_on_error: bool = True
    non_retryable_error_types: tuple[str, ...] = field(default=())
    _initial_seconds: float = field(init=False, repr=False, compare=False)
    _maximum_seconds: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.maximum_attempts, bool) or not isinstance(self.maximum_attempts, int) \
                or self.maximum_attempts < 0:
            raise ValueError(f"RetryPolicy.maximum_attempts must be an int >= 0, "
                             f"got {self.maximum_attempts!r}")
        if isinstance(self.backoff_coefficient, bool) \
                or not isinstance(self.backoff_coefficient, (int, float)) \
                or not 1 <= self.backoff_coefficient <= 1000:
            raise ValueError(f"RetryPolicy.backoff_coefficient must be a number from 1 to 1000, "
                             f"got {self.backoff_coefficient!r}")
        if isinstance(self.non_retryable_error_types, str) or not all(
                isinstance(name, str) and name for name in self.non_retryable_error_types):
            raise ValueError(f"RetryPolicy.non_retryable_error_types must be a list of class "
                             f"names, got {self.non_retryable_error_types!r}")
        object.__setattr__(self, "non_retryable_error_types",
                           tuple(self.non_retryable_error_types))
        object.__setattr__(self, "_initial_seconds", parse_duration(
            self.initial_interval, what="RetryPolicy.initial_interval"))
        object.__setattr__(self, "_maximum_seconds", parse_duration(
            self.maximum_interval, what="RetryPolicy.maximum_interval"))

    def delay_before_retry(self, retry: int) -> float:
        """Seconds to wait before retry ``retry`` (1-based).

        ``min(initial_interval * backoff_coefficient ** (retry - 1), maximum_interval)``.
        """
        exponent = max(retry - 1, 0)
        try:
            grown = self._initial_seconds * self.backoff_coefficient ** exponent
        except OverflowError:
            grown = self._maximum_seconds
        return float(min(grown, self._maximum_seconds))

    def allows_retry(self, failed_attempts: int) -> bool:
        """Whether another try may follow ``failed_attempts`` failed tries."""
        return failed_attempts <= self.maximum_attempts

    def is_non_retryable(self, type_names: tuple[str, ...]) -> bool:
        """Whether an exception with these class names (class and bases) ends the call."""
        wanted = set(self.non_retryable_error_types)
        return any(name in wanted for name in type_names)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored with a call."""
        stored: dict[str, Any] = {
            "maximum_attempts": self.maximum_attempts,
            "backoff_coefficient": self.backoff_coefficient,
            "initial_interval": self.initial_interval,
            "maximum_interval": self.maximum_interval,
            "throw_on_error": self.throw_on_error,
        }
        if self.non_retryable_error_types:
            stored["non_retryable_error_types"] = list(self.non_retryable_error_types)
        return stored

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RetryPolicy:
        """Rebuild a policy stored by :meth:`to_dict` (``None`` gives the defaults)."""
        data = dict(data or {})
        if "non_retryable_error_types" in data:
            data["non_retryable_error_types"] = tuple(data["non_retryable_error_types"])
        return cls(**data)

    @classmethod
    def coerce(cls, value: RetryPolicy | dict[str, Any] | None) -> RetryPolicy | None:
        """Accept a policy, a dict of its fields, or ``None``."""
        if value is None or isinstance(value, RetryPolicy):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        raise TypeError(f"retry_policy must be a RetryPolicy or a dict, got {type(value).__name__}")


def exception_type_names(error: BaseException) -> tuple[str, ...]:
    """The class of ``error`` and its bases, each by ``__name__`` and by dotted path."""
    names: list[str] = []
    for klass in type(error).__mro__:
        if klass in (object, BaseException):
            continue
        names.extend((klass.__name__, f"{klass.__module__}.{klass.__qualname__}"))
    return tuple(_unique(names))


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name, None)
    return list(seen)
