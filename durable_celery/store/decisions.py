"""Recording what a replay step decided: one transaction, checked against the run's version.

The first statement of the transaction checks that the run is still at the version the decision
was made from (and, on the general path, that this process still holds the step claim) and
releases the claim; then the outcomes the step saw are marked, the new calls recorded and acted
on, and the run's own outcome — completed, failed, retried, interrupted — written through
:func:`~durable_celery.store.finish.finish_execution`. A decision that lost its race raises
:class:`StepLost` and writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Case, Exists, Value, When

from .. import clock
from ..conf import durable_setting
from ..engine import HistoryRecord, StepOutcome, StepStatus, WorkflowRun
from ..engine.retry import AttemptFailure, FailureKind, decide_retry
from ..errors import DurableFatalError, describe_error, safe_str
from ..models import (
    ACTIVE_STATUSES,
    ExecutionStatus,
    HistoryEvent,
    TimerKind,
    WorkflowExecution,
    WorkflowThread,
)
from ..retry import RetryPolicy, exception_type_names
from ..statuses import RESOLVED_STATUSES
from .commands import EagerPolicy, record_commands
from .composition import fail_hook_waiters
from .dispatch import activity_message, dispatch_attempt
from .effects import StepEffects
from .executions import interrupt_execution
from .failures import record_workflow_retry
from .finish import FINISHED_FIELDS, finish_execution
from .lifecycle import continue_run, end_cancelled_calls
from .outbox import OutboxBatch
from .signals import lock_signal_ids

__all__ = ["RECORDING_FAILED", "Decision", "Due", "StepLost", "count_step_failure",
           "record_decision"]

logger = logging.getLogger(__name__)



class StepLost(Exception):
    """The decision was not recorded: another step got there first, or the run ended."""


@dataclass
class Due:
    """A thread that steps now: its run object and the outcomes to hand it.

    ``run`` is ``None`` when the thread's workflow is not registered in this process (the
    outcome is then that failure); ``new_records`` is ``None`` when the run starts from its
    history rather than resuming in memory (or catching up, with ``since``).
    """

    thread: WorkflowThread | None
    run: WorkflowRun | None
    new_records: list[HistoryRecord] | None
    #: The step the run in memory is at when it missed later steps (it catches up on
    #: ``new_records``, which then hold what those steps recorded); ``None`` when it is current.
    since: int | None = None

    @property
    def dimension(self) -> str:
        return "" if self.thread is None else self.thread.dimension


@dataclass
class Decision:
    """What one step decided, before it is recorded.

    Attributes:
        kept: Runs in memory that did not step (other threads), kept with the new version.
    """

    step: int
    version: int
    effects: StepEffects
    outcomes: list[tuple[Due, StepOutcome]]
    kept: dict[str, WorkflowRun] = field(default_factory=dict)
    delivered: list[int] = field(default_factory=list)
    local_attempts: list[HistoryEvent] = field(default_factory=list)

    def wake_at(self, execution: WorkflowExecution) -> int:
        """The run's ``wake_at`` after this step: ``0`` (every outcome steps the run) unless the
        main thread alone is in memory, suspended on ``workflow.all`` groups only; then the
        count of settled outcomes as read before this step's outcomes were, plus how many more
        must arrive before the next could move it (a count read earlier errs early, never
        late)."""
        if len(self.outcomes) != 1 or self.kept:
            return 0
        item, outcome = self.outcomes[0]
        if item.thread is not None or outcome.status != StepStatus.SUSPENDED \
                or outcome.outcomes_to_wake < 2:
            return 0
        return execution.outcomes_settled + outcome.outcomes_to_wake


def record_decision(execution: WorkflowExecution, decision: Decision, eager: EagerPolicy, *,
            claimed_by: int | None,
            settle: tuple[int, int, Any, dict[str, Any] | None, int | None] | None = None,
            also: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Write ``decision`` in one transaction; raise :class:`StepLost` if it lost a race.

    Args:
        claimed_by: The process holding the step claim (general path), or ``None`` for the
            sequential path, which requires that nobody holds it.
        settle: ``(event pk, attempt, result, error, worker id)``: an activity outcome recorded
            in the same transaction (sequential path).
    """
    effects = decision.effects
    now = effects.now
    fields = _execution_fields(execution, decision)
    wake_at = fields.pop("wake_at")
    with transaction.atomic():
        # The run's row first, then its history rows: the order every writer locks them in
        # (an interrupt, a finish), so two of them never wait on each other.
        current = WorkflowExecution.objects.filter(
            pk=execution.pk, step_count=decision.version, status__in=ACTIVE_STATUSES,
            step_claimed_by_id=claimed_by)
        if not current.update(**fields, wake_at=_without_threads(execution.pk, wake_at)):
            raise StepLost("another step recorded a decision first, or the run ended")
        execution.wake_at = wake_at
        if settle is not None:
            event_pk, attempt, result, error, worker_id = settle
            if not HistoryEvent.objects.settle(event_pk, result=result, error=error, now=now,
                                               attempt=attempt, worker_id=worker_id,
                                               observed_step=decision.step):
                raise StepLost("the activity outcome was recorded by someone else")
            if also is not None:
                also()
        for name, value in fields.items():
            setattr(execution, name, value)
        if decision.delivered:
            HistoryEvent.objects.filter(pk__in=decision.delivered, observed_step__isnull=True,
                                        status__in=RESOLVED_STATUSES).update(
                observed_step=decision.step)
        attempts = _record_outcomes(execution, decision, eager)
        effects.batch.commit()
    return attempts


