"""Replay steps: decide outside any transaction, record the decision in one short transaction.

A run is stepped by one process at a time. A process *claims* the step (``step_claimed_by`` on
the run's row, with a lease of ``DURABLE_STEP_LEASE``), reads a snapshot — or takes the run from
its in-memory cache, catching it up on steps other processes took since its version — lets the
workflow decide, and records the decision in one transaction whose first statement checks the
version and the claim and releases the claim. After releasing, it looks once for news that
arrived meanwhile and steps again if there is any; an outcome recorded while another process
steps is therefore picked up by that process, so completions of a wide fan-out coalesce into few
steps.

The sequential path, which needs no claim, is :mod:`durable_celery.store.sequential`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import InterfaceError, OperationalError
from django.db.models import Exists, OuterRef, Q

from .. import clock
from ..conf import durable_setting
from ..engine import HistoryRecord, StepOutcome, StepStatus, WorkflowInfo, WorkflowRun
from ..engine.cache import RunCache
from ..errors import UnknownWorkflowError
from ..interceptors import workflow_interceptors
from ..models import (
    ACTIVE_STATUSES,
    ExecutionStatus,
    HistoryEvent,
    HistoryStatus,
    WorkflowExecution,
    WorkflowThread,
)
from ..registry import find_workflow, registered_workflows
from ..telemetry import workflow_span
from .claims import claim_step_returning
from .commands import NO_EAGER, EagerPolicy
from .connection import connection_failed, with_fresh_connection
from .decisions import Decision, Due, StepLost, count_step_failure, record_decision
from .effects import StepEffects, StepPort
from .fastpath import (
    has_news_fast,
    record_step_in_one_statement,
    usable,
)
from .inspect import warn_if_not_held
from .operations_table import STEP_OPERATIONS

__all__ = [
    "CachedRun",
    "RowsRead",
    "StepLost",
    "can_continue_locally",
    "claim_step",
    "decide",
    "drive",
    "has_news",
    "keep_runs",
    "read_rows",
    "run_cache",
    "run_replay_step",
    "unrecorded",
]

logger = logging.getLogger(__name__)

_cache: RunCache[CachedRun] | None = None


def run_cache() -> RunCache[CachedRun]:
    """This process's cache of suspended runs (``DURABLE_WORKFLOW_CACHE_SIZE`` entries)."""
    global _cache
    if _cache is None:
        _cache = RunCache(int(durable_setting("DURABLE_WORKFLOW_CACHE_SIZE")))
    return _cache


@dataclass(eq=False)
class CachedRun:
    """A run kept in memory: its coroutines by dimension, valid at ``version``."""

    version: int
    execution: WorkflowExecution
    runs: dict[str, WorkflowRun]

    def close(self) -> None:
        for run in self.runs.values():
            run.close()
        self.runs = {}


# -- claims and news ------------------------------------------------------------------------


def claim_step(execution_pk: int, worker_id: int) -> WorkflowExecution | None:
    """Claim the next step of a run for this process (free, or its holder's lease ran out).

    Returns:
        The run as claimed (read by the claim itself on PostgreSQL), or ``None`` when another
        process holds the step or the run ended.
    """
    now = clock.now()
    lease = now + timedelta(seconds=float(durable_setting("DURABLE_STEP_LEASE")))
    if usable():
        return claim_step_returning(execution_pk, worker_id, now, lease)
    claimed = WorkflowExecution.objects.filter(
        Q(step_claimed_by__isnull=True) | Q(step_claimed_until__lt=now),
        pk=execution_pk, status__in=ACTIVE_STATUSES,
    ).update(step_claimed_by_id=worker_id, step_claimed_until=lease)
    return WorkflowExecution.objects.filter(pk=execution_pk).first() if claimed else None


def _release(execution_pk: int, worker_id: int) -> None:
    WorkflowExecution.objects.filter(pk=execution_pk, step_claimed_by_id=worker_id).update(
        step_claimed_by=None, step_claimed_until=None)


