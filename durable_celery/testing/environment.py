"""``WorkflowEnvironment``: workflows run in the test's own process, against the test database,
by an embedded worker, with time skipping.

While it is open, the outbox publishes into an :class:`~.broker.InProcessBroker` instead of
Redis or RabbitMQ, and the store reads a :class:`~.clock.TestClock`. The embedded worker runs
each message with the same store functions the Celery tasks run, in the calling thread, so a
test is deterministic: a call returns when nothing more can happen without time passing or the
test acting. Time skipping: when the workflow a test waits for can only progress by time
passing, the clock jumps to the next timer of this environment's runs (a sleep, a wait's
timeout, a retry back-off, an execution timeout) and fires it — a 30-day sleep takes
milliseconds. Schedules made while the environment is open fire on the test clock:
:meth:`WorkflowEnvironment.advance` stops at each fire time on the way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from django.db.models import Max, Q
from django.utils import timezone

from .. import clock
from ..client import DurableClient
from ..handle import WorkflowHandle
from ..models import (
    ACTIVE_STATUSES,
    HistoryEvent,
    HistoryStatus,
    Schedule,
    Timer,
    WorkflowExecution,
)
from ..registry import WorkflowDefinition
from ..store.executions import get_execution
from ..store.outbox import Publisher, set_publisher
from ..store.schedules import fire_due_schedules
from ..store.steps import has_news, run_cache
from ..store.sweeper import fire_due_timers
from .broker import InProcessBroker
from .clock import TestClock, as_seconds
from .worker import AfterCommitCallbacks, EmbeddedWorker

__all__ = ["WorkflowEnvironment"]

_open_environment: WorkflowEnvironment | None = None


class WorkflowEnvironment:
    """Runs workflows in this process with an embedded worker and a clock the test controls.

    Use it as a context manager, or through the ``durable_env`` pytest fixture
    (``pytest_plugins = ["durable_celery.testing.pytest"]``)::

        with WorkflowEnvironment() as env:
            handle = env.start(order_flow, "o-1", workflow_id="order-o-1")
            env.signal("approve-o-1", {"approved": True})
            assert env.result(handle)["decision"] == {"approved": True}

    Args:
        skip_time: Let :meth:`result` jump the clock to the next timer whenever nothing else
            can happen (default). Off, the clock moves only with real time and :meth:`advance`.
        start_time: What the clock shows when the environment opens (timezone-aware; default:
            the real time).
        replay_every_step: Keep no run in memory between steps, so every step replays the
            workflow from its history (catches code that is not deterministic sooner).
        max_deliveries: Bound on the messages one call runs and on the clock jumps one
            :meth:`result` makes; reaching it raises ``TimeoutError`` instead of looping forever.
        namespace: Default namespace of :attr:`client`.

    Attributes:
        clock: The :class:`TestClock` the store reads while the environment is open.
        client: A ``DurableClient``: anything it sends is delivered in this process.
        broker: The in-process broker (queued messages, ``emitted`` events).
        delivered: How the embedded worker's deliveries ended, by outcome (``stepped``,
            ``completed``, ``failed``, ``async``, ``skipped`` — a duplicate or stale attempt).
    """

    def __init__(self, *, skip_time: bool = True, start_time: datetime | None = None,
                 replay_every_step: bool = False, max_deliveries: int = 10_000,
                 namespace: str | None = None) -> None:
        self.skip_time = skip_time
        self.replay_every_step = replay_every_step
        self.max_deliveries = max_deliveries
        self.clock = TestClock(start_time)
        self.broker = InProcessBroker()
        self.client = DurableClient(namespace)
        self.delivered: Counter[str] = Counter()
        self._worker: EmbeddedWorker | None = None
        self._callbacks: AfterCommitCallbacks | None = None
        self._previous_clock: clock.Clock | None = None
        self._previous_publisher: Publisher | None = None
        self._previous_cache_size: int | None = None
        #: Schedules with a larger primary key were made while the environment is open.
        self._schedules_after = 0

    # -- opening and closing --------------------------------------------------------------------

    def __enter__(self) -> WorkflowEnvironment:
        return self.open()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def open(self) -> WorkflowEnvironment:
        """Install the in-process broker and the test clock (needs database access).

        Raises:
            RuntimeError: Another environment is open in this process (the publisher and the
                clock are process-wide).
        """
        global _open_environment
        if _open_environment is not None:
            raise RuntimeError("another WorkflowEnvironment is open in this process; close it "
                               "first (the outbox publisher and the clock are process-wide)")
        self._previous_clock = clock.install_clock(self.clock)
        self._previous_publisher = set_publisher(self.broker.publish)
        _open_environment = self
        try:
            cache = run_cache()
            cache.clear()  # runs kept by an earlier test may name rows that were rolled back
            if self.replay_every_step:
                self._previous_cache_size, cache.capacity = cache.capacity, 0
            self._callbacks = AfterCommitCallbacks()
            self._worker = EmbeddedWorker()
            self._schedules_after = Schedule.objects.aggregate(last=Max("pk"))["last"] or 0
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Put the previous publisher and clock back; drop queued messages and kept runs."""
        global _open_environment
        if _open_environment is not self:
            return
        _open_environment = None
        set_publisher(self._previous_publisher)
        clock.install_clock(self._previous_clock)
        cache = run_cache()
        cache.clear()
        if self._previous_cache_size is not None:
            cache.capacity, self._previous_cache_size = self._previous_cache_size, None
        self.broker.clear()
        if self._worker is not None:
            self._worker.close()
        self._worker = None
        self._callbacks = None

    # -- what a test does -----------------------------------------------------------------------

    def start(self, workflow: WorkflowDefinition | Callable[..., Any] | str, *args: Any,
              **options: Any) -> WorkflowHandle:
        """Start a workflow (the arguments of ``DurableClient.start``) and run it until it
        waits for something: time, a signal, or the test."""
        handle = self.client.start(workflow, *args, **options)
        self.run_until_idle()
        return handle

    def execute(self, workflow: WorkflowDefinition | Callable[..., Any] | str, *args: Any,
                timeout: float | str | timedelta | None = None, **options: Any) -> Any:
        """Start a workflow and return its result (:meth:`start`, then :meth:`result`)."""
        return self.result(self.start(workflow, *args, **options), timeout=timeout)

    def signal(self, signal_id: str, data: Any, namespace: str | None = None) -> int:
        """Send a signal (``DurableClient.signal``) and run what it wakes until idle.

        Returns:
            How many waiting threads received it (0: kept for a later ``wait_for``).
        """
        woken = self.client.signal(signal_id, data, namespace)
        self.run_until_idle()
        return woken

    def get_handle(self, workflow_id: str, run_id: str | None = None,
                   namespace: str | None = None) -> WorkflowHandle:
        """A handle on a workflow of this environment's client (``DurableClient.get_handle``:
        the run ``run_id``, or the id's current run)."""
        return self.client.get_handle(workflow_id, run_id=run_id, namespace=namespace)

    def now(self) -> datetime:
        """The test clock's time (what the store and ``workflow.now()`` read)."""
        return self.clock.now()

    @property
    def emitted(self) -> list[tuple[str, Any]]:
        """``(topic, payload)`` of every event emitted by workflows, in order (what a
        subscriber's ``get()`` returns; ``broker.events`` holds the whole events)."""
        return [(str(event.get("topic")), event.get("payload")) for event in self.broker.events]

    def result(self, handle: WorkflowHandle | str, *,
               timeout: float | str | timedelta | None = None) -> Any:
        """Run until the workflow finishes and return its result (or raise its error, as
        ``handle.result()`` does).

        Whenever nothing can happen without time passing, the clock jumps to the next timer of
        this environment's runs (with ``skip_time``).

        Args:
            handle: The workflow, or its id.
            timeout: Test-clock time the workflow may take (seconds, ``timedelta`` or text such
                as ``"31 days"``); default: no limit.

        Raises:
            TimeoutError: The workflow cannot finish: it waits for something only the test can
                send, its next timer is beyond ``timeout``, or time skipping is off — the
                message says what it waits for.
        """
        self._require_open()
        if not isinstance(handle, WorkflowHandle):
            handle = self.get_handle(str(handle))
        limit = None if timeout is None else self.clock.now() + timedelta(
            seconds=as_seconds(timeout, what="result timeout"))
        for _ in range(self.max_deliveries):
            self.run_until_idle()
            if not self._running(handle):
                return handle.result(timeout=0)
            due = self._next_timer()
            if not self.skip_time or due is None or (limit is not None and due > limit):
                if limit is not None and self.skip_time and due is not None:
                    self._skip_to(limit)  # the clock ran up to the timeout
                    self.run_until_idle()
                    if not self._running(handle):
                        return handle.result(timeout=0)
                raise TimeoutError(self._why_not_finished(handle, due, limit))
            self._skip_to(due)
        raise TimeoutError(f"workflow {handle.workflow_id!r} was still running after "
                           f"{self.max_deliveries} jumps of the test clock (does it sleep in a "
                           f"loop that never ends?)")

    def advance(self, duration: float | str | timedelta) -> datetime:
        """Move the clock forward by ``duration``, firing the timers and the schedule fires
        that fall due on the way in order and running what each wakes (or starts).

        Args:
            duration: Seconds, a ``timedelta`` or text such as ``"2 hours"``.

        Returns:
            The clock's new time.

        Raises:
            TimeoutError: More than ``max_deliveries`` timers and fires fell due on the way (a
                workflow that sleeps a second in a loop, or a schedule every second, advanced by
                a year).
        """
        self._require_open()
        target = self.clock.now() + timedelta(seconds=as_seconds(duration, what="advance"))
        self.run_until_idle()
        for _ in range(self.max_deliveries):
            due = min(filter(None, (self._next_timer(), self._next_fire())), default=None)
            if due is None or due > target:
                break
            self._skip_to(due)
            self.run_until_idle()
        else:
            raise TimeoutError(f"{self.max_deliveries} timers fired on the way (schedule fires "
                               f"included) and more keep falling due before "
                               f"{target:%Y-%m-%d %H:%M:%S} (max_deliveries)")
        self._skip_to(target)
        self.run_until_idle()
        return self.clock.now()

    def run_until_idle(self) -> int:
        """Run queued messages, and whatever they cause, until nothing is left that can happen
        now. Timers and schedule fires already due on the clock fire; the clock is not moved.

        Returns:
            How many messages ran.

        Raises:
            TimeoutError: More than ``max_deliveries`` messages ran (a workflow that never
                stops signalling itself, for example).
        """
        worker, callbacks = self._require_open()
        delivered = 0
        while True:
            callbacks.run_pending()
            message = self.broker.take()
            if message is None:
                if (self._fire_due_timers() or self._fire_due_schedules()
                        or self._request_missed_steps()):
                    continue
                return delivered
            if delivered >= self.max_deliveries:
                raise TimeoutError(f"{delivered} messages ran and more keep coming "
                                   f"(max_deliveries); the last was {message.task_name} on "
                                   f"queue {message.queue!r}")
            self.delivered[worker.deliver(message)] += 1
            delivered += 1

    # -- internals ------------------------------------------------------------------------------

    def _require_open(self) -> tuple[EmbeddedWorker, AfterCommitCallbacks]:
        if self._worker is None or self._callbacks is None:
            raise RuntimeError("this WorkflowEnvironment is not open: use it as a context "
                               "manager (with WorkflowEnvironment() as env: ...) or the "
                               "durable_env fixture")
        return self._worker, self._callbacks

    def _running(self, handle: WorkflowHandle) -> bool:
        return get_execution(handle.namespace, handle.workflow_id).is_active

    def _fire_due_timers(self) -> int:
        fired = 0
        while count := fire_due_timers(executions=self.broker.run_ids()):
            fired += count
        return fired

    def _fire_due_schedules(self) -> int:
        """Start the due fires of the schedules made while the environment is open (what the
        workers' sweeper does), and a buffered fire whose previous run has ended."""
        return fire_due_schedules(schedules=self._schedules().values_list("pk", flat=True))

    def _schedules(self) -> Any:
        return Schedule.objects.filter(pk__gt=self._schedules_after)

    def _next_fire(self) -> datetime | None:
        """The next fire time of an unpaused schedule made while the environment is open."""
        return _aware(self._schedules().filter(paused=False).order_by("next_fire_at")
                      .values_list("next_fire_at", flat=True).first())

    def _request_missed_steps(self) -> int:
        """Queue a step for runs of this environment with news no queued message announces
        (what the sweeper's recovery does for a worker after a lost message)."""
        now = clock.now()
        queued = self.broker.queued_steps()
        requested = 0
        for execution_pk, task_queue in WorkflowExecution.objects.filter(
                Q(step_claimed_by__isnull=True) | Q(step_claimed_until__lt=now),
                pk__in=self.broker.run_ids(), status__in=ACTIVE_STATUSES).values_list(
                    "pk", "task_queue"):
            if execution_pk not in queued and has_news(execution_pk):
                self.broker.request_step(execution_pk, task_queue)
                requested += 1
        return requested

    def _next_timer(self) -> datetime | None:
        return _aware(Timer.objects.filter(execution_id__in=self.broker.run_ids())
                      .order_by("due_at").values_list("due_at", flat=True).first())

    def _skip_to(self, moment: datetime) -> None:
        self.clock.advance_to(moment)
        worker, _ = self._require_open()
        worker.heartbeat()

    def _why_not_finished(self, handle: WorkflowHandle, due: datetime | None,
                          limit: datetime | None) -> str:
        execution = get_execution(handle.namespace, handle.workflow_id)
        waiting = ", ".join(_open_calls(execution)) or "no durable call"
        what = f"workflow {handle.workflow_id!r} ({execution.status}) waits for {waiting}"
        if due is not None and limit is not None and due > limit:
            return (f"{what}; its next timer is due at {due:%Y-%m-%d %H:%M:%S} UTC, after the "
                    f"timeout (the test clock now shows {self.clock.now():%Y-%m-%d %H:%M:%S})")
        if due is not None:
            return (f"{what}; time skipping is off and its next timer is due at "
                    f"{due:%Y-%m-%d %H:%M:%S} UTC (the test clock shows "
                    f"{self.clock.now():%Y-%m-%d %H:%M:%S}): call env.advance(...)")
        return (f"{what}, and nothing else can happen: no message is queued and no timer is "
                f"pending. Send what it waits for (env.signal(...), "
                f"env.client.complete_activity(...)) and call env.result() again")


def _aware(moment: datetime | None) -> datetime | None:
    """A stored time as an aware datetime (SQLite without time zone support gives naive)."""
    if moment is None:
        return None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def _open_calls(execution: WorkflowExecution) -> list[str]:
    """What the run waits for, in words (``a signal 'approve-1' (position 3)`` …)."""
    described = {"wait": "a signal", "activity": "activity", "child": "child workflow",
                 "sleep": "a sleep"}
    calls = []
    for kind, name, seq, dimension in HistoryEvent.objects.filter(
            execution_id=execution.pk, status=HistoryStatus.SCHEDULED).order_by(
                "dimension", "seq").values_list("kind", "name", "seq", "dimension")[:10]:
        where = f"position {seq}" + (f" of thread {dimension!r}" if dimension else "")
        label = described.get(kind, kind)
        calls.append(f"{label} {name!r} ({where})" if name else f"{label} ({where})")
    return calls