def _without_threads(execution_pk: int, wake_at: int) -> Any:
    """``wake_at``, or ``0`` when a hook thread runs (its calls are not counted in it)."""
    if not wake_at:
        return 0
    running = WorkflowThread.objects.filter(execution_id=execution_pk,
                                            status=ExecutionStatus.RUNNING)
    return Case(When(Exists(running), then=Value(0)), default=Value(wake_at))


def _execution_fields(execution: WorkflowExecution, decision: Decision) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "step_count": decision.step, "step_claimed_by": None, "step_claimed_until": None,
        "step_requested": False, "updated_at": decision.effects.now,
        "status": ExecutionStatus.RUNNING, "step_failures": 0,
        "wake_at": decision.wake_at(execution),
    }
    if decision.effects.document_changed:
        fields["document"] = execution.document
    return fields


def _record_outcomes(execution: WorkflowExecution, decision: Decision,
                     eager: EagerPolicy) -> list[dict[str, Any]]:
    effects = decision.effects
    signal_ids = [c.name for _, outcome in decision.outcomes for c in outcome.commands
                  if c.kind in ("wait", "signal")]
    if signal_ids:
        lock_signal_ids(execution.namespace, signal_ids)
    attempts: list[dict[str, Any]] = []
    for _, outcome in decision.outcomes:
        attempts += record_commands(execution, outcome.commands, decision.step, effects, eager)
    for event in decision.local_attempts:
        if eager.worker_id is not None:
            dispatch_attempt(execution, event, effects.now, effects.batch,
                             claim_for=eager.worker_id, celery_task_id=eager.task_id)
            attempts.append(activity_message(execution, event))
    effects.apply()
    for item, outcome in decision.outcomes:  # after apply(): the step's own timers exist
        if item.thread is None and outcome.cancelled and item.run is not None:
            ended = end_cancelled_calls(execution, outcome.cancelled,
                                        item.run.context.cancel_reason, effects)
            attempts = [a for a in attempts if a["event"] not in ended]
    main: StepOutcome | None = None
    for item, outcome in decision.outcomes:
        if item.thread is None:
            main = outcome
        else:
            _record_thread_outcome(execution, item.thread, outcome, effects)
    _record_main_outcome(execution, main, effects)
    return attempts if execution.is_active else []  # an ended run's open calls were cancelled


def _failure(error: BaseException) -> AttemptFailure:
    return AttemptFailure(FailureKind.RAISED, describe_error(error), exception_type_names(error))


def _record_main_outcome(execution: WorkflowExecution, outcome: StepOutcome | None,
                         effects: StepEffects) -> None:
    now = effects.now
    if outcome is not None and outcome.status == StepStatus.COMPLETED:
        finish_execution(execution, ExecutionStatus.COMPLETED, now=now, batch=effects.batch,
                         result=outcome.result)
    elif outcome is not None and outcome.status == StepStatus.FAILED:
        assert outcome.error is not None
        error = describe_error(outcome.error)
        if outcome.retryable:
            policy = RetryPolicy.from_dict(execution.retry_policy)
            verdict = decide_retry(policy, execution.attempt, _failure(outcome.error))
            if verdict.retry:
                record_workflow_retry(execution, execution.attempt, verdict.error,
                                      verdict.delay, now)
                execution.attempt += 1
                execution.error = verdict.error
                execution.save(update_fields=["attempt", "error"])
                effects.add_timer(None, TimerKind.WORKFLOW_RETRY, verdict.delay)
                effects.apply()
                logger.warning("durable_celery: workflow %s failed (%s: %s); retry %d in %.1fs",
                               execution.workflow_id, error.get("type"), error.get("message"),
                               execution.attempt - 1, verdict.delay)
                return
            error = verdict.error
        logger.warning("durable_celery: workflow %s failed: %s: %s\n%s", execution.workflow_id,
                       error.get("type"), error.get("message"), error.get("traceback", ""))
        finish_execution(execution, ExecutionStatus.FAILED, now=now, batch=effects.batch,
                         error=error)
    elif outcome is not None and outcome.status == StepStatus.CANCELLED:
        assert outcome.error is not None
        finish_execution(execution, ExecutionStatus.INTERRUPTED, now=now, batch=effects.batch,
                         error=describe_error(outcome.error))
    elif outcome is not None and outcome.status == StepStatus.CONTINUED:
        continue_run(execution, list(outcome.result or []), effects)
        return
    elif effects.interrupt_self is not None:
        reason, descend = effects.interrupt_self
        children = list(WorkflowExecution.objects.filter(
            namespace=execution.namespace, parent_workflow_id=execution.workflow_id,
            status__in=ACTIVE_STATUSES).values_list("workflow_id", flat=True)) if descend else []
        finish_execution(execution, ExecutionStatus.INTERRUPTED, now=now, batch=effects.batch,
                         error={"class": "DurableInterruptedError",
                                "type": "DurableInterruptedError",
                                "message": reason or "workflow interrupted", "code": 410})
        for child in children:
            interrupt_execution(execution.namespace, child, reason, True, batch=effects.batch)
    else:
        return
    execution.save(update_fields=FINISHED_FIELDS)