def has_news(execution_pk: int) -> bool:
    """Whether the run has outcomes no step has seen (and does not hold back), or a step was
    asked for."""
    if usable():
        return has_news_fast(execution_pk)
    unobserved = HistoryEvent.objects.news().filter(execution_id=OuterRef("pk"))
    requested = WorkflowThread.objects.filter(execution_id=OuterRef("pk"),
                                              status=ExecutionStatus.RUNNING,
                                              step_requested=True)
    return WorkflowExecution.objects.filter(
        Q(step_requested=True) | Q(Exists(unobserved)) | Q(Exists(requested)),
        pk=execution_pk, status__in=ACTIVE_STATUSES).exists()


def can_continue_locally(workflow_name: str) -> bool:
    """Whether this process may run the next step itself (it has the workflow's code)."""
    return bool(durable_setting("DURABLE_LOCAL_CONTINUATION")) and \
        workflow_name in registered_workflows()


# -- the general path -----------------------------------------------------------------------


@dataclass
class RowsRead:
    """History rows as the replay takes them, by dimension (thread).

    Attributes:
        by_dimension: Every record read.
        unobserved: The outcomes no step has seen yet.
        delivered: The rows of those outcomes (the step that delivers them marks them seen).
    """

    by_dimension: dict[str, list[HistoryRecord]] = field(
        default_factory=lambda: defaultdict(list))
    unobserved: dict[str, list[HistoryRecord]] = field(default_factory=lambda: defaultdict(list))
    delivered: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))


def read_rows(rows: Any, skip: int | None = None) -> RowsRead:
    """Turn :meth:`~durable_celery.managers.HistoryEventQuerySet.for_replay`-shaped tuples into
    records (leaving out the row ``skip``)."""
    read = RowsRead()
    for pk, seq, dimension, kind, name, status, result, error, observed in rows:
        if pk == skip:
            continue
        record = HistoryRecord(seq, dimension, kind, name, status, result, error, observed)
        read.by_dimension[dimension].append(record)
        if record.resolved and observed is None:
            read.unobserved[dimension].append(record)
            read.delivered[dimension].append(pk)
    return read


def run_replay_step(execution_pk: int, worker_id: int,
                    eager: EagerPolicy = NO_EAGER) -> list[dict[str, Any]]:
    """The replay-step task body: claim the run's step and step while there is news.

    Returns:
        Attempts claimed to run in this process (eager and local activities).
    """
    claimed = with_fresh_connection(lambda: claim_step(execution_pk, worker_id))
    if claimed is None:  # another process steps it and will see whatever asked for this step
        warn_if_not_held(WorkflowExecution.objects.filter(pk=execution_pk),
                         f"run {execution_pk}")
        return []
    return drive(claimed, worker_id, eager)


def drive(claimed: WorkflowExecution, worker_id: int,
          eager: EagerPolicy = NO_EAGER) -> list[dict[str, Any]]:
    """Step a run whose claim this process holds (``claimed``: the run as claimed), while it
    has news; release the claim.

    Returns:
        Attempts claimed to run in this process.
    """
    attempts: list[dict[str, Any]] = []
    execution: WorkflowExecution | None = claimed
    while execution is not None:
        attempts += _step_claimed(execution, worker_id, eager)
        news = getattr(execution, "durable_news", None)  # the recording statement looked
        if not (has_news(claimed.pk) if news is None else news):
            break
        execution = claim_step(claimed.pk, worker_id)
    return attempts


