"""``manage.py durable_demo``: the order workflow on the embedded setup, narrated step by step.

Runs a Celery worker as threads of this process (with the default ``memory://`` broker and the
SQLite database no server is needed), starts ``django_app.examples.order_flow``, prints every
history row as it is recorded, answers the workflow's ``wait_for`` with a signal, and prints the
result and how to look at it in the admin.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

__all__ = ["Command"]


class Command(BaseCommand):
    """Run the demo order workflow end to end."""

    help = "Run the demo order workflow on in-process worker threads and narrate it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--order", default=None, help="order id (default: generated)")
        parser.add_argument("--sleep", default="3s", help="durable sleep inside the workflow")
        parser.add_argument("--timeout", type=float, default=60.0,
                            help="seconds to wait for the workflow")

    def handle(self, *args: Any, **options: Any) -> None:
        from celery import current_app
        from celery.contrib.testing.worker import start_worker

        from django_app.examples import order_flow
        from durable_celery import DurableClient
        from durable_celery.transport.worker import start_worker_runtime, stop_worker_runtime

        call_command("migrate", verbosity=0)
        order_id = options["order"] or f"demo-{int(time.time())}"
        broker = current_app.conf.broker_url
        self.stdout.write(f"durable_celery demo — broker {broker}, database "
                          f"{self._database_name()}")
        with start_worker(current_app, pool="threads", concurrency=4, perform_ping_check=False,
                          queues=["durable", "durable-activity"], loglevel="WARNING",
                          shutdown_timeout=30):
            start_worker_runtime()
            client = DurableClient()
            handle = order_flow.start(order_id, "sku-42", 2, 19.99, options["sleep"],
                                      workflow_id=f"order-{order_id}")
            self.stdout.write(f"started workflow {handle.workflow_id}")
            try:
                result = self._narrate(client, handle, order_id, options["timeout"])
            finally:
                stop_worker_runtime()
        self.stdout.write(self.style.SUCCESS("result: " + json.dumps(result, indent=2)))
        self.stdout.write(
            "\nSee it in the admin:\n"
            "  python manage.py createsuperuser\n"
            "  python manage.py runserver\n"
            f"  then open http://127.0.0.1:8000/admin/durable_celery/workflowexecution/ "
            f"and search for {handle.workflow_id}")

    def _narrate(self, client: Any, handle: Any, order_id: str, timeout: float) -> Any:
        seen: set[tuple[str, int, str]] = set()
        signalled = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for row in handle.history():
                key = (row["dimension"], row["seq"], row["status"])
                if key in seen:
                    continue
                seen.add(key)
                detail = row["result"] if row["status"] == "completed" else row["input"].get(
                    "args", row["input"].get("seconds", ""))
                self.stdout.write(f"  #{row['seq']:<2} {row['kind']:<9} {row['name'] or '-':<16} "
                                  f"{row['status']:<10} {json.dumps(detail)}")
                if row["kind"] == "wait" and row["status"] == "scheduled" and not signalled:
                    self.stdout.write(f"  -> the workflow waits for {row['name']!r}; "
                                      f"approving it with a signal")
                    client.signal(row["name"], {"approved": True, "by": "demo"})
                    signalled = True
            status = handle.status()
            if status in ("completed", "failed", "interrupted"):
                return handle.result()
            time.sleep(0.1)
        raise CommandError(f"workflow {handle.workflow_id} did not finish in {timeout}s "
                           f"(status {handle.status()})")

    @staticmethod
    def _database_name() -> str:
        from django.db import connection

        return f"{connection.vendor} {connection.settings_dict['NAME']}"
