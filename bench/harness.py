"""What both benchmarks need: a fresh database and broker namespace, and real workers."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["QUEUES", "REPO", "Worker", "claim_redis_databases", "prepare_backend"]

REPO = Path(__file__).resolve().parents[1]
QUEUES = "bench,bench-activity,bench-raw,bench-faults,bench-faults-activity"


def prepare_backend(backend: str, workdir: Path) -> dict[str, str]:
    env = {"DURABLE_IMPORTS": "bench.workflows", "DJANGO_SETTINGS_MODULE": "django_app.settings",
           "DJANGO_DEBUG": "0",  # as in production: no query log kept per connection
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if backend == "postgres":
        database = f"durable_bench_{os.getpid()}"
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
        broker_db, results_db = claim_redis_databases(2)
        env.update(DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{database}",
                   CELERY_BROKER_URL=f"redis://127.0.0.1:6379/{broker_db}",
                   CELERY_RESULT_BACKEND=f"redis://127.0.0.1:6379/{results_db}")
    else:
        broker = workdir / "broker"
        (broker / "control").mkdir(parents=True, exist_ok=True)
        env.update(DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}",
                   CELERY_BROKER_URL="filesystem://", DURABLE_BROKER_DIR=str(broker),
                   CELERY_RESULT_BACKEND="django-db")
    os.environ.update(env)
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return env


def claim_redis_databases(count: int) -> list[int]:
    """Redis databases no test session or other benchmark uses: claimed with the same lock key
    the test sessions use, emptied, and released when this process exits."""
    import redis

    claimed: list[int] = []
    token = f"bench:{os.getpid()}"
    for number in range(15, 0, -1):
        db = redis.Redis(host="127.0.0.1", port=6379, db=number)
        if db.set("durable-test-session", token, nx=True, ex=3600):
            db.flushdb()
            db.set("durable-test-session", token, ex=3600)
            atexit.register(db.flushdb)
            claimed.append(number)
            if len(claimed) == count:
                return claimed
    raise RuntimeError("no free Redis database for the benchmark (test sessions use them all)")


class Worker:
    """One ``celery worker`` (prefork, 2 processes by default) with extra environment."""

    def __init__(self, env: dict[str, str], log: Path, queues: str = QUEUES,
                 concurrency: int = 2) -> None:
        self.log = log
        handle = open(log, "ab")  # noqa: SIM115 - owned by the worker
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "django_app", "worker", "-Q", queues, "-c",
             str(concurrency), "-P", "prefork", "-l", "warning", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-n", f"bench-{time.monotonic_ns()}@%h"],
            cwd=REPO, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True)
        atexit.register(self.kill)
        from durable_celery.store.workers import live_workers

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(w.pid == self.process.pid for w in live_workers()):
                time.sleep(0.5)  # its pool processes finish starting
                return
            time.sleep(0.2)
        self.kill()  # a worker left running would consume the next benchmark's queues
        raise RuntimeError(f"benchmark worker did not start; see {log}")

    def stop(self) -> None:
        """Warm shutdown; then whatever of its process group is left is killed (a worker left
        running would consume the queues of the next benchmark that reuses its Redis
        database, with its own PostgreSQL database: it would claim nothing and eat them)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL the main process and its pool at once."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.process.wait(10)