def _step_claimed(execution: WorkflowExecution, worker_id: int,
                  eager: EagerPolicy) -> list[dict[str, Any]]:
    execution_pk = execution.pk
    if not execution.is_active or execution.step_claimed_by_id != worker_id:
        _release(execution_pk, worker_id)
        return []
    entry = run_cache().take(execution_pk)
    if entry is not None and entry.version > execution.step_count:
        entry.close()  # from a step that was never recorded
        entry = None
    decision: Decision | None = None
    try:
        decision = _decide_from_snapshot(execution, entry)
        if decision is None:
            _release(execution_pk, worker_id)
            return []
        fast = record_step_in_one_statement(execution, decision, eager, worker_id)
        attempts = fast if fast is not None else record_decision(execution, decision, eager,
                                                                 claimed_by=worker_id)
    except StepLost:
        unrecorded(decision)
        return []
    except (OperationalError, InterfaceError) as error:
        unrecorded(decision)
        if connection_failed(error):
            raise  # the connection is gone: the step stays requested and is re-driven
        count_step_failure(execution_pk, error)  # refused: counted like a bad value
        return []
    except Exception as error:  # noqa: BLE001 - a decision that cannot be recorded is counted
        unrecorded(decision)
        count_step_failure(execution_pk, error)
        return []
    keep_runs(execution, decision)
    return attempts


def _decide_from_snapshot(execution: WorkflowExecution,
                          entry: CachedRun | None) -> Decision | None:
    """Read what the step needs and let every thread with news decide.

    With ``entry`` (the run in memory) only the outcomes no step has seen are read — and, when
    other processes took steps since the entry's version, what those steps recorded, for the
    run to catch up on; if a thread with news is not in memory, the entry is dropped and the
    history is read whole. Returns ``None`` when no thread has anything to do.
    """
    # What the claim found (PostgreSQL): skip reading what is not there.
    threads = list(WorkflowThread.objects.filter(
        execution_id=execution.pk, status=ExecutionStatus.RUNNING)) \
        if getattr(execution, "durable_has_threads", True) else []
    behind = entry is not None and entry.version < execution.step_count
    if not getattr(execution, "durable_has_history", True):
        rows: Any = []
    elif entry is not None and behind:
        rows = HistoryEvent.objects.missed_by(
            execution.pk, entry.version, {d: run.context.counter for d, run in entry.runs.items()})
    elif entry is not None:
        rows = HistoryEvent.objects.unobserved().filter(execution_id=execution.pk) \
            .values_list("pk", "seq", "dimension", "kind", "name", "status", "result", "error",
                         "observed_step")
    else:
        rows = HistoryEvent.objects.for_replay(execution.pk)
    read = read_rows(rows)
    by_dimension, unobserved = read.by_dimension, read.unobserved
    due_threads = [thread for thread, requested in
                   [(None, execution.step_requested), *((t, t.step_requested) for t in threads)]
                   if requested or unobserved.get("" if thread is None else thread.dimension)]
    if not due_threads:
        if entry is not None:
            run_cache().put(execution.pk, entry)  # still good to catch up later
        return None
    if entry is not None:
        runs = entry.runs
        if not all(runs.get(_dimension(t)) is not None and runs[_dimension(t)].resumable
                   for t in due_threads):
            entry.close()
            return _decide_from_snapshot(execution, None)
        if behind:
            due = [Due(t, runs[_dimension(t)], by_dimension.get(_dimension(t), []),
                       since=entry.version) for t in due_threads]
        else:
            execution.document = entry.execution.document
            search = getattr(entry.execution, "_durable_search", None)
            if search is not None:
                execution._durable_search = search  # type: ignore[attr-defined]
            due = [Due(t, runs[_dimension(t)], unobserved.get(_dimension(t), []))
                   for t in due_threads]
        due_dimensions = {_dimension(t) for t in due_threads}
        kept = {}
        for dimension, run in runs.items():
            if dimension in due_dimensions:
                continue
            if behind and _moved_on(run, by_dimension.get(dimension, []), entry.version):
                run.close()  # missed steps of a thread that does not step now: replay it later
            else:
                kept[dimension] = run
    else:
        due = [Due(t, _new_run(execution, t, by_dimension.get(_dimension(t), [])), None)
               for t in due_threads]
        kept = {}
    decision = decide(execution, due)
    decision.kept = kept
    decision.delivered = [pk for pks in read.delivered.values() for pk in pks]
    if execution.step_requested and execution.step_count:  # a first step has no calls yet
        decision.local_attempts = list(HistoryEvent.objects.filter(
            execution_id=execution.pk, kind="activity", status=HistoryStatus.SCHEDULED,
            worker__isnull=True, input__local=True))
    return decision


