"""The life of an activity attempt in storage: claimed, heartbeating, failed or completed.

An attempt is claimed by one process (``HistoryEvent.worker``) before it runs: a second copy of
its message — same Celery task id or not — finds it claimed and runs nothing; taking it over
needs its holder to be dead, which the sweeper decides (:mod:`durable_celery.store.sweeper`).
What follows a failed attempt is decided by :func:`durable_celery.engine.retry.decide_retry`; the
final outcome of a call is recorded by
:func:`~durable_celery.store.sequential.record_activity_outcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core import signing
from django.db import transaction
from django.db.models import Q

from .. import clock
from ..conf import durable_setting
from ..engine.retry import AttemptFailure, FailureKind, RetryDecision, decide_retry
from ..errors import InvalidArgumentError, describe_error
from ..models import (
    ActivityAttempt,
    AttemptOutcome,
    HistoryEvent,
    HistoryStatus,
    Timer,
    TimerKind,
    Worker,
    WorkflowExecution,
)
from ..retry import RetryPolicy, exception_type_names
from .claims import claim_attempt_fast
from .commands import NO_EAGER, EagerPolicy
from .connection import with_fresh_connection
from .dispatch import activity_message, running_lease
from .fastpath import usable
from .sequential import record_activity_outcome
from .steps import run_cache

__all__ = [
    "ClaimedAttempt",
    "Heartbeat",
    "activity_event_for_token",
    "claim_attempt",
    "complete_async",
    "fail_async",
    "heartbeat_attempt",
    "record_attempt_failure",
    "release_for_async_completion",
    "task_token",
]

_TOKEN_SALT = "durable_celery.task_token"


def claim_attempt(message: dict[str, Any], worker_id: int,
                  celery_task_id: str | None) -> ClaimedAttempt | None:
    """Claim this attempt for this process, if it is current and nobody holds it.

    Returns:
        The claim — with the run as it stood then when this process keeps the run in memory
        (read by the claim itself on PostgreSQL); ``None`` when the call is settled, a later
        attempt replaced this one, or a process holds it (a duplicate delivery): run nothing.
    """
    catch_up = _catch_up_point(message)
    if usable():
        claimed, run = claim_attempt_fast(message, worker_id, celery_task_id, catch_up)
        return ClaimedAttempt(run) if claimed else None
    now = clock.now()
    event = HistoryEvent(input={"start_to_close_timeout": message.get("timeout"),
                                "heartbeat_timeout": message.get("heartbeat_timeout")})
    # A run that ended cancelled its open calls, so "scheduled" means the run is active.
    if not HistoryEvent.objects.filter(
            pk=message["event"], status=HistoryStatus.SCHEDULED, attempts=message["attempt"],
            worker__isnull=True, started_at__isnull=True).update(
                worker_id=worker_id, started_at=now, celery_task_id=celery_task_id,
                heartbeat_at=None, lease_until=running_lease(event.input, now)):
        return None
    return ClaimedAttempt(WorkflowExecution.objects.filter(pk=message["execution"]).first()
                          if catch_up is not None else None)


@dataclass
class ClaimedAttempt:
    """An attempt this process claimed. ``run``: the run as it stood at the claim, read when
    this process keeps it in memory (its result's step may then need no read of its own)."""

    run: WorkflowExecution | None = None


def _catch_up_point(message: dict[str, Any]) -> tuple[int, str, int] | None:
    """``(step, dimension, position)`` of the thread of this call that this process keeps in
    memory, if any: the claim reads what it would have to catch up on (when the run moved on
    since; not for a result the run holds back for its group, which takes no step)."""
    entry = run_cache().peek(int(message["execution"]))
    dimension = str(message.get("dimension") or "")
    run = entry.runs.get(dimension) if entry is not None else None
    if entry is None or run is None or run.defers(int(message["seq"])):
        return None
    return entry.version, dimension, run.context.counter


def record_attempt_failure(message: dict[str, Any], failure: AttemptFailure, *,
                           worker_id: int | None, outcome: AttemptOutcome,
                           stepper: int | None = None, started_at: datetime | None = None,
                           celery_task_id: str | None = None,
                           eager: EagerPolicy = NO_EAGER) -> tuple[RetryDecision | None,
                                                                   list[dict[str, Any]]]:
    """Record a failed attempt: schedule the next one, or settle the call as failed.

    Args:
        message: The attempt's message.
        failure: How it failed.
        worker_id: The process that held it (only an attempt it holds, or nobody holds, is
            recorded).
        outcome: How the attempt log names the failure.
        stepper: This process, when it may take the run's next step itself (a worker that ran
            the attempt); ``None`` requests the step through the broker (the sweeper).

    Returns:
        ``(decision, attempts)``: what was decided (``None`` when the attempt was no longer
        current: nothing recorded), and attempts claimed to run in this process next.
    """
    now = clock.now()
    event_pk, attempt = int(message["event"]), int(message["attempt"])
    row = with_fresh_connection(lambda: HistoryEvent.objects.filter(pk=event_pk).values_list(
        "input", "created_at", "started_at").first())
    if row is None:
        return None, []
    details, created_at, row_started = row
    policy = RetryPolicy.from_dict(details.get("retry_policy"))
    limit = details.get("schedule_to_close_timeout")
    seconds_left = None if not limit else \
        float(limit) - (now - created_at).total_seconds()
    decision = decide_retry(policy, attempt, failure, seconds_left=seconds_left)

    def log_attempt() -> None:
        worker_name = Worker.objects.filter(pk=worker_id).values_list("name", flat=True).first() \
            if worker_id is not None else None
        ActivityAttempt.objects.bulk_create([ActivityAttempt(
            event_id=event_pk, number=attempt, worker_id=worker_id,
            worker_name=worker_name or "", celery_task_id=celery_task_id,
            started_at=started_at or row_started, finished_at=now, outcome=outcome,
            error=failure.error, retry_delay=decision.delay if decision.retry else None)])

    if not decision.retry:
        attempts = record_activity_outcome(message, holder=worker_id, stepper=stepper,
                                           error=decision.error, eager=eager, also=log_attempt)
        return decision, attempts
    def schedule_retry() -> bool:
        with transaction.atomic():
            held = Q(worker__isnull=True) if worker_id is None else Q(worker_id=worker_id)
            bumped = HistoryEvent.objects.filter(
                held, pk=event_pk, status=HistoryStatus.SCHEDULED, attempts=attempt).update(
                    attempts=attempt + 1, error=failure.error, worker=None, started_at=None,
                    dispatched_at=None, lease_until=None, heartbeat_at=None)
            if not bumped:
                return False
            log_attempt()
            Timer.objects.create(execution_id=message["execution"], event_id=event_pk,
                                 kind=TimerKind.ACTIVITY_RETRY,
                                 due_at=now + timedelta(seconds=decision.delay))
        return True

    # a retry that committed before its connection died finds the attempt bumped: stale, done
    if not with_fresh_connection(schedule_retry):
        return None, []
    return decision, []


class Heartbeat:
    """What a heartbeat found: whether the attempt is still wanted."""

    def __init__(self, current: bool, cancelled: bool) -> None:
        self.current = current
        self.cancelled = cancelled


def heartbeat_attempt(message: dict[str, Any], worker_id: int | None,
                      details: Any) -> Heartbeat:
    """Record that the attempt is alive (with ``details`` for a later attempt) and learn
    whether the call still wants it.

    A cancellation reaches an attempt through its call: the step that delivers the cancellation
    to the workflow marks the calls it ended ``cancelled``, and their attempts are then no
    longer current. (Not the run's ``cancel_requested_at``: cleanup activities the workflow
    calls after the cancellation must run normally, and an attempt told early could record a
    failure before the workflow was told.)"""
    now = clock.now()
    timeout = message.get("heartbeat_timeout")
    fields: dict[str, Any] = {"heartbeat_at": now, "heartbeat_details": details}
    if timeout:
        grace = float(durable_setting("DURABLE_ACTIVITY_LEASE_GRACE"))
        fields["lease_until"] = now + timedelta(seconds=float(timeout) + grace)
    held = Q(worker__isnull=True) if worker_id is None else Q(worker_id=worker_id)
    current = bool(HistoryEvent.objects.filter(
        held, pk=message["event"], status=HistoryStatus.SCHEDULED,
        attempts=message["attempt"]).update(**fields))
    return Heartbeat(current, not current)


def task_token(message: dict[str, Any]) -> str:
    """An opaque, signed token naming this attempt, for completing it from elsewhere."""
    return signing.dumps({"e": int(message["event"]), "a": int(message["attempt"]),
                          "r": message.get("run_id", "")}, salt=_TOKEN_SALT, compress=True)


def activity_event_for_token(token: str) -> tuple[HistoryEvent, int]:
    """The history row and attempt a task token names, if that attempt is still current.

    Raises:
        InvalidArgumentError: The token is malformed or forged, or its attempt is no longer
            current (completed, failed, cancelled or replaced by a later attempt).
    """
    if not isinstance(token, str) or not token:
        raise InvalidArgumentError(f"a task token is a non-empty str, got {token!r}")
    try:
        data = signing.loads(token, salt=_TOKEN_SALT)
        event_pk, attempt = int(data["e"]), int(data["a"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise InvalidArgumentError("this task token is not valid: it was not issued by this "
                                   "deployment (or was altered)") from None
    event = HistoryEvent.objects.select_related("execution").filter(pk=event_pk).first()
    if event is None:
        raise InvalidArgumentError(f"the activity call of this task token (history row "
                                   f"{event_pk}) no longer exists")
    if event.status != HistoryStatus.SCHEDULED or event.attempts != attempt \
            or not event.execution.is_active:
        raise InvalidArgumentError(
            f"this task token names attempt {attempt} of activity {event.name!r} in workflow "
            f"{event.execution.workflow_id!r}, which is no longer current (the call is "
            f"{event.status}, at attempt {event.attempts}, in a run that is "
            f"{event.execution.status})")
    return event, attempt


def release_for_async_completion(message: dict[str, Any], worker_id: int) -> bool:
    """The activity raised ``raise_complete_async()``: the process no longer holds the attempt;
    it waits for ``client.complete_activity`` / ``fail_activity`` (or its timeouts)."""
    return bool(HistoryEvent.objects.filter(
        pk=message["event"], status=HistoryStatus.SCHEDULED, attempts=message["attempt"],
        worker_id=worker_id).update(worker=None))


def complete_async(token: str, result: Any) -> None:
    """``client.complete_activity``: record the result of an attempt completed from elsewhere.

    Raises:
        InvalidArgumentError: The token is not valid or its attempt is no longer current.
    """
    event, attempt = activity_event_for_token(token)
    message = activity_message(event.execution, event)
    recorded = record_activity_outcome(message, holder=None, stepper=None, result=result)
    del recorded  # the step is requested; its outcome shows in the workflow's history


def fail_async(token: str, error: str | BaseException) -> None:
    """``client.fail_activity``: record a failed attempt completed from elsewhere; the retry
    policy decides what follows.

    Raises:
        InvalidArgumentError: The token is not valid or its attempt is no longer current.
    """
    event, _ = activity_event_for_token(token)
    if isinstance(error, BaseException):
        failure = AttemptFailure(FailureKind.RAISED, describe_error(error),
                                 exception_type_names(error))
    else:
        failure = AttemptFailure(FailureKind.RAISED, {
            "class": "DurableRetryError", "type": "ActivityFailure", "code": 599,
            "message": str(error)})
    decision, _ = record_attempt_failure(activity_message(event.execution, event), failure,
                                         worker_id=None, outcome=AttemptOutcome.FAILED)
    if decision is None:
        raise InvalidArgumentError(f"attempt {event.attempts} of activity {event.name!r} was "
                                   f"settled by someone else first")

