"""What one replay step does besides recording history: collected while the workflow runs,
written in the step's transaction.

A step decides outside any transaction (from a snapshot, or from a run kept in memory) and records
its decision in one short transaction. Calls whose outcome storage computes — search fields, the
entity document, starting a child or a hook — therefore compute it from the run's in-memory state
and leave their writes in :class:`StepEffects`, which the step's transaction applies together
with the history rows that record the outcomes: a crash never applies them twice, and a decision
that loses a race (another step got there first) writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..engine.loop import run_outside_loop
from ..models import SearchAttribute, Timer, WorkflowExecution
from .outbox import OutboxBatch

__all__ = ["StepEffects", "StepOperation", "StepPort"]

#: ``(execution, effects, operation, args) -> outcome``: a storage-computed call.
StepOperation = Callable[[WorkflowExecution, "StepEffects", str, dict[str, Any]], Any]


class StepEffects:
    """Writes and messages one step collects, applied in its transaction (:meth:`apply`).

    Attributes:
        execution: The run, in memory (its document and search fields are the truth while the
            step holds the run).
        now: The step's clock.
        batch: Messages to send after commit.
        timers: Timers to create.
        wake_self: A hook thread was started in this same run: step again right after.
        interrupt_self: ``(reason, descend)`` when the workflow interrupted itself.
        document_changed: The entity document changed and must be written.
    """

    def __init__(self, execution: WorkflowExecution, now: datetime,
                 batch: OutboxBatch | None = None) -> None:
        self.execution = execution
        self.now = now
        self.batch = batch if batch is not None else OutboxBatch()
        self.timers: list[Timer] = []
        self.wake_self = False
        self.interrupt_self: tuple[str | None, bool] | None = None
        self.document_changed = False
        #: An ordinary activity of this step was claimed to run here (at most one is).
        self.eager_taken = False
        self._writes: list[Callable[[], None]] = []
        self._search_changed: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self._writes or self._search_changed or self.timers or self.batch
                    or self.document_changed or self.wake_self or self.interrupt_self)

    def add_timer(self, event_id: int | None, kind: str, seconds: float, *,
                  thread_id: int | None = None) -> None:
        """Create a timer due ``seconds`` from now."""
        self.timers.append(Timer(execution_id=self.execution.pk, event_id=event_id,
                                 thread_id=thread_id, kind=kind,
                                 due_at=self.now + timedelta(seconds=seconds)))

    def defer(self, write: Callable[[], None]) -> None:
        """Run ``write`` in the step's transaction (in the order deferred)."""
        self._writes.append(write)

    # -- search fields: read once per run, changed in memory, written with the step ----------

    def search_fields(self) -> dict[str, str]:
        """The run's search fields (loaded on first use, then kept with the run)."""
        fields: dict[str, str] | None = getattr(self.execution, "_durable_search", None)
        if fields is None:
            fields = dict(SearchAttribute.objects.filter(execution_id=self.execution.pk)
                          .values_list("key", "value"))
            self.execution._durable_search = fields  # type: ignore[attr-defined]
        return fields

    def set_search_field(self, key: str, value: str | None) -> None:
        """Set (or with ``None`` delete) one search field."""
        fields = self.search_fields()
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
        self._search_changed.add(key)

    def apply(self) -> None:
        """Write what the step collected (inside its transaction)."""
        if self._search_changed:
            fields = self.search_fields()
            keys = sorted(self._search_changed)
            rows = SearchAttribute.objects.filter(execution_id=self.execution.pk)
            rows.filter(key__in=keys).delete()
            SearchAttribute.objects.bulk_create(
                SearchAttribute(execution_id=self.execution.pk, key=key, value=fields[key])
                for key in keys if key in fields)
            self._search_changed.clear()
        for write in self._writes:
            write()
        self._writes = []
        if self.timers:
            Timer.objects.bulk_create(self.timers)
            self.timers = []


class StepPort:
    """What the replay context calls for storage-computed outcomes during one step."""

    def __init__(self, effects: StepEffects, operations: dict[str, StepOperation]) -> None:
        self.effects = effects
        self.operations = operations

    def perform(self, kind: str, operation: str, args: dict[str, Any]) -> Any:
        """Compute the outcome of operation ``operation`` of a ``kind`` call now.

        Raises:
            LookupError: No operation exists for ``kind``.
        """
        try:
            handler = self.operations[kind]
        except KeyError:
            raise LookupError(f"no storage operation exists for {kind!r} calls") from None
        effects = self.effects
        # The workflow's loop is running on this thread and Django refuses ORM calls under a
        # running loop; nothing else runs on that loop meanwhile, so it is set aside.
        return run_outside_loop(lambda: handler(effects.execution, effects, operation, args))
