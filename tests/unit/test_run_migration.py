"""Migration 0007 gives every execution stored before it a run id of its own.

Run as a deployment runs it: in a separate process whose default database is a fresh SQLite
file, migrated to 0006, filled with executions, then migrated forward.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json
    import django
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    def apps_at(name):
        return MigrationExecutor(connection).loader.project_state(
            ("durable_celery", name)).apps

    call_command("migrate", "durable_celery", "0006_hook_retries", verbosity=0)
    old = apps_at("0006_hook_retries").get_model("durable_celery", "WorkflowExecution")
    for workflow_id in ("order-1", "order-2", "order-3"):
        old.objects.create(namespace="durable", workflow_id=workflow_id,
                           workflow_name="order_flow", task_queue="orders",
                           status="completed", args=[workflow_id])
    call_command("migrate", "durable_celery", "0007_runs_workers_attempts", verbosity=0)
    new = apps_at("0007_runs_workers_attempts").get_model("durable_celery",
                                                          "WorkflowExecution")
    rows = list(new.objects.order_by("workflow_id").values_list(
        "workflow_id", "run_id", "previous_run_id", "args"))
    # the id may now have a second run next to the migrated one
    new.objects.create(namespace="durable", workflow_id="order-1", workflow_name="order_flow",
                       task_queue="orders", status="pending", run_id="f" * 32)
    print(json.dumps({"rows": rows,
                      "order_1_runs": new.objects.filter(workflow_id="order-1").count()}))
""")


def test_executions_stored_before_runs_get_distinct_run_ids(tmp_path: Path) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "django_app.settings",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'before-runs.sqlite3'}",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    rows = report["rows"]
    assert [(wid, args) for wid, _, _, args in rows] == [
        ("order-1", ["order-1"]), ("order-2", ["order-2"]), ("order-3", ["order-3"])]
    run_ids = [run_id for _, run_id, _, _ in rows]
    assert all(isinstance(r, str) and len(r) == 32 and int(r, 16) >= 0 for r in run_ids)
    assert len(set(run_ids)) == 3
    assert all(previous is None for _, _, previous, _ in rows)
    assert report["order_1_runs"] == 2
