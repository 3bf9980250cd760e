"""Running activity attempts: the delivered one, then any the step path claimed for this process.

An attempt delivered by the broker is claimed first (a duplicate delivery runs nothing). After it
records its outcome, the run's next step may claim the next attempt for this process (eager
execution, local activities): those run here, one after another, within the task's
:class:`EagerBudget`, so a sequential workflow pays no broker hop per step.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..activity import ActivityContext, activity
from ..conf import durable_setting
from ..engine.retry import AttemptFailure, FailureKind
from ..errors import (
    CompleteAsyncError,
    DurableError,
    DurableFatalError,
    DurableTimeoutError,
    NotJSONSerializableError,
    describe_error,
    safe_str,
)
from ..models import AttemptOutcome, HistoryEvent, WorkflowExecution
from ..payloads import decode_args, encode
from ..registry import ActivityDefinition, find_activity
from ..retry import exception_type_names
from ..serialization import storable_json
from ..store.activities import (
    claim_attempt,
    heartbeat_attempt,
    record_attempt_failure,
    release_for_async_completion,
    task_token,
)
from ..store.connection import with_fresh_connection
from ..store.inspect import warn_if_not_held
from ..store.sequential import record_activity_outcome
from ..telemetry import workflow_span
from .worker import consumes, current_worker_id, shutting_down

__all__ = ["AttemptFailed", "EagerBudget", "run_claimed_attempts", "run_delivered_attempt"]

logger = logging.getLogger(__name__)

#: Seconds for which the run as the attempt's claim read it is taken as current when the result
#: is recorded (a longer activity reads it again; either way the step's version check decides).
CLAIMED_RUN_FRESH_FOR = 0.5


class EagerBudget:
    """How many more activities one task may run in its own process before the next goes
    through the broker (``DURABLE_EAGER_MAX_STEPS``, ``DURABLE_EAGER_MAX_SECONDS``).

    Eager execution needs ``DURABLE_EAGER_ACTIVITIES``, a worker that consumes the activity's
    queue and has it registered, and a worker that is not shutting down.
    """

    def __init__(self, worker_id: int | None, task_id: str | None = None) -> None:
        self.worker_id = worker_id
        self.task_id = task_id
        self.enabled = bool(durable_setting("DURABLE_EAGER_ACTIVITIES"))
        self.steps_left = int(durable_setting("DURABLE_EAGER_MAX_STEPS"))
        self.deadline = time.monotonic() + float(durable_setting("DURABLE_EAGER_MAX_SECONDS"))

    def allows(self, queue: str, activity_name: str) -> bool:
        """Whether this activity may run here now; counts it against the budget when so."""
        if not (self.enabled and self.steps_left > 0 and consumes(queue)) or shutting_down() \
                or time.monotonic() > self.deadline:
            return False
        try:
            find_activity(activity_name, queue.removesuffix("-activity"))
        except LookupError:
            return False
        self.steps_left -= 1
        return True


@dataclass
class AttemptFailed(Exception):
    """The delivered attempt failed (raised by the Celery task after recording, so the task
    ends in FAILURE with the original exception's type, message and traceback)."""

    error: BaseException


def run_delivered_attempt(message: dict[str, Any], celery_task_id: str | None) -> dict[str, Any]:
    """The ``run_activity`` task body: claim, run, record; then run what the step path claimed.

    Returns:
        ``{"activity", "attempt", "outcome"}`` (``outcome``: ``completed``, ``retry``,
        ``failed``, ``async``, ``skipped``).

    Raises:
        AttemptFailed: The delivered attempt failed (its failure is recorded already).
    """
    worker_id = current_worker_id()
    summary = {"activity": message.get("activity"), "attempt": message.get("attempt")}
    claim = with_fresh_connection(lambda: claim_attempt(message, worker_id, celery_task_id))
    if claim is None:
        if not warn_if_not_held(HistoryEvent.objects.filter(pk=message["event"]),
                                f"call {message['event']} of workflow "
                                f"{message.get('workflow_id')}"):
            logger.info("durable_celery: activity %s attempt %s is settled, replaced or held "
                        "by another delivery; skipped", message.get("activity"),
                        message.get("attempt"))
        return {**summary, "outcome": "skipped"}
    budget = EagerBudget(worker_id, celery_task_id)
    outcome, error, claimed = _run_one(message, worker_id, budget, celery_task_id, claim.run)
    run_claimed_attempts(claimed, worker_id, budget)
    if error is not None and outcome in ("retry", "failed"):
        raise AttemptFailed(error)
    return {**summary, "outcome": outcome}


def run_claimed_attempts(messages: list[dict[str, Any]], worker_id: int,
                         budget: EagerBudget) -> None:
    """Run attempts already claimed for this process, and those their steps claim, in order."""
    pending = deque(messages)
    while pending:
        _, _, claimed = _run_one(pending.popleft(), worker_id, budget, None)
        pending.extend(claimed)


def _run_one(message: dict[str, Any], worker_id: int, budget: EagerBudget,
             celery_task_id: str | None, run: WorkflowExecution | None = None,
             ) -> tuple[str, BaseException | None, list[dict[str, Any]]]:
    """Run one claimed attempt and record its outcome (``run``: the run as the claim of a
    delivered attempt read it)."""
    started = time.monotonic()
    try:
        definition = find_activity(message["activity"], message.get("task_queue"))
        with workflow_span(f"activity/{definition.name}", message.get("namespace") or "",
                           message["workflow_id"], {"durable.activity": definition.name,
                                                    "durable.attempt": message["attempt"]}):
            value = encode(_invoke(definition, message, worker_id),
                           where=f"the result of activity {message['activity']!r}")
    except CompleteAsyncError:
        release_for_async_completion(message, worker_id)
        return "async", None, []
    except asyncio.CancelledError as cancelled:  # the workflow was cancelled: no retry
        error = DurableFatalError(f"activity {message['activity']!r} was cancelled: "
                                  f"{safe_str(cancelled)}", type="CancelledError")
        return _failed(message, error, worker_id, budget, celery_task_id, started)
    except Exception as error:  # every failure is recorded; the policy decides what follows
        return _failed(message, error, worker_id, budget, celery_task_id, started)
    fresh = run if time.monotonic() - started < CLAIMED_RUN_FRESH_FOR else None
    claimed = record_activity_outcome(message, holder=worker_id, stepper=worker_id,
                                      result=value, eager=budget,
                                      delivered=celery_task_id is not None, run_as_claimed=fresh)
    return "completed", None, claimed


def _failed(message: dict[str, Any], error: Exception, worker_id: int, budget: EagerBudget,
            celery_task_id: str | None, started: float) -> tuple[str, BaseException | None,
                                                               list[dict[str, Any]]]:
    timed_out = isinstance(error, _AttemptTimedOut)
    stored = describe_error(error.as_error() if isinstance(error, _AttemptTimedOut) else error)
    failure = AttemptFailure(FailureKind.TIMED_OUT if timed_out else FailureKind.RAISED, stored,
                             () if timed_out else exception_type_names(error))
    logger.warning("durable_celery: activity %s attempt %s of workflow %s failed after %.3fs: "
                   "%s: %s", message["activity"], message["attempt"], message["workflow_id"],
                   time.monotonic() - started, stored.get("type"), stored.get("message"),
                   exc_info=error)
    decision, claimed = record_attempt_failure(
        message, failure, worker_id=worker_id, stepper=worker_id,
        outcome=AttemptOutcome.TIMED_OUT if timed_out else AttemptOutcome.FAILED,
        celery_task_id=celery_task_id, eager=budget)
    raised: BaseException = error.as_error() if isinstance(error, _AttemptTimedOut) else error
    if decision is None:
        return "stale", raised, []
    return ("retry" if decision.retry else "failed"), raised, claimed


class _AttemptTimedOut(Exception):
    """The attempt exceeded its ``start_to_close_timeout`` or ``heartbeat_timeout`` here."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_error(self) -> DurableError:
        return DurableTimeoutError(self.message)


def _invoke(definition: ActivityDefinition, message: dict[str, Any], worker_id: int) -> Any:
    heartbeat_timeout = message.get("heartbeat_timeout")
    # decode_args binds the arguments to the signature first: a wrong count fails the attempt
    # with ArgumentMismatchError (a DurableFatalError: decide_retry does not retry it).
    ctx = ActivityContext(
        activity_name=definition.name, args=decode_args(
            definition.function, message.get("args", []), where=f"activity {definition.name!r}"),
        workflow_id=message["workflow_id"], attempt=int(message["attempt"]),
        task_queue=message.get("task_queue") or "", headers=dict(message.get("headers") or {}),
        heartbeat_details=message.get("heartbeat_details"),
        token_source=lambda: task_token(message),
        heartbeat_timeout=float(heartbeat_timeout) if heartbeat_timeout else None)

    def record(details: Any) -> tuple[bool, bool]:
        beat = heartbeat_attempt(message, worker_id, _heartbeat_json(details))
        return beat.current, beat.cancelled

    ctx.recorder = record
    timeout = message.get("timeout")
    limits = (float(timeout) if timeout else None, ctx.heartbeat_timeout)
    token = activity.running(ctx)
    try:
        if limits == (None, None):
            return definition.invoke(ctx.args)
        return _run_bounded(definition, ctx, *limits)
    finally:
        activity.finished(token)


def _heartbeat_json(details: Any) -> Any:
    try:
        return storable_json(details, where="heartbeat details")
    except NotJSONSerializableError as error:
        logger.warning("durable_celery: %s; heartbeat recorded without details", error)
        return None


def _run_bounded(definition: ActivityDefinition, ctx: ActivityContext,
                 start_to_close: float | None, heartbeat_timeout: float | None) -> Any:
    """Run the function in a thread and give up on it when a timeout passes (a thread cannot be
    killed: an activity that ignores its timeout keeps running, but its outcome is not used)."""
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome["value"] = context.run(definition.invoke, ctx.args)
        except BaseException as error:  # carried back to the calling thread
            outcome["error"] = error

    runner = threading.Thread(target=target, name=f"activity-{definition.name}", daemon=True)
    started = time.monotonic()
    runner.start()
    while runner.is_alive():
        now = time.monotonic()
        if start_to_close is not None and now - started >= start_to_close:
            raise _AttemptTimedOut(f"activity {definition.name!r} exceeded its "
                                   f"start_to_close_timeout of {start_to_close:g}s")
        if heartbeat_timeout is not None and now - ctx.last_heartbeat >= heartbeat_timeout:
            raise _AttemptTimedOut(f"activity {definition.name!r} did not heartbeat within its "
                                   f"heartbeat_timeout of {heartbeat_timeout:g}s")
        waits = [0.25]
        if start_to_close is not None:
            waits.append(start_to_close - (now - started))
        if heartbeat_timeout is not None:
            waits.append(heartbeat_timeout - (now - ctx.last_heartbeat))
        runner.join(max(min(waits), 0.001))
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