def _record_thread_outcome(execution: WorkflowExecution, thread: WorkflowThread,
                           outcome: StepOutcome, effects: StepEffects) -> None:
    """How a hook thread's step ended: done, retried on a stored timer, or failed for good —
    then an ``exec_hook`` waiting for its answer receives the failure instead of waiting."""
    thread.step_requested = False
    if outcome.status == StepStatus.COMPLETED:
        thread.status = ExecutionStatus.COMPLETED
        thread.completed_at = effects.now
    elif outcome.status == StepStatus.FAILED:
        assert outcome.error is not None
        error = describe_error(outcome.error)
        verdict = decide_retry(RetryPolicy.from_dict(thread.retry_policy), thread.attempt,
                               _failure(outcome.error)) if outcome.retryable else None
        if verdict is not None and verdict.retry:
            effects.add_timer(None, TimerKind.HOOK_RETRY, verdict.delay, thread_id=thread.pk)
            thread.attempt += 1
            thread.error = verdict.error
        else:
            error = verdict.error if verdict is not None else error
            thread.status = ExecutionStatus.FAILED
            thread.error = error
            thread.completed_at = effects.now
            fail_hook_waiters(execution, thread, error, effects)
            logger.warning("durable_celery: hook %s [%s] of workflow %s failed: %s",
                           thread.workflow_name, thread.dimension, execution.workflow_id,
                           error.get("message"))
    thread.save()
    effects.apply()


#: How a step failure is described when the run fails on it (by default: recording failed).
RECORDING_FAILED = "the decision of a replay step could not be recorded"


def count_step_failure(execution_pk: int, error: BaseException, *,
                       what: str = RECORDING_FAILED, held_by: int | None = None,
                       request_step: OutboxBatch | None = None) -> bool:
    """A replay step that failed (its decision could not be recorded, or the process taking it
    died): count it and release the run's step claim; past ``DURABLE_MAX_STEP_FAILURES`` in a
    row (a recorded step resets the count) the run fails, naming ``what`` and the last error.

    Args:
        error: What went wrong this time.
        what: The failure, in words, for the log and the run's error.
        held_by: Count it only while this process still holds the run's step claim.
        request_step: Ask for the step again through this batch (in the caller's transaction)
            while the bound is not reached; without it the step stays requested as it was.

    Returns:
        Whether the run failed.
    """
    limit = int(durable_setting("DURABLE_MAX_STEP_FAILURES"))
    with transaction.atomic():
        execution = WorkflowExecution.objects.lock(execution_pk)
        if execution is None or not execution.is_active or (
                held_by is not None and execution.step_claimed_by_id != held_by):
            return False
        execution.step_failures += 1
        kind = str(getattr(error, "type", None) or type(error).__name__)
        logger.warning("durable_celery: %s (run %s, workflow %s, %d of %d in a row): %s: %s",
                       what, execution_pk, execution.workflow_id, execution.step_failures,
                       limit, kind, safe_str(error),
                       exc_info=error if error.__traceback__ is not None else None)
        execution.step_claimed_by = None
        execution.step_claimed_until = None
        if execution.step_failures < limit:
            fields = ["step_failures", "step_claimed_by", "step_claimed_until"]
            if request_step is not None:
                execution.step_requested = True
                fields.append("step_requested")
                request_step.request_step(execution.pk, execution.task_queue)
            execution.save(update_fields=fields)
            return False
        batch = OutboxBatch()
        stored = DurableFatalError(
            f"{what} {execution.step_failures} times in a row; last error: {kind}: "
            f"{safe_str(error)}", type=kind).to_dict()
        finish_execution(execution, ExecutionStatus.FAILED, now=clock.now(), batch=batch,
                         error=stored)
        execution.save(update_fields=[*FINISHED_FIELDS, "step_failures"])
        batch.commit()
    return True
