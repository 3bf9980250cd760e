"""``DurableClient``: start workflows, signal them, find them (synchronous, any process)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .conf import durable_setting
from .durations import parse_duration, parse_timeout
from .errors import InvalidArgumentError, UnknownWorkflowError
from .handle import WorkflowHandle
from .payloads import encode
from .registry import WorkflowDefinition, find_workflow
from .retry import RetryPolicy
from .serialization import json_roundtrip
from .validation import MAX_NAMESPACE_LENGTH, check_search_field, check_text, field_text

if TYPE_CHECKING:
    from .schedules import ScheduleHandle
    from .transport.events import Subscription

__all__ = ["DurableClient"]


class DurableClient:
    """Uses the current Celery app and the Django database.

    Args:
        namespace: Default namespace of this client's calls.
    """

    def __init__(self, namespace: str | None = None) -> None:
        self.namespace = namespace or str(durable_setting("DURABLE_DEFAULT_NAMESPACE"))

    def start(self, workflow: WorkflowDefinition | Callable[..., Any] | str, *args: Any,
              workflow_id: str | None = None, task_queue: str | None = None,
              search: dict[str, Any] | None = None, entity: str | None = None,
              expire: float | str | None = None,
              retry_policy: RetryPolicy | dict[str, Any] | None = None,
              namespace: str | None = None, id_reuse_policy: str = "allow_duplicate",
              execution_timeout: float | str | None = None) -> WorkflowHandle:
        """Store a new run of a workflow and queue its first step.

        Logs a warning (logger ``durable_celery.client``) when no live worker consumes the
        workflow's task queue: the run would stay pending until one does.

        Args:
            workflow: The definition, or its registered name.
            *args: Its arguments: JSON values, dataclasses, pydantic models. When the
                definition is known here they are checked against its signature.
            workflow_id: Unique id in the namespace (default, or None: generated; "" is refused).
            task_queue: Celery queue of its replay steps (default: the definition's, else
                ``DURABLE_DEFAULT_TASK_QUEUE``).
            search: Initial search fields (values stored as text).
            entity: Entity type of the workflow.
            expire: Seconds to keep the execution after it ends (stored).
            retry_policy: Retries of the workflow function itself (default ``RetryPolicy()``).
            namespace: Namespace (default: the client's).
            id_reuse_policy: What an id that already has runs does (earlier runs are never
                deleted): ``"allow_duplicate"`` (default) starts a new run unless one is still
                running; ``"reject_duplicate"`` refuses whenever the id has any run;
                ``"return_existing"`` starts nothing and returns a handle on the newest run
                (the workflow id as an idempotency key).
            execution_timeout: Seconds (or duration text such as ``"10m"``) the workflow may
                run; past it the run is interrupted and ``result()`` raises
                ``DurableTimeoutError`` (596). Runs it continues as new keep the deadline.

        Returns:
            A handle naming the run started (or, with ``return_existing``, the newest run).

        Raises:
            DuplicateWorkflowError: ``workflow_id`` is still running in the namespace (or, with
                ``reject_duplicate``, has any run).
            ValueError: An unknown ``id_reuse_policy``; a malformed, negative or zero
                ``execution_timeout``.
            UnknownWorkflowError: ``workflow`` names nothing registered and no ``task_queue``
                says where it lives.
            TypeError: The arguments do not fit the workflow function's signature (too many,
                too few, or not rebuildable as its hints say); nothing is stored.
            NotJSONSerializableError: An argument is not JSON (a ``TypeError``).
        """
        from .store.executions import IdReusePolicy, create_execution
        from .store.inspect import warn_if_unconsumed
        from .transport.worker import embedded_worker_in_use

        reuse = IdReusePolicy.coerce(id_reuse_policy)
        timeout = parse_timeout(execution_timeout, what="execution_timeout")
        name, default_queue, definition = _resolve(workflow, task_queue)
        stored_args = definition.check_args(args) if definition is not None else encode(
            list(args), where=f"arguments of workflow {name!r}")
        fields = _search_fields(search)
        policy = RetryPolicy.coerce(retry_policy)
        ns = namespace or self.namespace
        wid = workflow_id if workflow_id is not None else f"{name}-{uuid.uuid4().hex}"
        _check_identity(ns, wid, task_queue or default_queue, entity, fields)
        execution = create_execution(
            namespace=ns, workflow_id=wid, workflow_name=name,
            task_queue=task_queue or default_queue, args=stored_args, search=fields,
            entity=entity,
            expire=None if expire is None else parse_duration(expire, what="expire"),
            retry_policy=policy.to_dict() if policy else None, execution_timeout=timeout,
            id_reuse_policy=reuse)
        if not embedded_worker_in_use():  # the testing kit's worker serves every queue
            warn_if_unconsumed(task_queue or default_queue, wid)
        return WorkflowHandle(wid, ns, run_id=execution.run_id)

    def get_handle(self, workflow_id: str, run_id: str | None = None,
                   namespace: str | None = None) -> WorkflowHandle:
        """A handle on an existing workflow: the run ``run_id``, or without one the id's current
        run (the active run if there is one, else the newest), looked up at each use.

        No I/O until used; a workflow or run that does not exist raises
        ``WorkflowNotFoundError`` (naming the run id) at the first use.

        Raises:
            TypeError: ``run_id`` is given but not a non-empty str.
        """
        check_text(workflow_id, "workflow_id")
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise TypeError(f"run_id must be a non-empty str or None, got {run_id!r}")
        return WorkflowHandle(workflow_id, namespace or self.namespace, run_id=run_id)

    def list_runs(self, workflow_id: str, namespace: str | None = None) -> list[WorkflowHandle]:
        """Every run of ``workflow_id``, newest first, each as a handle naming its run.

        Runs accumulate when an id is started again after it ended and when a workflow
        continues as new (``describe()["previous_run_id"]`` links those). Empty when the id
        has no run.
        """
        from .models import WorkflowExecution

        ns = namespace or self.namespace
        runs = WorkflowExecution.objects.named(ns, workflow_id).order_by("-id") \
            .values_list("run_id", flat=True)
        return [WorkflowHandle(workflow_id, ns, run_id=run_id) for run_id in runs]

    def signal(self, signal_id: str, data: Any, namespace: str | None = None) -> int:
        """Deliver ``data`` to every workflow thread waiting on ``signal_id``.

        When none waits, the signal is kept until a ``wait_for`` takes it.

        Returns:
            How many waiting threads received it (0 when it was kept for later).
        """
        from .store.executions import send_signal

        check_text(signal_id, "signal id")
        ns = check_text(namespace or self.namespace, "namespace", max_length=MAX_NAMESPACE_LENGTH)
        payload = json_roundtrip(data, where=f"payload of signal {signal_id!r}")
        return send_signal(ns, signal_id, payload)

    def complete_activity(self, task_token: str, result: Any = None) -> None:
        """Complete an activity attempt that called ``activity.raise_complete_async()``.

        Durable, first writer wins: the result is recorded and the workflow continues.

        Args:
            task_token: ``activity.get_context().task_token`` of the attempt.
            result: Its result (JSON values, dataclasses, pydantic models).

        Raises:
            InvalidArgumentError: The token is malformed, forged, or names an attempt that is
                no longer current (completed, failed, cancelled, or replaced by a retry).
            NotJSONSerializableError: ``result`` cannot be stored.
        """
        from .store.activities import complete_async

        complete_async(task_token, encode(result, where="the result of an activity completed "
                                                        "with complete_activity"))

    def fail_activity(self, task_token: str, error: str | BaseException) -> None:
        """Fail an activity attempt that called ``activity.raise_complete_async()``.

        The failed attempt is retried by the call's retry policy like any other (an exception
        of a class in ``non_retryable_error_types``, or a ``DurableFatalError``, ends the call).

        Args:
            task_token: ``activity.get_context().task_token`` of the attempt.
            error: What went wrong: a message, or the exception itself (its type and traceback
                are kept).

        Raises:
            InvalidArgumentError: As for :meth:`complete_activity`.
        """
        from .store.activities import fail_async

        fail_async(task_token, error)

    def hook(self, *, workflow_id: str, workflow_name: str, task_queue: str | None = None,
             args: list[Any] | tuple[Any, ...] = (), namespace: str | None = None,
             retry_policy: RetryPolicy | dict[str, Any] | None = None) -> str:
        """Run ``workflow_name`` as a hook thread inside the running workflow ``workflow_id``.

        The thread shares the workflow's search fields and entity document.

        Returns:
            The hook id (the thread's dimension).

        Raises:
            WorkflowNotFoundError: No workflow has this id.
            WorkflowNotRunningError: It has ended.
            InvalidArgumentError: An id, name or queue the database cannot store.
            TypeError: ``args`` is not a list or tuple, is not JSON, or (when the workflow is
                registered in this process) does not fit its signature. Nothing is stored.
        """
        from django.db import transaction

        from .models import WorkflowExecution
        from .store.composition import start_hook_thread
        from .store.executions import get_execution
        from .store.outbox import OutboxBatch

        ns = check_text(namespace or self.namespace, "namespace", max_length=MAX_NAMESPACE_LENGTH)
        check_text(workflow_id, "workflow_id")
        check_text(workflow_name, "workflow_name")
        if task_queue is not None:
            check_text(task_queue, "task_queue")
        if not isinstance(args, (list, tuple)):
            raise TypeError(f"hook args must be a list or tuple of the workflow's arguments, "
                            f"got {type(args).__name__} {args!r:.80}")
        try:
            stored_args = find_workflow(workflow_name).check_args(args)
        except UnknownWorkflowError:  # defined only on the workers
            stored_args = json_roundtrip(list(args), where=f"arguments of hook {workflow_name!r}")
        with transaction.atomic():
            target = WorkflowExecution.objects.lock(get_execution(ns, workflow_id).pk)
            assert target is not None
            policy = RetryPolicy.coerce(retry_policy)
            thread = start_hook_thread(target, workflow_name, task_queue, stored_args,
                                       policy.to_dict() if policy else None)
            batch = OutboxBatch()
            batch.request_step(target.pk, target.task_queue)
            batch.commit()
        return thread.dimension

    def search(self, workflow_name: str | None = None, status: str | None = None,
               namespace: str | None = None, **fields: Any) -> list[WorkflowHandle]:
        """Workflows whose search fields equal every given value, newest first: one handle per
        workflow id, naming its newest run that matches (a workflow that continued as new
        keeps its search fields in every run).

        Values compare as text (``str(value)``). Each field is answered by the ``(key, value)``
        index of the search fields, so the cost does not grow with the number of executions.

        Raises:
            ValueError: ``status`` is not one of the statuses a run can have.
        """
        from .store.data import search_executions

        ns = namespace or self.namespace
        qs = search_executions(ns, workflow_name, _check_status(status), fields)
        newest: dict[str, str] = {}  # one handle per workflow id, naming its newest match
        for wid, run_id in qs.values_list("workflow_id", "run_id"):
            newest.setdefault(wid, run_id)
        return [WorkflowHandle(wid, ns, run_id=run_id) for wid, run_id in newest.items()]

    def find_entities(self, entity: str, where: dict[str, Any] | None = None, *,
                      status: str | None = None, limit: int | None = None, offset: int = 0,
                      namespace: str | None = None, **conditions: Any) -> list[dict[str, Any]]:
        """Workflows started with ``entity=entity`` whose document holds the given values.

        Conditions are JSON equality at a path of the entity document: dotted paths in
        ``where`` (``where={"user.status": "active"}``) or keyword paths with ``__``
        (``user__status="active"``); both may be combined. On PostgreSQL the query uses the
        GIN index on the document (``@>`` containment); on SQLite it compares JSON paths.

        Example::

            client.find_entities("user", user__status="active", limit=10)

        Returns:
            Newest first, dicts with ``workflow_id, workflow_name, entity, status, document,
            created_at``.

        Raises:
            ValueError: An unknown ``status``; a negative ``limit`` or ``offset``.
            TypeError: ``limit`` or ``offset`` is not an int.
        """
        from .store.data import find_entities

        _check_status(status)
        _check_count(limit, "limit", allow_none=True)
        _check_count(offset, "offset")
        paths = dict(where or {})
        paths.update({key.replace("__", "."): value for key, value in conditions.items()})
        checked = json_roundtrip(paths, where="find_entities conditions")
        return find_entities(namespace or self.namespace, entity, checked, status=status,
                             limit=limit, offset=offset)

    def subscribe(self, *topics: str) -> Subscription:
        """Receive the events workflows ``emit`` on ``topics`` from now on.

        Topics may be patterns (``order.*`` one word, ``order.#`` any number of words). Events
        published before this call are not received.

        Returns:
            A :class:`~durable_celery.transport.events.Subscription`: ``get(timeout=None)``
            returns ``(topic, payload)`` and raises ``SubscriptionTimeout`` (a ``TimeoutError``
            and a ``queue.Empty``) when ``timeout`` passes; ``close()`` ends it (or use it as a
            context manager).
        """
        from .transport.events import Subscription

        return Subscription(topics)

    def schedule(self, workflow: WorkflowDefinition | Callable[..., Any] | str, *args: Any,
                 schedule_id: str, cron: str | None = None, every: str | float | None = None,
                 task_queue: str | None = None, overlap: str = "skip",
                 catchup_window: str | float | None = None,
                 search: dict[str, Any] | None = None, entity: str | None = None,
                 expire: float | str | None = None,
                 retry_policy: RetryPolicy | dict[str, Any] | None = None,
                 paused: bool | None = None, namespace: str | None = None) -> ScheduleHandle:
        """Start ``workflow(*args)`` on a cron expression or at a fixed interval (UTC).

        Each fire starts one run with workflow id ``f"{schedule_id}-{fire:%Y%m%dT%H%M%SZ}"``
        and the search field ``durable_schedule_id``; the workers' sweepers fire it, once per
        fire time however many there are. Calling this again with the same ``schedule_id``
        replaces the definition and keeps the schedule's state (paused, log, runs).

        Args:
            workflow: The definition, or its registered name.
            *args: JSON-serialisable arguments of every run.
            schedule_id: The schedule's id in the namespace (at most 200 characters).
            cron: Five-field cron expression (``"0 3 * * *"``) or ``@hourly``-style alias.
            every: Interval, whole seconds >= 1 (``30``, ``"30s"``, ``"1 hour"``); fires at the
                multiples of it since the Unix epoch. Exactly one of ``cron``/``every``.
            task_queue: As for ``start``.
            overlap: While a run of this schedule is still running, a fire is skipped
                (``"skip"``, default and recorded), kept until it ends (``"buffer_one"``, at
                most one waits), started anyway (``"allow_all"``) or replaces it
                (``"cancel_other"``: the running run and its descendants are asked to cancel,
                as ``handle.cancel(descend=True)`` does, and the fire starts once they have
                ended; a newer fire replaces one still waiting).
            catchup_window: Fires missed while no worker ran are made up when they are at
                most this old (default 1 hour, at least 10 seconds) and skipped beyond it.
            search, entity, expire, retry_policy: Start options of every run (see ``start``).
            paused: Create it paused; ``None`` keeps an existing schedule's state.
            namespace: Namespace (default: the client's).

        Raises:
            ValueError: A malformed ``cron``/``every``/``catchup_window``, both or neither of
                ``cron``/``every``, an unknown ``overlap``, a bad ``schedule_id``.
            TypeError: Arguments that do not fit the workflow's signature or are not JSON.
            UnknownWorkflowError: As for ``start``. Nothing is stored when anything is wrong.
        """
        from .schedules import (
            ScheduleHandle,
            ScheduleTiming,
            check_schedule_id,
            parse_catchup_window,
            parse_overlap,
        )
        from .store.schedule_ops import save_schedule

        check_schedule_id(schedule_id)
        timing = ScheduleTiming.parse(cron=cron, every=every)
        name, default_queue, known = _resolve(workflow, task_queue)
        stored_args = known.check_args(args) if known is not None else json_roundtrip(
            list(args), where=f"arguments of schedule {schedule_id!r}")
        policy = RetryPolicy.coerce(retry_policy)
        queue, fields = task_queue or default_queue, _search_fields(search)
        definition = {
            "workflow_name": name, "task_queue": queue, "args": stored_args, "search": fields,
            "entity": entity or "",
            "retry_policy": policy.to_dict() if policy else None,
            "expire": None if expire is None else parse_duration(expire, what="expire"),
            "cron": timing.cron, "every": timing.every, "overlap": parse_overlap(overlap),
            "catchup_window": parse_catchup_window(catchup_window),
        }
        if paused is not None and not isinstance(paused, bool):
            raise TypeError(f"paused must be True, False or None, got {paused!r}")
        ns = namespace or self.namespace
        _check_identity(ns, schedule_id, queue, entity, fields, id_field="schedule_id")
        save_schedule(namespace=ns, schedule_id=schedule_id, definition=definition,
                      paused=paused)
        return ScheduleHandle(schedule_id, ns)

    def get_schedule(self, schedule_id: str, namespace: str | None = None) -> ScheduleHandle:
        """A handle on an existing schedule.

        Raises:
            ScheduleNotFoundError: There is none with this id.
        """
        from .schedules import ScheduleHandle
        from .store.schedule_ops import get_schedule

        ns = namespace or self.namespace
        get_schedule(ns, schedule_id)
        return ScheduleHandle(schedule_id, ns)

    def list_schedules(self, namespace: str | None = None) -> list[ScheduleHandle]:
        """Every schedule of the namespace, by id (``describe()`` each for its state)."""
        from .models import Schedule
        from .schedules import ScheduleHandle

        ns = namespace or self.namespace
        ids = Schedule.objects.filter(namespace=ns).order_by("schedule_id") \
            .values_list("schedule_id", flat=True)
        return [ScheduleHandle(schedule_id, ns) for schedule_id in ids]


def _resolve(workflow: WorkflowDefinition | Callable[..., Any] | str,
             task_queue: str | None) -> tuple[str, str, WorkflowDefinition | None]:
    """The workflow's name, default task queue and definition (``None`` when only the workers
    know it)."""
    default_queue = str(durable_setting("DURABLE_DEFAULT_TASK_QUEUE"))
    if isinstance(workflow, WorkflowDefinition):
        return workflow.name, workflow.task_queue or default_queue, workflow
    if isinstance(workflow, str):
        check_text(workflow, "workflow name")
        try:
            definition = find_workflow(workflow)
        except UnknownWorkflowError:
            if task_queue is None:
                raise UnknownWorkflowError(
                    f"no workflow named {workflow!r} is registered in this process; import its "
                    f"module, or pass task_queue= to start a workflow defined only on the "
                    f"workers") from None
            return workflow, default_queue, None
        return definition.name, definition.task_queue or default_queue, definition
    raise TypeError(f"start() needs a @durable_workflow definition or a registered name, got "
                    f"{workflow!r}")


def _check_identity(namespace: str, workflow_id: str, task_queue: str, entity: str | None,
                    search: dict[str, str], *, id_field: str = "workflow_id") -> None:
    """Refuse ids and search fields the database cannot store (before anything is stored)."""
    check_text(namespace, "namespace", max_length=MAX_NAMESPACE_LENGTH)
    check_text(workflow_id, id_field)
    check_text(task_queue, "task_queue")
    if entity is not None:
        check_text(entity, "entity")
    for key, value in search.items():
        check_search_field(key, value)


def _search_fields(search: Any) -> dict[str, str]:
    """``search=`` of ``start``/``schedule`` as stored: field names and values as text."""
    if search is None:
        return {}
    if not isinstance(search, Mapping):
        raise TypeError(f"search must be a dict of field names to values, got "
                        f"{type(search).__name__} {search!r:.80}")
    return {str(k): field_text(v) for k, v in search.items()}


def _check_status(status: Any) -> str | None:
    """``status`` if a run can have it (``None``: any).

    Raises:
        ValueError: Naming the statuses there are.
    """
    from .statuses import ExecutionStatus

    if status is not None and status not in ExecutionStatus.values:
        raise InvalidArgumentError(f"status must be one of {', '.join(ExecutionStatus.values)} "
                                   f"(or None for any), got {status!r:.80}")
    return status


def _check_count(value: Any, what: str, *, allow_none: bool = False) -> None:
    """Refuse a ``limit``/``offset`` that is not a whole number >= 0."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int{' or None' if allow_none else ''}, got "
                        f"{type(value).__name__} {value!r:.80}")
    if value < 0:
        raise InvalidArgumentError(f"{what} cannot be negative, got {value}")
