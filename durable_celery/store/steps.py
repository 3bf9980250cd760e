"""Replay steps: lock the execution, load its history in one query, replay, record the decision."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..conf import durable_setting
from ..engine import HistoryRecord, ReplayStep, StepOutcome, StepStatus, WorkflowInfo
from ..engine.replay import describe_error
from ..errors import DurableMaxedError, UnknownWorkflowError
from ..models import (
    ExecutionStatus,
    HistoryEvent,
    Timer,
    TimerKind,
    WorkflowExecution,
    WorkflowThread,
)
from ..registry import find_workflow, registered_workflows
from ..retry import RetryPolicy
from ..telemetry import workflow_span
from .commands import CommandEffects, apply_commands
from .composition import fail_hook_waiters, notify_parent
from .executions import interrupt_execution
from .outbox import OutboxBatch
from .port import StepPort
from .signals import lock_signal_ids

__all__ = [
    "can_continue_locally", "run_replay_step", "settle_and_continue", "workflow_interceptors",
]

logger = logging.getLogger(__name__)

#: Steps run back to back in one transaction when a step settles outcomes of its own.
MAX_STEPS_PER_TRANSACTION = 20

#: Returns the workflow interceptors to apply, outermost first (set by the interceptor module).
workflow_interceptors: Callable[[], list[object]] = list


def can_continue_locally(workflow_name: str) -> bool:
    """Whether this process may run the next step itself (it has the workflow's code)."""
    return bool(durable_setting("DURABLE_LOCAL_CONTINUATION")) and \
        workflow_name in registered_workflows()


def run_replay_step(execution_pk: int) -> None:
    """The replay-step task body: wait for the execution's lock, then step while there is news."""
    with transaction.atomic():
        execution = WorkflowExecution.objects.lock(execution_pk)
        if execution is None:
            return
        batch = OutboxBatch()
        _step_while_needed(execution, batch)
        batch.commit()


def settle_and_continue(execution_pk: int, task_queue: str, workflow_name: str,
                        settle: Callable[[OutboxBatch], bool]) -> bool:
    """Record an outcome with ``settle`` and make sure a replay step follows it.

    Fast path (this process has the workflow code and the execution is free): record and step in
    one transaction. Otherwise record and request a step through the outbox.

    Returns:
        What ``settle`` returned: whether it recorded anything.
    """
    if can_continue_locally(workflow_name):
        with transaction.atomic():
            execution = WorkflowExecution.objects.lock(execution_pk, skip_locked=True)
            if execution is not None:
                batch = OutboxBatch()
                recorded = settle(batch)
                if recorded:
                    _step_while_needed(execution, batch)
                batch.commit()
                return recorded
    with transaction.atomic():
        batch = OutboxBatch()
        recorded = settle(batch)
        if recorded:
            batch.request_step(execution_pk, task_queue)
        batch.commit()
        return recorded


def _step_while_needed(execution: WorkflowExecution, batch: OutboxBatch) -> None:
    for _ in range(MAX_STEPS_PER_TRANSACTION):
        if not execution.is_active or not _step_once(execution, batch):
            return
    batch.request_step(execution.pk, execution.task_queue)


def _step_once(execution: WorkflowExecution, batch: OutboxBatch) -> bool:
    """One replay step of every thread with news. Returns whether to step again right away."""
    by_dimension: dict[str, list[HistoryRecord]] = defaultdict(list)
    unobserved: list[int] = []
    for pk, *fields in HistoryEvent.objects.for_replay(execution.pk):
        record = HistoryRecord(*fields)
        by_dimension[record.dimension].append(record)
        if record.resolved and record.observed_step is None:
            unobserved.append(pk)
    threads = list(WorkflowThread.objects.filter(execution=execution, status="running"))
    due: list[WorkflowThread | None] = []
    if _has_news(by_dimension[""], execution.step_requested):
        due.append(None)
    due += [t for t in threads if _has_news(by_dimension[t.dimension], t.step_requested)]
    if not due:
        return False
    now = timezone.now()
    step = execution.step_count + 1
    effects = CommandEffects(now, batch)
    port = StepPort(execution, effects)
    with workflow_span(f"step/{execution.workflow_name}", execution.namespace,
                       execution.workflow_id, {"durable.step": step, "durable.threads": len(due)}):
        replayed = [(thread, _replay(execution, thread, by_dimension, step, port))
                    for thread in due]
    if unobserved:
        HistoryEvent.objects.filter(pk__in=unobserved).update(observed_step=step)
    execution.step_count = step
    execution.step_requested = False
    if execution.status == ExecutionStatus.PENDING:
        execution.status = ExecutionStatus.RUNNING
    signal_ids = [c.name for _, outcome in replayed if outcome is not None
                  for c in outcome.commands if c.kind in ("wait", "signal")]
    if signal_ids:
        lock_signal_ids(execution.namespace, signal_ids)
    settled_now = False
    for thread, outcome in replayed:
        if outcome is None:
            continue
        settled_now |= apply_commands(execution, outcome.commands, step, effects)
        if thread is None:
            _record_outcome(execution, outcome, now, effects)
        else:
            settled_now |= _record_thread_outcome(execution, thread, outcome, effects)
    if execution.is_active:
        execution.save()
    if effects.interrupt_self is not None and execution.is_active:
        reason, descend = effects.interrupt_self
        interrupt_execution(execution.namespace, execution.workflow_id, reason, descend)
        execution.refresh_from_db()
    return (settled_now or effects.wake_self) and execution.is_active


def _has_news(records: list[HistoryRecord], requested: bool) -> bool:
    return requested or any(r.resolved and r.observed_step is None for r in records)


def _replay(execution: WorkflowExecution, thread: WorkflowThread | None,
            by_dimension: dict[str, list[HistoryRecord]], step: int,
            port: StepPort) -> StepOutcome | None:
    """Replay the main thread (``thread is None``) or one hook thread."""
    name = execution.workflow_name if thread is None else thread.workflow_name
    dimension = "" if thread is None else thread.dimension
    try:
        definition = find_workflow(name)
    except UnknownWorkflowError as error:
        return StepOutcome(StepStatus.FAILED, error=error)
    info = WorkflowInfo(
        workflow_id=execution.workflow_id, workflow_name=name,
        task_queue=execution.task_queue if thread is None else thread.task_queue,
        namespace=execution.namespace, workflow_dimension=dimension,
        parent_workflow_id=execution.parent_workflow_id,
        origin_workflow_id=execution.origin_workflow_id, expire=execution.expire, step=step)
    args = execution.args if thread is None else thread.args
    return ReplayStep(definition.entry, args, info, by_dimension[dimension],
                      workflow_interceptors(),  # type: ignore[arg-type]
                      port=port).run()


def _record_outcome(execution: WorkflowExecution, outcome: StepOutcome, now: datetime,
                    effects: CommandEffects) -> None:
    if outcome.status == StepStatus.COMPLETED:
        _finish(execution, ExecutionStatus.COMPLETED, result=outcome.result, now=now,
                batch=effects.batch)
    elif outcome.status == StepStatus.FAILED:
        assert outcome.error is not None
        error = describe_error(outcome.error)
        if outcome.retryable:
            policy = RetryPolicy.from_dict(execution.retry_policy)
            if policy.allows_retry(execution.attempt):
                delay = policy.delay_before_retry(execution.attempt)
                execution.attempt += 1
                execution.error = error
                Timer.objects.create(execution=execution, kind=TimerKind.WORKFLOW_RETRY,
                                     due_at=effects.now + _seconds(delay))
                logger.info("workflow %s failed (%s); retry %d in %.1fs",
                            execution.workflow_id, error["message"], execution.attempt - 1, delay)
                return
            error = DurableMaxedError(error["message"]).to_dict()
        _finish(execution, ExecutionStatus.FAILED, error=error, now=now, batch=effects.batch)


def _record_thread_outcome(execution: WorkflowExecution, thread: WorkflowThread,
                           outcome: StepOutcome, effects: CommandEffects) -> bool:
    """Record how a hook thread's step ended; ``True`` if that settled a wait of this execution.

    A failed hook is retried by its retry policy on a stored timer; when it fails for good, an
    ``exec_hook`` waiting for its answer receives the failure instead of waiting forever.
    """
    thread.step_requested = False
    settled_here = False
    if outcome.status == StepStatus.COMPLETED:
        thread.status = ExecutionStatus.COMPLETED
        thread.completed_at = effects.now
    elif outcome.status == StepStatus.FAILED:
        assert outcome.error is not None
        error = describe_error(outcome.error)
        policy = RetryPolicy.from_dict(thread.retry_policy)
        if outcome.retryable and policy.allows_retry(thread.attempt):
            Timer.objects.create(execution=execution, thread=thread, kind=TimerKind.HOOK_RETRY,
                                 due_at=effects.now + _seconds(
                                     policy.delay_before_retry(thread.attempt)))
            thread.attempt += 1
            thread.error = error
        else:
            if outcome.retryable:
                error = DurableMaxedError(str(error["message"])).to_dict()
            thread.status = ExecutionStatus.FAILED
            thread.error = error
            thread.completed_at = effects.now
            settled_here = fail_hook_waiters(execution, thread, error, effects)
            logger.warning("hook %s [%s] of workflow %s failed: %s", thread.workflow_name,
                           thread.dimension, execution.workflow_id, error["message"])
    thread.save()
    return settled_here


def _finish(execution: WorkflowExecution, status: str, *, now: datetime, batch: OutboxBatch,
            result: object = None, error: dict[str, object] | None = None) -> None:
    execution.status = status
    execution.result = result
    execution.error = error
    execution.completed_at = now
    execution.step_requested = False
    execution.save()
    Timer.objects.filter(execution=execution).delete()
    notify_parent(execution, batch)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
