"""``replay(workflow, history)``: does current code still fit runs recorded by earlier code?

A run's history is exported as JSON (``manage.py durable export``, or
``store.executions.export_run``; format 1). Replaying it runs the workflow function on the pure
engine — no database, no worker — and compares every durable call with the call history
recorded at the same position. A deploy whose code would take a different path through a run in
flight raises :class:`~durable_celery.errors.NonDeterminismError` here, in CI, instead of
failing that run in production.

What is checked, per run: the kind and name of each recorded call of the main thread, in order;
that the code reaches every recorded position (it does not return, fail or wait earlier); and,
for a run that completed, that the code makes no call after the last recorded one. A history
that ends mid-run (the workflow was waiting) passes when the code fits it up to its end; what
the code would do next is reported, not judged. Values (arguments, results) are not compared,
and hook threads are not replayed (an export does not name their functions).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import HistoryRecord, StepOutcome, StepStatus, WorkflowInfo, WorkflowRun
from ..errors import DurableInterruption, InvalidArgumentError, NonDeterminismError, safe_str
from ..interceptors import workflow_interceptors
from ..registry import WorkflowDefinition, find_workflow

__all__ = ["EXPORT_FORMAT", "History", "ReplayResult", "load_exports", "replay"]

#: The export format this module reads (``store.executions.EXPORT_FORMAT``).
EXPORT_FORMAT = 1

#: What :func:`replay` accepts as history: an export (dict or JSON text), a path to a ``.json``
#: file or to a directory of them, or an iterable of any of these.
History = Mapping[str, Any] | str | os.PathLike[str] | Iterable[Any]

Workflow = WorkflowDefinition | Callable[..., Any] | str | None


@dataclass(frozen=True)
class ReplayResult:
    """One run that current code fits.

    Attributes:
        workflow_id: The run's workflow id.
        run_id: The run's id.
        workflow_name: The workflow name history recorded.
        recorded_status: The run's status when it was exported.
        positions: Recorded positions of the main thread, all checked.
        outcome: How current code ended against the history: ``completed``, ``failed``
            (``error`` says how) or ``suspended`` (waiting, as a run in flight does).
        next_calls: ``(position, kind, name)`` of the calls the code makes after the recorded
            ones — what the run's next step would record.
        error: The failure, when ``outcome`` is ``failed``.
        threads_not_checked: Hook threads (dimensions) in the history, not replayed.
        source: Where the export came from (a file path), when known.
    """

    workflow_id: str
    run_id: str
    workflow_name: str
    recorded_status: str
    positions: int
    outcome: str
    next_calls: list[tuple[int, str, str]] = field(default_factory=list)
    error: str | None = None
    threads_not_checked: list[str] = field(default_factory=list)
    source: str | None = None


def replay(workflow: Workflow, history: History) -> list[ReplayResult]:
    """Run current code against exported histories and check that it fits each one.

    Args:
        workflow: The workflow to replay (a ``@durable_workflow`` definition, a plain ``async
            def``, or a registered name) — used for every export, whatever name it recorded, so
            a new version can be checked against an old version's runs. ``None`` looks up each
            export's recorded ``workflow_name`` in the registry.
        history: One export (dict or JSON text), a ``.json`` file, a directory of ``.json``
            files, or an iterable of these.

    Returns:
        One result per run, in the order read.

    Raises:
        NonDeterminismError: Current code diverges from at least one run; the message names
            each such run, the position, the recorded call and the call the code makes now.
        InvalidArgumentError: Something given is not a run export (says which and why).
        UnknownWorkflowError: ``workflow`` is ``None`` and an export names a workflow that is
            not registered in this process.
    """
    results: list[ReplayResult] = []
    diverging: list[NonDeterminismError] = []
    exports = load_exports(history)
    for source, export in exports:
        try:
            results.append(_replay_one(workflow, export, source))
        except NonDeterminismError as error:
            diverging.append(error)
    if len(diverging) == 1:
        raise diverging[0]
    if diverging:
        raise NonDeterminismError(
            f"{len(diverging)} of {len(exports)} runs do not fit the current code:\n"
            + "\n".join(f"- {error.message}" for error in diverging),
            runs=[error.details for error in diverging])
    return results


def load_exports(history: History) -> list[tuple[str | None, dict[str, Any]]]:
    """Read run exports from what :func:`replay` accepts.

    Returns:
        ``(source, export)`` pairs; ``source`` is the file an export came from, if any.

    Raises:
        InvalidArgumentError: A file is missing or not JSON, or a value is not a format-1 run
            export.
    """
    found: list[tuple[str | None, dict[str, Any]]] = []
    _collect(history, None, found)
    if not found:
        raise InvalidArgumentError(f"no run export found in {_short(history)}")
    return found


def _collect(item: Any, source: str | None,
             found: list[tuple[str | None, dict[str, Any]]]) -> None:
    if isinstance(item, Mapping):
        found.append((source, _checked(item, source)))
    elif isinstance(item, str) and item.lstrip()[:1] in ("{", "["):
        _collect(_parse(item, source or "the JSON text given"), source, found)
    elif isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if path.is_dir():
            for child in sorted(path.glob("*.json")):
                _collect(child, None, found)
        elif path.is_file():
            _collect(_parse(path.read_text(encoding="utf-8"), str(path)), str(path), found)
        else:
            raise InvalidArgumentError(f"{str(path)!r} is neither a run export file nor a "
                                       f"directory of them: it does not exist")
    elif isinstance(item, Iterable) and not isinstance(item, (bytes, bytearray)):
        for member in item:
            _collect(member, source, found)
    else:
        raise InvalidArgumentError(f"{_short(item)} is not a run export (a dict, JSON text, a "
                                   f"file or a directory of .json files)")


def _parse(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgumentError(f"{source}: not JSON ({error})") from None


def _checked(export: Mapping[str, Any], source: str | None) -> dict[str, Any]:
    where = source or f"export of {export.get('workflow_id', '?')!r}"
    if export.get("format") != EXPORT_FORMAT:
        raise InvalidArgumentError(
            f"{where}: not a durable_celery run export of format {EXPORT_FORMAT} (format is "
            f"{export.get('format')!r}); export runs with `manage.py durable export`")
    missing = [key for key in ("workflow_id", "workflow_name", "args", "history")
               if key not in export]
    if missing:
        raise InvalidArgumentError(f"{where}: the export lacks {', '.join(missing)}")
    for index, row in enumerate(export["history"]):
        absent = [key for key in ("seq", "kind", "name", "status") if key not in row]
        if absent:
            raise InvalidArgumentError(f"{where}: history row {index} lacks "
                                       f"{', '.join(absent)}")
    return dict(export)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _definition(workflow: Workflow, recorded_name: str) -> WorkflowDefinition:
    if workflow is None:
        return find_workflow(recorded_name)
    if isinstance(workflow, WorkflowDefinition):
        return workflow
    if isinstance(workflow, str):
        return find_workflow(workflow)
    return WorkflowDefinition(getattr(workflow, "__name__", recorded_name), workflow)


class _PastHistory:
    """The replay's stand-in for storage: a call whose outcome storage computes (search,
    entity, start_child …) beyond the recorded positions ends the replay there, since only the
    database could answer it; calls repeated on every replay (``emit(once=False)``) do nothing.
    """

    def __init__(self, context: Callable[[], Any]) -> None:
        self._context = context
        self.stopped_at: tuple[int, str, str] | None = None

    def perform(self, kind: str, operation: str, args: dict[str, Any]) -> Any:
        if operation == "replay":
            return True
        self.stopped_at = (self._context().counter, kind, operation)
        raise DurableInterruption(f"{kind} at position {self._context().counter} is beyond "
                                  f"the recorded history")


def _replay_one(workflow: Workflow, export: dict[str, Any], source: str | None) -> ReplayResult:
    name = str(export["workflow_name"])
    definition = _definition(workflow, name)
    rows = export["history"]
    records = [HistoryRecord(int(row["seq"]), "", str(row["kind"]), str(row["name"] or ""),
                             str(row["status"]), row.get("result"), row.get("error"),
                             row.get("observed_step"))
               for row in rows if not row.get("dimension")]
    by_seq = {record.seq: record for record in records}
    recorded = max(by_seq, default=0)
    last_step = max((r.observed_step or 0 for r in records), default=0)
    info = WorkflowInfo(workflow_id=str(export["workflow_id"]), workflow_name=name,
                        task_queue=str(export.get("task_queue") or ""),
                        namespace=str(export.get("namespace") or ""), step=last_step + 1,
                        run_id=str(export.get("run_id") or ""))
    run = WorkflowRun(definition.entry, list(export["args"]), info, records,
                      workflow_interceptors())  # type: ignore[arg-type]
    port = _PastHistory(lambda: run.context)
    run.context.port = port
    try:
        outcome = run.start()
        pending = sorted(call.seq for call in run.context.pending_calls())
    finally:
        run.close()
    status = str(export.get("status") or "")
    where = (f"run {info.run_id or '?'} of workflow {info.workflow_id!r}"
             + (f" ({source})" if source else ""))
    details: dict[str, Any] = {"workflow_id": info.workflow_id, "run_id": info.run_id,
                               "source": source}
    if isinstance(run.context.fatal, NonDeterminismError):  # a different call at a position
        raise NonDeterminismError(f"{where}: {run.context.fatal.message}", **details)
    reached = run.context.counter
    next_calls = [(c.seq, c.kind, c.name) for c in outcome.commands if c.seq > recorded]
    if port.stopped_at is not None:
        next_calls.append(port.stopped_at)
    if reached < recorded:
        missing = by_seq.get(reached + 1) or by_seq[min(s for s in by_seq if s > reached)]
        raise NonDeterminismError(
            f"{where} is not deterministic at position {missing.seq}: history recorded "
            f"{missing.kind} {missing.name!r}, but the code {_how_it_stopped(outcome, pending)} "
            f"after position {reached} and never calls it", **details)
    if status == "completed" and next_calls:
        seq, kind, call = min(next_calls)
        raise NonDeterminismError(
            f"{where} is not deterministic at position {seq}: history ends with the workflow "
            f"completed after position {recorded}, but the code now calls {kind} {call!r}",
            **details)
    threads = sorted({str(row["dimension"]) for row in rows if row.get("dimension")})
    return ReplayResult(
        workflow_id=info.workflow_id, run_id=info.run_id, workflow_name=name,
        recorded_status=status, positions=len(records), outcome=_outcome_name(outcome, port),
        next_calls=sorted(next_calls),
        error=None if outcome.error is None or port.stopped_at is not None else
        f"{type(outcome.error).__name__}: {safe_str(outcome.error)}",
        threads_not_checked=threads, source=source)


def _outcome_name(outcome: StepOutcome, port: _PastHistory) -> str:
    if port.stopped_at is not None:
        return StepStatus.SUSPENDED
    return str(outcome.status)


def _how_it_stopped(outcome: StepOutcome, pending: list[int]) -> str:
    if outcome.status == StepStatus.COMPLETED or isinstance(outcome.error, NonDeterminismError):
        return "returns"  # the engine refuses a return that leaves recorded calls behind
    if outcome.status == StepStatus.FAILED and outcome.error is not None:
        return f"raises {type(outcome.error).__name__}: {safe_str(outcome.error)}"
    if pending:
        return f"waits for position {', '.join(map(str, pending))}"
    return "waits"
