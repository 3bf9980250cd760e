"""What durable_celery stores: runs of workflows, their history and attempts, timers, buffered
signals, the outbox, and the registry of worker processes."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from .clock import ClockDateTimeField
from .managers import (
    ExecutionQuerySet,
    HistoryEventQuerySet,
    OutboxQuerySet,
    PendingSignalQuerySet,
    ScheduleQuerySet,
    TimerQuerySet,
)
from .statuses import ACTIVE_STATUSES, ExecutionStatus, HistoryStatus

__all__ = [
    "ACTIVE_STATUSES",
    "ActivityAttempt",
    "AttemptOutcome",
    "ExecutionStatus",
    "HistoryEvent",
    "HistoryStatus",
    "OutboxMessage",
    "PendingSignal",
    "Schedule",
    "ScheduleOverlap",
    "SearchAttribute",
    "Timer",
    "TimerKind",
    "Worker",
    "WorkflowExecution",
    "WorkflowThread",
    "new_run_id",
]


def new_run_id() -> str:
    """A fresh run id: 32 hex digits."""
    return uuid.uuid4().hex


class Worker(models.Model):
    """A worker process that can hold claims: a Celery worker's main process, or one of its
    pool processes (``parent`` set), or an embedded worker (demo, testing kit).

    The main process heartbeats for itself and its pool processes from its sweeper thread; a
    process whose heartbeat is older than ``DURABLE_WORKER_STALE_AFTER`` or that is marked
    ``stopped_at`` is dead, and any live worker re-drives what it held.
    """

    name = models.CharField(max_length=255, help_text="Celery node name of the worker")
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    parent = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True,
                               related_name="processes",
                               help_text="the worker's main process, for a pool process")
    queues = models.JSONField(default=list, blank=True, help_text="Celery queues it consumes")
    pool = models.CharField(max_length=32, blank=True, default="")
    version = models.CharField(max_length=32, blank=True, default="")
    started_at = ClockDateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    recovered_at = models.DateTimeField(
        null=True, blank=True,
        help_text="when a live worker took back what this dead process held (cleared by its "
                  "next heartbeat, should it beat again)")

    class Meta:
        indexes = [
            models.Index(fields=["heartbeat_at"], name="durable_worker_heartbeat_idx"),
            models.Index(fields=["parent", "pid"], name="durable_worker_parent_pid_idx"),
        ]

    def __str__(self) -> str:
        role = "process" if self.parent_id else "worker"
        return f"{role} {self.name} pid {self.pid}"



class WorkflowExecution(models.Model):
    """One run of a workflow: its identity, arguments, outcome and lineage.

    A workflow id may have many runs (started again after it ended, or continued as new); at
    most one of them is active. ``step_count`` is the run's version: every replay step that
    records a decision increments it, and a decision made from an older version is refused.
    """

    namespace = models.CharField(max_length=100, default="durable")
    workflow_id = models.CharField(max_length=255)
    run_id = models.CharField(max_length=32, unique=True, default=new_run_id)
    workflow_name = models.CharField(max_length=255)
    task_queue = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices,
                              default=ExecutionStatus.PENDING)
    args = models.JSONField(default=list, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    entity = models.CharField(max_length=255, blank=True, default="",
                              help_text="entity type named at start")
    document = models.JSONField(default=dict, blank=True,
                                help_text="the workflow's entity JSON document")
    parent_workflow_id = models.CharField(max_length=255, null=True, blank=True)
    parent_run_id = models.CharField(max_length=32, null=True, blank=True)
    origin_workflow_id = models.CharField(max_length=255, null=True, blank=True)
    previous_run_id = models.CharField(
        max_length=32, null=True, blank=True,
        help_text="the run this one continued as new from")
    retry_policy = models.JSONField(null=True, blank=True)
    expire = models.FloatField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=1, help_text="workflow-level try number")
    step_count = models.PositiveIntegerField(default=0, help_text="replay steps run so far")
    step_requested = models.BooleanField(
        default=True, help_text="a replay step is due although no new outcome arrived")
    # Not indexed: an index on a column every step changes makes every step's UPDATE write
    # every index of this table (no HOT update); claims are looked up among active runs only.
    # Without an index a foreign-key constraint (or Django's SET_NULL) would make deleting a
    # worker row scan every run: there is none, and prune_workers deletes only processes that
    # hold no claim (a finished run holds none).
    step_claimed_by = models.ForeignKey(
        Worker, on_delete=models.DO_NOTHING, null=True, blank=True, related_name="+",
        db_index=False, db_constraint=False,
        help_text="the worker process running a replay step of this run now")
    step_claimed_until = models.DateTimeField(null=True, blank=True)
    step_failures = models.PositiveIntegerField(
        default=0, help_text="consecutive steps whose decision could not be recorded")
    outcomes_settled = models.PositiveBigIntegerField(
        default=0, help_text="activity outcomes recorded apart from a step, counted")
    wake_at = models.PositiveBigIntegerField(
        default=0, help_text="while outcomes_settled is below this, a recorded activity outcome "
                             "does not step the run (it waits for a workflow.all group)")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    timeout_at = models.DateTimeField(
        null=True, blank=True, help_text="when execution_timeout interrupts the run")
    created_at = ClockDateTimeField(auto_now_add=True)
    updated_at = ClockDateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["namespace", "workflow_id"],
                                    condition=Q(status__in=["pending", "running"]),
                                    name="durable_exec_one_active_run"),
        ]
        indexes = [
            models.Index(fields=["namespace", "workflow_id"], name="durable_exec_ns_wfid_idx"),
            models.Index(fields=["previous_run_id"], name="durable_exec_previous_run_idx"),
            models.Index(fields=["status", "workflow_name"], name="durable_exec_status_name_idx"),
            models.Index(fields=["created_at"], name="durable_exec_created_idx"),
            models.Index(fields=["parent_workflow_id"], name="durable_exec_parent_idx"),
            # Runs asking for a step (a few at any time). It names no column a step changes
            # (``updated_at``, the claim) so that a step's UPDATE can be HOT.
            models.Index(fields=["created_at"], name="durable_exec_stepreq_idx",
                         condition=Q(step_requested=True)),
        ]
        permissions = [
            ("operate_workflow", "Can signal, interrupt and retry workflows"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_name} {self.workflow_id} ({self.status})"

    @property
    def is_active(self) -> bool:
        """Whether the execution can still make progress."""
        return self.status in ACTIVE_STATUSES


class SearchAttribute(models.Model):
    """One search field of an execution: indexed ``(key, value)`` rows."""

    execution = models.ForeignKey(WorkflowExecution, on_delete=models.CASCADE,
                                  related_name="search_attributes")
    key = models.CharField(max_length=255)
    value = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["execution", "key"],
                                    name="durable_search_exec_key_uniq"),
        ]
        indexes = [models.Index(fields=["key", "value"], name="durable_search_key_value_idx")]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class HistoryEvent(models.Model):
    """One durable call of an execution, at its position in its thread."""

    # Not indexed alone: the position and observed-step indexes both lead with it.
    execution = models.ForeignKey(WorkflowExecution, on_delete=models.CASCADE,
                                  related_name="history", db_index=False)
    dimension = models.CharField(max_length=100, blank=True, default="")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=20)
    name = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=HistoryStatus.choices,
                              default=HistoryStatus.SCHEDULED)
    attempts = models.PositiveIntegerField(default=0)
    input = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    observed_step = models.PositiveIntegerField(
        null=True, blank=True, help_text="the replay step that first saw the outcome")
    celery_task_id = models.CharField(max_length=255, null=True, blank=True)
    worker = models.ForeignKey(
        Worker, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="the worker process running the current activity attempt")
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="when the current activity attempt was sent to its queue")
    started_at = models.DateTimeField(
        null=True, blank=True, help_text="when the current activity attempt started")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    heartbeat_details = models.JSONField(null=True, blank=True)
    lease_until = models.DateTimeField(
        null=True, blank=True,
        help_text="when the current activity attempt is presumed lost or has timed out")
    created_at = ClockDateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = HistoryEventQuerySet.as_manager()

    class Meta:
        ordering = ["execution", "dimension", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "dimension", "seq"],
                                    name="durable_hist_position_uniq"),
        ]
        indexes = [
            models.Index(fields=["completed_at"], name="durable_hist_unobserved_idx",
                         condition=Q(observed_step__isnull=True,
                                     status__in=["completed", "failed"])),
            models.Index(fields=["name"], name="durable_hist_waiting_idx",
                         condition=Q(kind="wait", status="scheduled")),
            models.Index(fields=["lease_until"], name="durable_hist_lease_idx",
                         condition=Q(kind="activity", status="scheduled")),
            # What a run kept in memory missed: outcomes later steps saw, and unseen ones.
            models.Index(fields=["execution", "observed_step"], name="durable_hist_observed_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind} {self.name} ({self.status})"


class AttemptOutcome(models.TextChoices):
    """How a finished activity attempt ended (successful attempts are the history row)."""

    FAILED = "failed", "failed"
    TIMED_OUT = "timed_out", "timed out"
    WORKER_LOST = "worker_lost", "worker lost"


class ActivityAttempt(models.Model):
    """One failed attempt of an activity call: when and where it ran, how it ended, and the
    wait before the next one. The current (or successful) attempt lives on the history row."""

    event = models.ForeignKey(HistoryEvent, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    worker = models.ForeignKey(Worker, on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="+")
    worker_name = models.CharField(max_length=255, blank=True, default="")
    celery_task_id = models.CharField(max_length=255, null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    error = models.JSONField(null=True, blank=True)
    retry_delay = models.FloatField(
        null=True, blank=True, help_text="seconds waited before the next attempt; empty if none")

    class Meta:
        # Not unique: an operator's retry restarts a call's attempts at 1, and the attempts of
        # every round stay in the log.
        ordering = ["event", "finished_at", "number"]
        indexes = [models.Index(fields=["event", "number"], name="durable_attempt_event_idx")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.event_id}: {self.outcome}"


class WorkflowThread(models.Model):
    """A hook thread: a workflow function running inside an execution in its own dimension.

    It has its own positions (history rows with ``dimension``) and shares the execution's search
    fields and entity document. Its return value is discarded; it reports through signals and
    shared state.
    """

    execution = models.ForeignKey(WorkflowExecution, on_delete=models.CASCADE,
                                  related_name="threads")
    dimension = models.CharField(max_length=100)
    workflow_name = models.CharField(max_length=255)
    task_queue = models.CharField(max_length=255)
    args = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices,
                              default=ExecutionStatus.RUNNING)
    error = models.JSONField(null=True, blank=True)
    retry_policy = models.JSONField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=1, help_text="try number of the hook function")
    step_requested = models.BooleanField(default=True)
    created_at = ClockDateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["execution", "dimension"],
                                    name="durable_thread_dimension_uniq"),
        ]
        indexes = [models.Index(fields=["execution", "status"], name="durable_thread_open_idx")]

    def __str__(self) -> str:
        return f"hook {self.workflow_name} [{self.dimension}] ({self.status})"


class TimerKind(models.TextChoices):
    """What a due timer does."""

    SLEEP = "sleep", "sleep"
    WAIT_TIMEOUT = "wait_timeout", "wait timeout"
    ACTIVITY_RETRY = "activity_retry", "activity retry"
    WORKFLOW_RETRY = "workflow_retry", "workflow retry"
    HOOK_RETRY = "hook_retry", "hook retry"
    EXECUTION_TIMEOUT = "execution_timeout", "execution timeout"


class Timer(models.Model):
    """A stored wake-up: the sweeper claims it when ``due_at`` has passed."""

    execution = models.ForeignKey(WorkflowExecution, on_delete=models.CASCADE,
                                  related_name="timers")
    event = models.ForeignKey(HistoryEvent, on_delete=models.CASCADE, null=True, blank=True,
                              related_name="timers")
    thread = models.ForeignKey(WorkflowThread, on_delete=models.CASCADE, null=True, blank=True,
                               related_name="timers")
    kind = models.CharField(max_length=20, choices=TimerKind.choices)
    due_at = models.DateTimeField()
    created_at = ClockDateTimeField(auto_now_add=True)

    objects = TimerQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["due_at"], name="durable_timer_due_idx")]

    def __str__(self) -> str:
        return f"{self.kind} due {self.due_at:%Y-%m-%d %H:%M:%S}"


class PendingSignal(models.Model):
    """A signal sent while nobody waited for it, kept until a ``wait_for`` takes it."""

    namespace = models.CharField(max_length=100)
    signal_id = models.CharField(max_length=255)
    payload = models.JSONField(null=True, blank=True)
    created_at = ClockDateTimeField(auto_now_add=True)

    objects = PendingSignalQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["namespace", "signal_id"],
                                name="durable_signal_lookup_idx")]

    def __str__(self) -> str:
        return f"{self.namespace}:{self.signal_id}"


class OutboxMessage(models.Model):
    """A Celery message recorded in the transaction that decided it; sent after commit."""

    task_name = models.CharField(max_length=255)
    queue = models.CharField(max_length=255)
    args = models.JSONField(default=list)
    created_at = ClockDateTimeField(auto_now_add=True)
    publish_attempts = models.PositiveIntegerField(default=0)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="durable_outbox_created_idx")]

    def __str__(self) -> str:
        return f"{self.task_name} -> {self.queue}"


class ScheduleOverlap(models.TextChoices):
    """What a fire does while a run started by the same schedule is still running."""

    SKIP = "skip", "skip the fire"
    BUFFER_ONE = "buffer_one", "buffer one fire until the previous run ends"
    ALLOW_ALL = "allow_all", "start anyway"
    CANCEL_OTHER = "cancel_other", "stop the running one, then start"


class Schedule(models.Model):
    """A workflow started on a cron expression or a fixed interval (times in UTC).

    The sweeper claims a due fire by moving ``next_fire_at`` forward in the transaction that
    starts its run, so each fire time starts at most one run however many workers sweep.
    """

    namespace = models.CharField(max_length=100, default="durable")
    schedule_id = models.CharField(max_length=200)
    workflow_name = models.CharField(max_length=255)
    task_queue = models.CharField(max_length=255)
    args = models.JSONField(default=list, blank=True)
    search = models.JSONField(default=dict, blank=True, help_text="search fields of each run")
    entity = models.CharField(max_length=255, blank=True, default="",
                              help_text="entity type of each run")
    retry_policy = models.JSONField(null=True, blank=True)
    expire = models.FloatField(null=True, blank=True,
                               help_text="seconds each run is kept after it ends")
    cron = models.CharField(max_length=255, blank=True, default="",
                            help_text="cron expression, evaluated in UTC")
    every = models.PositiveIntegerField(null=True, blank=True,
                                        help_text="seconds between fires (aligned to the epoch)")
    overlap = models.CharField(max_length=16, choices=ScheduleOverlap.choices,
                               default=ScheduleOverlap.SKIP)
    catchup_window = models.FloatField(
        help_text="seconds within which a fire missed while no worker ran is made up")
    paused = models.BooleanField(default=False)
    note = models.CharField(max_length=500, blank=True, default="",
                            help_text="why it was last paused or unpaused")
    next_fire_at = models.DateTimeField(help_text="the next fire time not yet claimed")
    last_fire_at = models.DateTimeField(null=True, blank=True,
                                        help_text="fire time of the latest run started")
    buffered_fire_at = models.DateTimeField(
        null=True, blank=True, help_text="fire time waiting for the previous run to end")
    active_runs = models.JSONField(default=list, blank=True,
                                   help_text="workflow ids started and not yet seen ended")
    recent_runs = models.JSONField(default=list, blank=True,
                                   help_text="latest runs started, newest first")
    log = models.JSONField(default=list, blank=True,
                           help_text="latest fires and operator actions, newest first")
    runs_started = models.PositiveIntegerField(default=0)
    fires_skipped = models.PositiveIntegerField(
        default=0, help_text="fires not started because of the overlap policy")
    fires_missed = models.PositiveIntegerField(
        default=0, help_text="fires older than the catch-up window when a worker came back")
    created_at = ClockDateTimeField(auto_now_add=True)
    updated_at = ClockDateTimeField(auto_now=True)

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        ordering = ["namespace", "schedule_id"]
        constraints = [
            models.UniqueConstraint(fields=["namespace", "schedule_id"],
                                    name="durable_sched_ns_id_uniq"),
        ]
        indexes = [
            models.Index(fields=["next_fire_at"], name="durable_sched_due_idx",
                         condition=Q(paused=False)),
            models.Index(fields=["buffered_fire_at"], name="durable_sched_buffered_idx",
                         condition=Q(paused=False, buffered_fire_at__isnull=False)),
        ]
        permissions = [
            ("operate_schedule", "Can pause, unpause, trigger and delete schedules"),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} ({self.cron or f'every {self.every}s'})"
