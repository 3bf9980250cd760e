"""``manage.py durable``: inspect and operate workflows from the shell.

Subcommands: ``list [--status] [--health failing|retrying|stuck] [--name] [--limit]``,
``describe ID [--run] [--watch [--interval] [--timeout]]`` (errors with their tracebacks, every
failed attempt), ``history ID [--run]`` (times and durations), ``export ID [--run]`` (the run
and its history as JSON, :func:`~durable_celery.store.executions.export_run`), ``workers``
(live workers and queues), ``signal SIGNAL_ID JSON``, ``interrupt ID [--descend]``,
``runs ID``, ``cancel ID [--descend] [--reason]``, ``resume ID [--run RUN_ID]``,
``retry ID``, ``start NAME ARGS_JSON [--id] [--queue]``,
``schedule list|describe|pause|unpause|trigger|delete [SCHEDULE_ID] [--note]``. Each takes
``--json`` and ``--namespace``. Reading never changes state; errors exit 1 (usage errors, such
as a value that is not one of the choices, exit 2).
"""

from __future__ import annotations

import getpass
import json
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ...admin_format import format_time
from ...conf import durable_setting
from ...errors import DurableError
from ...models import ExecutionStatus, WorkflowExecution
from ...store import inspect
from ...store.executions import describe_execution, export_run, get_execution, history_of
from ._durable_text import (
    describe_lines,
    failures_of,
    history_table,
    table,
    workers_report,
    workers_text,
)

__all__ = ["Command"]

SCHEDULE_ACTIONS = ("list", "describe", "pause", "unpause", "trigger", "delete")
SCHEDULE_COLUMNS = ("schedule_id", "workflow_name", "timing", "overlap", "paused", "next_run",
                    "last_run", "runs_started")
LIST_COLUMNS = ("workflow_id", "run_id", "workflow_name", "status", "task_queue", "created_at",
                "completed_at")
HEALTH_FILTERS = {"failing": inspect.failing, "retrying": inspect.retrying,
                  "stuck": inspect.stuck}


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{what} is not valid JSON: {exc}") from None