def _moved_on(run: WorkflowRun, records: list[HistoryRecord], since: int) -> bool:
    """Whether later steps moved this thread on: an outcome it waits for was seen, or it
    made new calls."""
    position = run.context.counter
    return any(r.seq > position or (r.observed_step or 0) > since for r in records)


def _dimension(thread: WorkflowThread | None) -> str:
    return "" if thread is None else thread.dimension


def _info(execution: WorkflowExecution, thread: WorkflowThread | None, step: int) -> WorkflowInfo:
    return WorkflowInfo(
        workflow_id=execution.workflow_id,
        workflow_name=execution.workflow_name if thread is None else thread.workflow_name,
        task_queue=execution.task_queue if thread is None else thread.task_queue,
        namespace=execution.namespace, workflow_dimension=_dimension(thread),
        parent_workflow_id=execution.parent_workflow_id,
        origin_workflow_id=execution.origin_workflow_id, expire=execution.expire, step=step,
        run_id=execution.run_id)


def _new_run(execution: WorkflowExecution, thread: WorkflowThread | None,
             records: list[HistoryRecord]) -> WorkflowRun | None:
    name = execution.workflow_name if thread is None else thread.workflow_name
    if name not in registered_workflows():
        return None
    args = execution.args if thread is None else thread.args
    return WorkflowRun(find_workflow(name).entry, args,
                       _info(execution, thread, execution.step_count + 1), records,
                       workflow_interceptors())  # type: ignore[arg-type]


def _unknown(name: str) -> UnknownWorkflowError:
    try:
        find_workflow(name)
    except UnknownWorkflowError as error:
        return error
    return UnknownWorkflowError(f"workflow {name!r} was not registered when the step began")


def decide(execution: WorkflowExecution, due: list[Due]) -> Decision:
    """Run every due thread of the step and collect what they decided."""
    step = execution.step_count + 1
    effects = StepEffects(execution, clock.now())
    port = StepPort(effects, STEP_OPERATIONS)
    decision = Decision(step=step, version=execution.step_count, effects=effects, outcomes=[])
    with workflow_span(f"step/{execution.workflow_name}", execution.namespace,
                       execution.workflow_id, {"durable.step": step, "durable.threads": len(due)}):
        for item in due:
            info = _info(execution, item.thread, step)
            if item.run is None:
                outcome = StepOutcome(StepStatus.FAILED, error=_unknown(info.workflow_name))
            elif item.new_records is None:
                item.run.context.port = port
                item.run.context.info = info
                outcome = item.run.start()
            elif item.since is not None:
                outcome = item.run.catch_up(info, item.new_records, item.since, port)
            else:
                outcome = item.run.resume(info, item.new_records, port)
            decision.outcomes.append((item, outcome))
    return decision


# -- the runs kept in memory ----------------------------------------------------------------


def keep_runs(execution: WorkflowExecution, decision: Decision) -> None:
    """After commit: keep the runs that can take the next step's outcomes in memory."""
    runs = dict(decision.kept)
    for item, _ in decision.outcomes:
        if item.run is not None:
            if item.run.resumable:
                item.run.commit()
            runs[item.dimension] = item.run
    keep = {d: r for d, r in runs.items() if r.resumable}
    for dimension, run in runs.items():
        if dimension not in keep:
            run.close()
    if execution.is_active and keep:
        run_cache().put(execution.pk, CachedRun(decision.step, execution, keep))
    else:
        for run in keep.values():
            run.close()


def unrecorded(decision: Decision | None) -> None:
    """A decision that was not recorded: its runs moved past the database; drop them."""
    if decision is None:
        return
    for item, _ in decision.outcomes:
        if item.run is not None:
            item.run.close()
    for run in decision.kept.values():
        run.close()
