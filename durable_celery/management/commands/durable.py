"""``manage.py durable``: inspect and operate workflows from the shell.

Subcommands: ``list``, ``describe ID [--run RUN_ID]``, ``history ID [--run RUN_ID]``,
``runs ID``, ``signal SIGNAL_ID JSON``, ``interrupt ID [--descend]``,
``cancel ID [--descend] [--reason]``, ``resume ID [--run RUN_ID]``, ``retry ID``,
``start NAME ARGS_JSON [--id] [--queue]``,
``schedule list|describe|pause|unpause|trigger|delete [SCHEDULE_ID] [--note]``. Each takes
``--json`` and ``--namespace``. Reading never changes state; errors exit 1 (usage errors 2).
"""

from __future__ import annotations

import getpass
import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import durable_setting
from ...errors import DurableError
from ...store.executions import describe_execution, get_execution, history_of

__all__ = ["Command"]

SCHEDULE_ACTIONS = ("list", "describe", "pause", "unpause", "trigger", "delete")
SCHEDULE_COLUMNS = ("schedule_id", "workflow_name", "timing", "overlap", "paused", "next_run",
                    "last_run", "runs_started")
LIST_COLUMNS = ("workflow_id", "workflow_name", "status", "task_queue", "created_at")
HISTORY_COLUMNS = ("seq", "dimension", "kind", "name", "status", "attempts")


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
        p.add_argument("--status", default=None)
        p.add_argument("--name", default=None, help="workflow name")
        p.add_argument("--limit", type=int, default=50)
        add("describe", "show one execution").add_argument("workflow_id")
        add("history", "show an execution's history").add_argument("workflow_id")
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
        """Executions matching ``--status`` and ``--name``."""
        from ...models import WorkflowExecution

        qs = WorkflowExecution.objects.filter(namespace=self.namespace)
        if options["status"]:
            qs = qs.filter(status=options["status"])
        if options["name"]:
            qs = qs.filter(workflow_name=options["name"])
        rows = list(qs.order_by("-created_at", "-id").values(*LIST_COLUMNS)
                    [:max(options["limit"], 0)])
        self._emit(rows, _table(LIST_COLUMNS, rows))

    def do_describe(self, options: dict[str, Any]) -> None:
        """One execution's ``describe()`` (the current run, or ``--run``)."""
        info = describe_execution(get_execution(self.namespace, options["workflow_id"],
                                                options.get("run_id")))
        self._emit(info, "\n".join(f"{key:<20} {_text(value)}" for key, value in info.items()))

    def do_history(self, options: dict[str, Any]) -> None:
        """One execution's ``history()`` (the current run, or ``--run``)."""
        rows = history_of(get_execution(self.namespace, options["workflow_id"],
                                        options.get("run_id")))
        text = _table(HISTORY_COLUMNS + ("outcome",), [
            {**row, "outcome": (row["error"] or {}).get("message", "") if row["error"]
             else json.dumps(row["result"], default=str)[:60]} for row in rows])
        self._emit(rows, text)

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

        args = _json_arg(options["args_json"], "ARGS_JSON")
        if not isinstance(args, list):
            raise CommandError("ARGS_JSON must be a JSON list of arguments, e.g. '[\"x\", 1]'")
        _import_workflow_modules()
        try:
            handle = DurableClient(self.namespace).start(
                options["name"], *args, workflow_id=options["workflow_id"],
                task_queue=options["task_queue"])
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
            self._emit(rows, _table(SCHEDULE_COLUMNS, rows))
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
        self._emit(rows, _table(RUN_COLUMNS, rows))

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
        """Ask a running workflow to cancel itself (its cleanup code runs)."""
        from ...store.lifecycle import request_cancel

        ids = request_cancel(self.namespace, options["workflow_id"], None,
                             reason=options["reason"], descend=options["descend"])
        self._emit({"cancelled": ids}, f"cancellation requested: {', '.join(ids)}" if ids
                   else "nothing to cancel: the workflow has ended or was already cancelled")


RUN_COLUMNS = ("run_id", "status", "previous_run_id", "created_at", "completed_at")


def _add_run_subcommands(sub: Any, add: Any) -> None:
    """``--run`` on describe/history, and the ``runs``, ``resume`` and ``cancel`` subcommands."""
    for name in ("describe", "history"):
        sub.choices[name].add_argument("--run", dest="run_id", default=None, metavar="RUN_ID",
                                       help="a run of the id (default: the current one)")
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


def _table(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(row.get(c, "") if row.get(c) is not None else "") for c in columns]
             for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
