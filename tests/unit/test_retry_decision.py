"""The one retry decision (engine/retry.py), branch by branch, without a database."""

from __future__ import annotations

import pytest

from durable_celery import RetryPolicy
from durable_celery.engine.retry import AttemptFailure, FailureKind, decide_retry
from durable_celery.errors import (
    DurableFatalError,
    DurableMaxedError,
    DurableTimeoutError,
    InvalidArgumentError,
    describe_error,
)
from durable_celery.retry import exception_type_names


class InvalidAccountError(ValueError):
    pass


def raised(error: BaseException) -> AttemptFailure:
    try:
        raise error
    except BaseException as caught:  # noqa: BLE001 - what is being described
        return AttemptFailure(FailureKind.RAISED, describe_error(caught),
                              exception_type_names(caught))


def timed_out() -> AttemptFailure:
    return AttemptFailure(FailureKind.TIMED_OUT,
                          DurableTimeoutError("attempt exceeded its timeout").to_dict())


def worker_lost() -> AttemptFailure:
    return AttemptFailure(FailureKind.WORKER_LOST, {
        "class": "DurableRetryError", "type": "WorkerLostError", "code": 599,
        "message": "its worker died"})


POLICY = RetryPolicy(maximum_attempts=3, initial_interval="1s", backoff_coefficient=2,
                     maximum_interval="3s")


def test_plain_exception_is_retried_with_backoff_capped_at_maximum_interval() -> None:
    delays = [decide_retry(POLICY, attempt, raised(KeyError("k"))).delay
              for attempt in (1, 2, 3)]
    assert delays == [1.0, 2.0, 3.0]  # 1, 2, then min(4, 3)
    for attempt in (1, 2, 3):
        verdict = decide_retry(POLICY, attempt, raised(KeyError("k")))
        assert verdict.retry and verdict.error["type"] == "KeyError"


def test_retries_run_out_as_maxed_keeping_type_message_and_traceback() -> None:
    verdict = decide_retry(POLICY, 4, raised(KeyError("o-99")))
    assert not verdict.retry
    assert (verdict.error["class"], verdict.error["type"], verdict.error["message"],
            verdict.error["code"]) == ("DurableMaxedError", "KeyError", "'o-99'", 597)
    assert "KeyError" in verdict.error["traceback"]


def test_maximum_attempts_counts_retries() -> None:
    once = RetryPolicy(maximum_attempts=0)
    assert not decide_retry(once, 1, raised(RuntimeError("x"))).retry
    twice = RetryPolicy(maximum_attempts=1)
    assert decide_retry(twice, 1, raised(RuntimeError("x"))).retry
    assert not decide_retry(twice, 2, raised(RuntimeError("x"))).retry


@pytest.mark.parametrize("error", [DurableFatalError("no"), DurableTimeoutError("late"),
                                   DurableMaxedError("done"), InvalidArgumentError("bad")])
def test_durable_fatal_timeout_maxed_raised_by_user_code_end_at_once(error: Exception) -> None:
    verdict = decide_retry(POLICY, 1, raised(error))
    assert not verdict.retry
    assert verdict.error["class"] == type(error).__name__
    assert verdict.error["message"] == error.args[0]


@pytest.mark.parametrize("names", [["InvalidAccountError"], ["ValueError"],
                                   [f"{__name__}.InvalidAccountError"]])
def test_non_retryable_types_by_class_base_or_dotted_path_end_as_fatal(names: list[str]) -> None:
    policy = RetryPolicy(maximum_attempts=5, non_retryable_error_types=names)
    verdict = decide_retry(policy, 1, raised(InvalidAccountError("closed account")))
    assert not verdict.retry
    assert (verdict.error["class"], verdict.error["type"], verdict.error["code"]) == (
        "DurableFatalError", "InvalidAccountError", 598)
    assert verdict.error["message"] == "closed account"


def test_other_types_are_still_retried_when_some_are_non_retryable() -> None:
    policy = RetryPolicy(maximum_attempts=5, non_retryable_error_types=["InvalidAccountError"])
    assert decide_retry(policy, 1, raised(KeyError("k"))).retry


def test_timed_out_attempt_is_retried_then_ends_as_timeout() -> None:
    assert decide_retry(POLICY, 1, timed_out()).retry
    final = decide_retry(POLICY, 4, timed_out())
    assert not final.retry and (final.error["class"], final.error["code"]) == (
        "DurableTimeoutError", 596)


def test_worker_lost_is_a_failed_attempt_retried_then_maxed() -> None:
    assert decide_retry(POLICY, 1, worker_lost()).retry
    final = decide_retry(POLICY, 4, worker_lost())
    assert not final.retry
    assert (final.error["class"], final.error["type"]) == ("DurableMaxedError", "WorkerLostError")
    assert "died" in final.error["message"]


def test_schedule_to_close_ends_the_call_when_the_next_retry_would_start_too_late() -> None:
    assert decide_retry(POLICY, 1, raised(KeyError("k")), seconds_left=5).retry
    late = decide_retry(POLICY, 1, raised(KeyError("k")), seconds_left=0.5)
    assert not late.retry
    assert late.error["class"] == "DurableTimeoutError" and "schedule_to_close" in \
        late.error["message"]


def test_policy_validates_and_parses_durations_once() -> None:
    policy = RetryPolicy(initial_interval="250ms", maximum_interval="2 minutes")
    assert policy.delay_before_retry(1) == 0.25
    assert policy.delay_before_retry(100) == 120.0  # capped, no overflow
    for bad in ({"maximum_attempts": -1}, {"backoff_coefficient": 0.5},
                {"initial_interval": "soon"}, {"non_retryable_error_types": "ValueError"}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]
    assert RetryPolicy.from_dict(POLICY.to_dict()) == POLICY
    kept = RetryPolicy(non_retryable_error_types=["A", "B"])
    assert RetryPolicy.from_dict(kept.to_dict()).non_retryable_error_types == ("A", "B")
