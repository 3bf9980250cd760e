"""``RetryPolicy``: how often and how late a failed activity, child or workflow runs again."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .durations import parse_duration

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retry settings, with the defaults of API.md.

    Attributes:
        maximum_attempts: Number of **retries**; a call runs at most ``1 + maximum_attempts``
            times. ``0`` means no retry.
        backoff_coefficient: Growth factor of the delay between retries.
        initial_interval: Delay before the first retry (seconds or duration text).
        maximum_interval: Cap on any delay (seconds or duration text).
        throw_on_error: When ``False`` a failed activity call returns the error object instead of
            raising it.
    """

    maximum_attempts: int = 50
    backoff_coefficient: float = 2
    initial_interval: str | float = "1s"
    maximum_interval: str | float = "5m"
    throw_on_error: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.maximum_attempts, bool) or not isinstance(self.maximum_attempts, int) \
                or self.maximum_attempts < 0:
            raise ValueError(f"RetryPolicy.maximum_attempts must be an int >= 0, "
                             f"got {self.maximum_attempts!r}")
        if not isinstance(self.backoff_coefficient, (int, float)) or self.backoff_coefficient < 1:
            raise ValueError(f"RetryPolicy.backoff_coefficient must be a number >= 1, "
                             f"got {self.backoff_coefficient!r}")
        parse_duration(self.initial_interval, what="RetryPolicy.initial_interval")
        parse_duration(self.maximum_interval, what="RetryPolicy.maximum_interval")

    def delay_before_retry(self, retry: int) -> float:
        """Seconds to wait before retry ``retry`` (1-based).

        ``min(initial_interval * backoff_coefficient ** (retry - 1), maximum_interval)``.
        """
        initial = parse_duration(self.initial_interval)
        cap = parse_duration(self.maximum_interval)
        return float(min(initial * self.backoff_coefficient ** (retry - 1), cap))

    def allows_retry(self, failed_attempts: int) -> bool:
        """Whether another try may follow ``failed_attempts`` failed tries."""
        return failed_attempts <= self.maximum_attempts

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored with a call."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RetryPolicy:
        """Rebuild a policy stored by :meth:`to_dict` (``None`` gives the defaults)."""
        return cls(**(data or {}))

    @classmethod
    def coerce(cls, value: RetryPolicy | dict[str, Any] | None) -> RetryPolicy | None:
        """Accept a policy, a dict of its fields, or ``None``."""
        if value is None or isinstance(value, RetryPolicy):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise TypeError(f"retry_policy must be a RetryPolicy or a dict, got {type(value).__name__}")