class Command(BaseCommand):
    """Inspect and operate durable workflows."""

    help = "Inspect and operate durable workflows (list, describe, history, signal, ...)."

    def add_arguments(self, parser: CommandParser) -> None:
        """One subparser per subcommand, each with ``--json`` and ``--namespace``."""
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

        def add(name: str, help_text: str) -> ArgumentParser:
            p = sub.add_parser(name, help=help_text)
            p.add_argument("--json", action="store_true", dest="as_json",
                           help="print JSON instead of text")
            p.add_argument("--namespace", default=None, help="namespace (default: the setting)")
            return p

        p = add("list", "list workflow executions, newest first")
        p.add_argument("--status", default=None, choices=ExecutionStatus.values)
        p.add_argument("--health", default=None, choices=sorted(HEALTH_FILTERS),
                       help="failing: failed or retrying; retrying: active and retrying "
                            "after failures; stuck: active without progress for "
                            "DURABLE_STUCK_AFTER seconds")
        p.add_argument("--name", default=None, help="workflow name")
        p.add_argument("--limit", type=int, default=50)
        p = add("describe", "show one execution: fields, errors with tracebacks, failures")
        p.add_argument("workflow_id")
        p.add_argument("--run", dest="run_id", default=None, help="a run id (default: latest)")
        p.add_argument("--watch", action="store_true",
                       help="re-render until the run ends (or --timeout passes: exit 1)")
        p.add_argument("--interval", type=float, default=1.0, help="seconds between renders")
        p.add_argument("--timeout", type=float, default=600.0,
                       help="seconds --watch waits at most")
        p = add("history", "show an execution's history with times and durations")
        p.add_argument("workflow_id")
        p.add_argument("--run", dest="run_id", default=None, help="a run id (default: latest)")
        p = add("export", "print a run and its history as JSON (for the testing kit's replay)")
        p.add_argument("workflow_id")
        p.add_argument("--run", dest="run_id", default=None, help="a run id (default: latest)")
        add("workers", "list live workers, what they hold, and every queue's backlog")
        _add_run_subcommands(sub, add)
        p = add("signal", "send a signal to every workflow waiting on it")
        p.add_argument("signal_id")
        p.add_argument("payload", help="JSON payload")
        p = add("interrupt", "interrupt a running workflow")
        p.add_argument("workflow_id")
        p.add_argument("--descend", action="store_true", help="also interrupt descendants")
        p.add_argument("--reason", default=None)
        add("retry", "retry a failed workflow from its failed step").add_argument("workflow_id")
        p = add("start", "start a workflow by registered name")
        p.add_argument("name")
        p.add_argument("args_json", nargs="?", default="[]", metavar="ARGS_JSON",
                       help="JSON list of arguments")
        p.add_argument("--id", dest="workflow_id", default=None)
        p.add_argument("--queue", dest="task_queue", default=None)
        p = add("schedule", "list, describe, pause, unpause, trigger or delete schedules")
        p.add_argument("action", choices=SCHEDULE_ACTIONS)
        p.add_argument("schedule_id", nargs="?", default=None, metavar="SCHEDULE_ID")
        p.add_argument("--note", default=None, help="why (pause, unpause)")

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the subcommand; durable errors become ``CommandError`` (exit code 1)."""
        self.as_json = bool(options.get("as_json"))
        self.namespace = options.get("namespace") or str(
            durable_setting("DURABLE_DEFAULT_NAMESPACE"))
        handler = getattr(self, f"do_{options['subcommand']}")
        try:
            handler(options)
        except DurableError as error:
            raise CommandError(f"{type(error).__name__}: {error.message or error}") from None

    def _emit(self, value: Any, text: str) -> None:
        if self.as_json:
            self.stdout.write(json.dumps(value, indent=2, default=str, sort_keys=True))
        else:
            self.stdout.write(text)

    def do_list(self, options: dict[str, Any]) -> None:
        """Executions matching ``--status``, ``--health`` and ``--name``."""
        qs = WorkflowExecution.objects.filter(namespace=self.namespace)
        if options["status"]:
            qs = qs.filter(status=options["status"])
        if options["health"]:
            qs = qs.filter(HEALTH_FILTERS[options["health"]]())
        if options["name"]:
            qs = qs.filter(workflow_name=options["name"])
        rows = list(qs.order_by("-created_at", "-id").values(*LIST_COLUMNS)
                    [:max(options["limit"], 0)])
        self._emit(rows, table(LIST_COLUMNS, [
            {**row, "created_at": format_time(row["created_at"]),
             "completed_at": format_time(row["completed_at"]) if row["completed_at"] else ""}
            for row in rows]))

    def _run(self, options: dict[str, Any]) -> WorkflowExecution:
        return get_execution(self.namespace, options["workflow_id"], options.get("run_id"))

    def do_describe(self, options: dict[str, Any]) -> None:
        """One execution's ``describe()``, its error's traceback and its failures."""
        if options["watch"]:
            self._watch(options)
            return
        execution = self._run(options)
        info = {**describe_execution(execution), "failures": failures_of(execution)}
        self._emit(info, "\n".join(describe_lines(execution)))

    def _watch(self, options: dict[str, Any]) -> None:
        """Re-render the run every ``--interval`` seconds until it ends."""
        interval = max(float(options["interval"]), 0.05)
        deadline = time.monotonic() + max(float(options["timeout"]), 0.0)
        clear = not self.as_json and hasattr(self.stdout, "isatty") and self.stdout.isatty()
        while True:
            execution = self._run(options)
            if self.as_json:
                self.stdout.write(json.dumps(describe_execution(execution), default=str,
                                             sort_keys=True))
            else:
                self.stdout.write(("\x1b[2J\x1b[H" if clear else
                                   f"--- {format_time(timezone.now(), millis=True)} ---\n")
                                  + "\n".join(describe_lines(execution, tracebacks=False))
                                  + "\n\n" + history_table(execution) + "\n")
            self.stdout.flush()
            if not execution.is_active:
                return
            if time.monotonic() >= deadline:
                raise CommandError(f"workflow {execution.workflow_id!r} is still "
                                   f"{execution.status} after {options['timeout']:g}s")
            time.sleep(interval)

    def do_history(self, options: dict[str, Any]) -> None:
        """One execution's ``history()``, with times and durations."""
        execution = self._run(options)
        self._emit(history_of(execution), history_table(execution))

    def do_export(self, options: dict[str, Any]) -> None:
        """One run and its history as JSON (``export_run``), whatever ``--json`` says."""
        self.stdout.write(json.dumps(export_run(self._run(options)), indent=2, default=str,
                                     sort_keys=True))

    def do_workers(self, options: dict[str, Any]) -> None:
        """Live workers and queues."""
        report = workers_report()
        self._emit(report, workers_text(report))

    def do_signal(self, options: dict[str, Any]) -> None:
        """Send a signal (recorded on every workflow it reaches)."""
        from ...store.operations import signal_as_operator

        payload = _json_arg(options["payload"], "the payload")
        woken = signal_as_operator(self.namespace, options["signal_id"], payload, _operator())
        self._emit({"signal_id": options["signal_id"], "woken": woken},
                   f"signal {options['signal_id']!r} delivered to {woken} waiting thread(s)"
                   if woken else f"signal {options['signal_id']!r} stored: nobody waits yet")

    def do_interrupt(self, options: dict[str, Any]) -> None:
        """Interrupt a running workflow."""
        from ...store.operations import interrupt_as_operator

        ids = interrupt_as_operator(self.namespace, options["workflow_id"], _operator(),
                                    reason=options["reason"], descend=options["descend"])
        self._emit({"interrupted": ids}, f"interrupted: {', '.join(ids)}")

    def do_retry(self, options: dict[str, Any]) -> None:
        """Retry a failed workflow from its failed step."""
        from ...store.operations import retry_execution

        done = retry_execution(self.namespace, options["workflow_id"], _operator())
        self._emit(done, f"retrying {done['workflow_id']}: " + (
            f"activity step(s) {', '.join(map(str, done['events']))} dispatched again"
            if done["mode"] == "activity" else "a new replay step was requested"))

    def do_start(self, options: dict[str, Any]) -> None:
        """Start a workflow by its registered name."""
        from ...client import DurableClient
        from ...errors import UnknownWorkflowError

        args = _json_arg(options["args_json"], "ARGS_JSON")
        if not isinstance(args, list):
            raise CommandError("ARGS_JSON must be a JSON list of arguments, e.g. '[\"x\", 1]'")
        _import_workflow_modules()
        try:
            handle = DurableClient(self.namespace).start(
                options["name"], *args, workflow_id=options["workflow_id"],
                task_queue=options["task_queue"])
        except UnknownWorkflowError:  # the client's advice names its keyword, not the flag
            raise UnknownWorkflowError(
                f"no workflow named {options['name']!r} is registered in this command's "
                f"process; pass --queue QUEUE to start a workflow defined only on the "
                f"workers") from None
        except TypeError as error:
            raise CommandError(str(error)) from None
        self._emit({"workflow_id": handle.workflow_id, "namespace": handle.namespace},
                   f"started {handle.workflow_id}")


    def do_schedule(self, options: dict[str, Any]) -> None:
        """List schedules, or act on the one named (recorded with the shell user)."""
        from ...store import schedule_ops

        action, schedule_id = options["action"], options["schedule_id"]
        if action == "list":
            rows = schedule_ops.list_schedules(self.namespace)
            self._emit(rows, table(SCHEDULE_COLUMNS, rows))
            return
        if not schedule_id:
            raise CommandError(f"schedule {action} needs a SCHEDULE_ID")
        if action == "describe":
            info = schedule_ops.describe_schedule(self.namespace, schedule_id)
            self._emit(info, "\n".join(f"{key:<18} {_text(value)}" for key, value in info.items()
                                       if key != "log"))
        elif action in ("pause", "unpause"):
            paused = action == "pause"
            changed = schedule_ops.set_paused(self.namespace, schedule_id, paused,
                                              user=_operator(), note=options["note"])
            self._emit({"schedule_id": schedule_id, "paused": paused, "changed": changed},
                       f"schedule {schedule_id} {action}d" if changed
                       else f"schedule {schedule_id} was already {action}d")
        elif action == "trigger":
            workflow_id = schedule_ops.trigger_schedule(self.namespace, schedule_id,
                                                        user=_operator())
            self._emit({"schedule_id": schedule_id, "workflow_id": workflow_id},
                       f"schedule {schedule_id} triggered: {workflow_id}")
        else:
            schedule_ops.delete_schedule(self.namespace, schedule_id, user=_operator())
            self._emit({"schedule_id": schedule_id, "deleted": True},
                       f"schedule {schedule_id} deleted")


    def do_runs(self, options: dict[str, Any]) -> None:
        """Every run of a workflow id, newest first."""
        from ...models import WorkflowExecution

        rows = list(WorkflowExecution.objects.named(self.namespace, options["workflow_id"])
                    .order_by("-id").values(*RUN_COLUMNS))
        if not rows:
            get_execution(self.namespace, options["workflow_id"])  # raises: names the id
        self._emit(rows, table(RUN_COLUMNS, rows))

    def do_resume(self, options: dict[str, Any]) -> None:
        """Resume an interrupted or failed run from where it stopped."""
        from ...store.operations import resume_as_operator

        done = resume_as_operator(self.namespace, options["workflow_id"], _operator(),
                                  run_id=options.get("run_id"))
        opened = [f"#{r['seq']} activity {r['name']} (failed)" for r in done["failed"]] + \
            [f"#{r['seq']} {r['kind']} {r['name']}".rstrip() for r in done["reopened"]]
        self._emit(done, f"resumed {done['workflow_id']} run {done['run_id']}"
                   + (f": issued again {', '.join(opened)}" if opened else "")
                   if done["resumed"] else
                   f"nothing to resume: run {done['run_id']} of {done['workflow_id']} completed")

    def do_cancel(self, options: dict[str, Any]) -> None:
        """Ask a running workflow to cancel itself (its cleanup code runs; recorded with the
        shell user, as the admin records its user)."""
        from ...store.operations import cancel_as_operator

        ids = cancel_as_operator(self.namespace, options["workflow_id"], _operator(),
                                 reason=options["reason"], descend=options["descend"])
        self._emit({"cancelled": ids}, f"cancellation requested: {', '.join(ids)}" if ids
                   else "nothing to cancel: its cancellation was already requested")


RUN_COLUMNS = ("run_id", "status", "previous_run_id", "created_at", "completed_at")


def _add_run_subcommands(sub: Any, add: Any) -> None:
    """The ``runs``, ``resume`` and ``cancel`` subcommands."""
    add("runs", "list every run of a workflow id, newest first").add_argument("workflow_id")
    p = add("resume", "resume an interrupted or failed run from where it stopped")
    p.add_argument("workflow_id")
    p.add_argument("--run", dest="run_id", default=None, metavar="RUN_ID",
                   help="a run of the id (default: the current one)")
    p = add("cancel", "ask a running workflow to cancel itself; its cleanup code runs")
    p.add_argument("workflow_id")
    p.add_argument("--descend", action="store_true", help="also cancel running descendants")
    p.add_argument("--reason", default=None)


def _import_workflow_modules() -> None:
    """Import the modules the Celery app names (``CELERY_IMPORTS``) so names resolve."""
    try:
        from celery import current_app

        current_app.loader.import_default_modules()
    except ImportError:  # the workers know the workflow; --queue still routes it
        pass


def _text(value: Any) -> str:
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
