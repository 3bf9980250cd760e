"""``manage.py durable_demo``: the demo order workflow on the embedded setup, narrated step by step.

Runs a Celery worker as threads of this process, starts ``durable_demo.order_flow``
(:mod:`durable_celery.demo`: its own workflow name, task queue and namespace, so it never meets a
project's own workflows), prints every history row as it is recorded with the time since the
start, answers the workflow's ``wait_for`` with a signal, and prints the result as soon as the
workflow has finished — before the worker shuts down.

It runs only on the embedded setup — an in-process broker (``memory://``, or ``filesystem://``)
and a SQLite database — and refuses a real broker or database unless ``--allow-external`` is
given: the demo writes its workflows to that database and consumes its own queues
(``durable_demo``, ``durable_demo-activity``) on that broker. On the embedded setup it migrates
the database first; elsewhere it asks for ``manage.py migrate`` instead of running it.

Kombu's in-process transports poll for messages, once a second unless told otherwise; the demo
sets ``polling_interval`` to :data:`DEMO_POLLING_INTERVAL` for its own worker, so a step takes
milliseconds.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlparse

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

__all__ = ["DEMO_POLLING_INTERVAL", "EMBEDDED_BROKERS", "Command"]

#: Kombu transports that live inside this machine and need no server.
EMBEDDED_BROKERS = ("memory", "filesystem")
#: Seconds between the demo worker's polls of an in-process transport (Kombu's default is 1).
DEMO_POLLING_INTERVAL = 0.01
#: Statuses after which a workflow runs no more.
FINISHED = ("completed", "failed", "interrupted")


class Command(BaseCommand):
    """Run the demo order workflow end to end."""

    help = ("Run the demo order workflow on in-process worker threads and narrate it. Needs the "
            "embedded setup (memory:// or filesystem:// broker, SQLite) unless --allow-external.")
    # The system checks run in handle(), after the broker and database were judged: newer Django
    # releases open the database while checking, and a refused demo must not touch it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--order", default=None, help="order id (default: generated)")
        parser.add_argument("--sleep", default="3s", help="durable sleep inside the workflow")
        parser.add_argument("--timeout", type=float, default=60.0,
                            help="seconds to wait for the workflow")
        parser.add_argument("--allow-external", action="store_true",
                            help="run even though the broker or the database is not the "
                                 "embedded one (writes durable_demo workflows to that database)")

    def handle(self, *args: Any, **options: Any) -> None:
        from celery import current_app
        from celery.contrib.testing.worker import start_worker

        from durable_celery import DurableClient, demo
        from durable_celery.transport.worker import start_worker_runtime, stop_worker_runtime

        app = current_app._get_current_object()  # type: ignore[attr-defined]
        external = self._external_parts(app)
        if external and not options["allow_external"]:
            raise CommandError(
                "durable_demo runs on the embedded setup only (a memory:// or filesystem:// "
                "broker and a SQLite database), but this project uses "
                + " and ".join(external) + ". Pass --allow-external to run it there anyway: it "
                "writes workflows named durable_demo.* (namespace durable_demo) to that database "
                "and consumes the queues " + ", ".join(demo.DEMO_QUEUES) + " on that broker.")
        self.check()
        if external:
            self._require_migrated()
        else:
            call_command("migrate", verbosity=0)
        self._poll_fast(app)

        order_id = options["order"] or uuid.uuid4().hex[:8]
        self.stdout.write(f"durable_celery demo — broker {self._broker(app)}, database "
                          f"{self._database_name()}")
        with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False,
                          queues=demo.DEMO_QUEUES, loglevel="WARNING", shutdown_timeout=30):
            start_worker_runtime()  # heartbeats, due timers, recovery: what a worker runs
            client = DurableClient(namespace=demo.DEMO_NAMESPACE)
            started = time.monotonic()
            handle = client.start(demo.order_flow, order_id, "sku-42", 2, 19.99,
                                  options["sleep"], workflow_id=f"durable_demo-{order_id}")
            self.stdout.write(f"started workflow {handle.workflow_id} "
                              f"(namespace {demo.DEMO_NAMESPACE})")
            try:
                result = self._narrate(client, handle, started, options["timeout"])
            finally:
                stop_worker_runtime()
            self.stdout.write(self.style.SUCCESS("result: " + json.dumps(result, indent=2)))
            self.stdout.write(
                "\nSee it in the admin:\n"
                "  python manage.py createsuperuser\n"
                "  python manage.py runserver\n"
                f"  then open http://127.0.0.1:8000/admin/durable_celery/workflowexecution/ "
                f"and search for {handle.workflow_id}")
            self.stdout.flush()
            self._stop_worker_now(app)

    def _narrate(self, client: Any, handle: Any, started: float, timeout: float) -> Any:
        """Print history rows as they appear, answer the wait, return the workflow's result."""
        seen: set[tuple[str, int, str]] = set()
        signalled = False
        deadline = started + timeout
        while time.monotonic() < deadline:
            for row in handle.history():
                key = (row["dimension"], row["seq"], row["status"])
                if key in seen:
                    continue
                seen.add(key)
                detail = row["result"] if row["status"] == "completed" else row["input"].get(
                    "args", row["input"].get("seconds", ""))
                elapsed_ms = (time.monotonic() - started) * 1000
                self.stdout.write(f"  {elapsed_ms:7.0f} ms  #{row['seq']:<2} {row['kind']:<9} "
                                  f"{row['name'] or '-':<16} {row['status']:<10} "
                                  f"{json.dumps(detail)}")
                if row["kind"] == "wait" and row["status"] == "scheduled" and not signalled:
                    self.stdout.write(f"  -> the workflow waits for {row['name']!r}; "
                                      f"approving it with a signal")
                    client.signal(row["name"], {"approved": True, "by": "demo"})
                    signalled = True
            if handle.status() in FINISHED:
                elapsed_ms = (time.monotonic() - started) * 1000
                self.stdout.write(f"workflow finished in {elapsed_ms:.0f} ms")
                return handle.result()
            time.sleep(0.02)
        raise CommandError(f"workflow {handle.workflow_id} did not finish in {timeout}s "
                           f"(status {handle.status()})")

    @staticmethod
    def _stop_worker_now(app: Any) -> None:
        """Tell the in-process worker to stop, and wake it so it notices at once.

        Leaving ``start_worker`` sets Celery's stop flag and joins the worker thread; the worker
        loop checks the flag and then waits for messages once more (up to two seconds on an
        in-process transport) before it ends. Two no-op messages on the demo's queue end both
        waits; on other brokers the flag alone is enough.
        """
        from celery.worker import state

        from durable_celery import demo

        state.should_terminate = 0  # type: ignore[assignment]  # what start_worker sets
        if _transport(app) in EMBEDDED_BROKERS:
            for _ in range(2):
                demo.wake_worker.apply_async(queue=demo.DEMO_TASK_QUEUE)

    @staticmethod
    def _external_parts(app: Any) -> list[str]:
        """What of the configured broker and database is not embedded, described for people."""
        parts = []
        if _transport(app) not in EMBEDDED_BROKERS:
            parts.append(f"the broker {Command._broker(app)}")
        if not _database_engine().endswith("sqlite3"):
            parts.append(f"the database {Command._database_name()}")
        return parts

    @staticmethod
    def _require_migrated() -> None:
        """Refuse to run on an external database with unapplied migrations (never migrate it)."""
        from django.db import connection
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
            raise CommandError(f"the database has {len(plan)} unapplied migrations ({names}"
                               f"{', ...' if len(plan) > 5 else ''}); run manage.py migrate "
                               f"first")

    @staticmethod
    def _poll_fast(app: Any) -> None:
        """Make the worker poll an in-process transport every few milliseconds, not every second.

        Only for the embedded transports, and only lowering an interval that is longer.
        """
        if _transport(app) not in EMBEDDED_BROKERS:
            return
        options = dict(app.conf.broker_transport_options or {})
        current = options.get("polling_interval")
        if current is None or float(current) > DEMO_POLLING_INTERVAL:
            options["polling_interval"] = DEMO_POLLING_INTERVAL
            # Under the settings' own name too (``CELERY_BROKER_TRANSPORT_OPTIONS``): Celery 5.4
            # reads that one first, before a change made under the plain name.
            prefix = str(getattr(app.conf, "prefix", None) or "")
            changes = {"broker_transport_options": options}
            if prefix:
                changes[f"{prefix}BROKER_TRANSPORT_OPTIONS"] = options
            app.conf.update(changes)

    @staticmethod
    def _broker(app: Any) -> str:
        """The broker URL without its password."""
        from kombu.utils.url import maybe_sanitize_url

        return str(maybe_sanitize_url(_broker_url(app)))

    @staticmethod
    def _database_name() -> str:
        """The default database's engine and name, read from the settings (no connection)."""
        from django.conf import settings
        from django.db import DEFAULT_DB_ALIAS

        name = settings.DATABASES[DEFAULT_DB_ALIAS].get("NAME", "")
        return f"{_database_engine().rsplit('.', 1)[-1]} {name}"


def _database_engine() -> str:
    """The default database's ENGINE setting: judging it must not need its driver installed."""
    from django.conf import settings
    from django.db import DEFAULT_DB_ALIAS

    return str(settings.DATABASES[DEFAULT_DB_ALIAS].get("ENGINE", ""))


def _broker_url(app: Any) -> str:
    """The broker URL the app uses (Celery's own default when none is configured)."""
    return str(app.conf.broker_url or "amqp://guest@localhost//")


def _transport(app: Any) -> str:
    """The broker's transport name, read from its URL: deciding that a broker is not embedded
    must not need that broker's client library installed (``redis`` is an extra)."""
    first = _broker_url(app).split(";")[0]
    return urlparse(first).scheme.split("+")[0]
