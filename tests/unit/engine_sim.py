"""A tiny stand-in for the store: runs ``ReplayStep`` step after step on hand-made history.

It does what ``durable_celery.store.steps`` does with the engine, without a database: new commands
become history records, outcomes are settled by the test, and every outcome is stamped with the
number of the first step that saw it (``observed_step``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from durable_celery.engine import HistoryRecord, ReplayStep, StepOutcome, WorkflowInfo, WorkflowRun
from durable_celery.engine.history import CANCEL_KIND, CANCEL_POSITION

__all__ = ["Sim", "info", "record", "run_step"]


def info(**overrides: Any) -> WorkflowInfo:
    """A ``WorkflowInfo`` with test defaults."""
    fields: dict[str, Any] = {"workflow_id": "wf-1", "workflow_name": "flow",
                              "task_queue": "q", "namespace": "ns"}
    fields.update(overrides)
    return WorkflowInfo(**fields)


def record(seq: int, kind: str, name: str = "", status: str = "completed", result: Any = None,
           error: dict[str, Any] | None = None, observed_step: int | None = 1) -> HistoryRecord:
    """One hand-made history record of the main thread."""
    return HistoryRecord(seq, "", kind, name, status, result, error, observed_step)


def run_step(function: Callable[..., Awaitable[Any]], history: Sequence[HistoryRecord] = (),
             args: Sequence[Any] = (), **info_fields: Any) -> StepOutcome:
    """Run one replay step of ``function`` against ``history``."""
    return ReplayStep(function, args, info(**info_fields), history).run()


class Sim:
    """Drives one workflow through successive replay steps, like the store would.

    Args:
        function: The workflow function.
        args: Its arguments.
        keep: Keep the suspended run in memory between steps and hand it only the outcomes new
            to each step (as a worker's run cache does) instead of replaying from history.
        processes: With ``keep``, how many processes take turns stepping the run, each with its
            own run in memory: a process whose run missed the other processes' steps catches it
            up (as prefork children do when steps alternate between them).
        port: What storage-computed calls (``start_child``, ``search`` …) perform against.
        info_fields: ``WorkflowInfo`` fields other than the test defaults (e.g. ``run_id``).
    """

    def __init__(self, function: Callable[..., Awaitable[Any]], args: Sequence[Any] = (),
                 keep: bool = False, port: Any = None, processes: int = 1,
                 **info_fields: Any) -> None:
        self.function = function
        self.args = list(args)
        self.keep = keep
        self.processes = processes
        #: Per process other than the stepping one: its run in memory and the step it is at.
        self.parked: dict[int, tuple[WorkflowRun, int]] = {}
        self.port = port
        self.info_fields = info_fields
        self.records: dict[int, HistoryRecord] = {}
        self.steps = 0
        self.outcomes: list[StepOutcome] = []
        self.run: WorkflowRun | None = None

    def step(self) -> StepOutcome:
        """Run the next step, stamp the outcomes it saw, and record its new commands (and the
        calls a cancellation ended, as cancelled)."""
        self.steps += 1
        step_info = info(**{**self.info_fields, "step": self.steps})
        records = sorted(self.records.values(), key=lambda r: r.seq)
        since = self.steps - 1
        if self.keep and self.processes > 1:
            self._switch_process()
            since = self._at
        if self.keep and self.run is not None and self.run.resumable and since < self.steps - 1:
            counter = self.run.context.counter  # what the store reads (missed_by)
            later = [r for r in records
                     if (r.observed_step is not None and r.observed_step > since)
                     or (r.resolved and r.observed_step is None) or r.seq > counter]
            outcome = self.run.catch_up(step_info, later, since, self.port)
        elif self.keep and self.run is not None and self.run.resumable:
            new = [r for r in records if r.resolved and r.observed_step is None]
            outcome = self.run.resume(step_info, new, self.port)
        else:
            if self.run is not None:
                self.run.close()
            self.run = WorkflowRun(self.function, self.args, step_info, records, port=self.port)
            outcome = self.run.start()
        for seq, rec in list(self.records.items()):
            if rec.resolved and rec.observed_step is None:
                self.records[seq] = _replace(rec, observed_step=self.steps)
        for command in outcome.commands:
            assert command.seq not in self.records, f"position {command.seq} taken twice"
            observed = self.steps if command.status != "scheduled" else None
            self.records[command.seq] = HistoryRecord(
                command.seq, command.dimension, command.kind, command.name, command.status,
                command.result, command.error, observed)
        for seq in outcome.cancelled:
            assert self.records[seq].status == "scheduled", seq
            self.records[seq] = _replace(self.records[seq], status="cancelled")
        if self.keep and self.run.resumable:
            self.run.commit()
        else:
            self.run.close()
            self.run = None
        self._at = self.steps
        self.outcomes.append(outcome)
        return outcome

    _at = 0

    def _switch_process(self) -> None:
        """Park the run of the process that took the last step; take out the next one's."""
        process = self.steps % self.processes
        previous = (self.steps - 1) % self.processes
        if self.run is not None:
            self.parked[previous] = (self.run, self._at)
        self.run, self._at = self.parked.pop(process, (None, 0))
        if self.run is not None and not self.run.resumable:
            self.run.close()
            self.run = None

    def close(self) -> None:
        """Close every run still in memory (the stepping one and the parked ones)."""
        runs = [self.run, *(run for run, _ in self.parked.values())]
        self.run, self.parked = None, {}
        for run in runs:
            if run is not None:
                run.close()

    def cancel(self, reason: str | None = None) -> None:
        """Record a cancellation request (not yet seen by any step), as ``handle.cancel`` does."""
        self.records[CANCEL_POSITION] = HistoryRecord(
            CANCEL_POSITION, "", CANCEL_KIND, "", "completed", {"reason": reason}, None, None)

    def replay(self) -> StepOutcome:
        """A replay from the whole history as it stands, without recording anything."""
        return ReplayStep(self.function, self.args, info(**self.info_fields),
                          sorted(self.records.values(), key=lambda r: r.seq),
                          port=self.port).run()

    def seq_of(self, kind: str, name: str) -> int:
        """The position history gave to the (only) call of ``kind`` ``name``."""
        found = [r.seq for r in self.records.values() if r.kind == kind and r.name == name]
        assert len(found) == 1, (kind, name, found)
        return found[0]

    def complete(self, name: str, result: Any = None, kind: str = "activity",
                 seq: int | None = None) -> None:
        """Settle the scheduled call ``name`` (or the one at ``seq``) with ``result`` (not yet
        seen by any step)."""
        seq = self.seq_of(kind, name) if seq is None else seq
        assert self.records[seq].status == "scheduled"
        self.records[seq] = _replace(self.records[seq], status="completed", result=result)

    def fail(self, name: str, error: dict[str, Any], kind: str = "activity") -> None:
        """Settle the scheduled call ``name`` with a stored error."""
        seq = self.seq_of(kind, name)
        self.records[seq] = _replace(self.records[seq], status="failed", error=error)

    def positions(self) -> dict[str, int]:
        """``{name: seq}`` for every recorded call."""
        return {r.name: r.seq for r in self.records.values()}


def _replace(rec: HistoryRecord, **changes: Any) -> HistoryRecord:
    return dataclasses.replace(rec, **changes)
