"""Benchmark: durable_celery against raw Celery on the same broker, database and worker.

    python bench/run.py                       # PostgreSQL 127.0.0.1:5432 + Redis 127.0.0.1:6379
    python bench/run.py --sizes 10 100 --throughput 100

One process tree: this script creates a fresh database, starts one Celery worker (prefork, 2
processes) consuming the benchmark's queues, then times, for each N, a workflow of N sequential
no-op activities against a raw Celery ``chain`` of N no-op tasks, a ``workflow.all`` fan-out
against a ``group``, and start-to-result throughput of one-activity workflows. It prints per-step
times and the ratios DESIGN.md sets targets for. Numbers, not assertions: see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUEUES = "bench,bench-activity,bench-raw"


def _prepare_environment(database: str, broker: str) -> None:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ["CELERY_BROKER_URL"] = broker
    os.environ["DURABLE_IMPORTS"] = "bench.workflows"
    os.environ["DJANGO_SETTINGS_MODULE"] = "django_app.settings"
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(REPO))
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import redis

    redis.Redis.from_url(broker).flushdb()


def _start_worker(log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")  # noqa: SIM115 - owned by the worker
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "django_app", "worker", "-Q", QUEUES, "-c", "2",
         "-P", "prefork", "-l", "warning", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-n", "bench@%h"],
        cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    from celery import current_app

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if current_app.control.ping(timeout=0.5):
            return worker
    raise RuntimeError(f"benchmark worker did not start; see {log}")


def _time_durable(definition: object, *args: object, timeout: float = 600) -> float:
    from durable_celery import DurableClient

    started = time.perf_counter()
    handle = DurableClient().start(definition, *args)  # type: ignore[arg-type]
    handle.result(timeout=timeout)
    return time.perf_counter() - started


def _time_chain(n: int, timeout: float = 600) -> float:
    from celery import chain

    from bench.workflows import raw_noop

    started = time.perf_counter()
    chain(*(raw_noop.si() if i == 0 else raw_noop.s() for i in range(n))).apply_async().get(
        timeout=timeout, interval=0.005)
    return time.perf_counter() - started


def _time_group(n: int, timeout: float = 600) -> float:
    from celery import group

    from bench.workflows import raw_noop

    started = time.perf_counter()
    group(raw_noop.si() for _ in range(n)).apply_async().get(timeout=timeout, interval=0.005)
    return time.perf_counter() - started


def _throughput(count: int) -> float:
    from bench.workflows import bench_one
    from durable_celery import DurableClient

    client = DurableClient()
    started = time.perf_counter()
    handles = [client.start(bench_one) for _ in range(count)]
    for handle in handles:
        handle.result(timeout=600)
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--fan-out", type=int, default=1000)
    parser.add_argument("--throughput", type=int, default=300)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    _prepare_environment(f"durable_bench_{os.getpid()}", args.broker)
    log = Path("/tmp") / f"durable-bench-worker-{os.getpid()}.log"
    worker = _start_worker(log)
    from bench.workflows import bench_fan_out, bench_sequence

    try:
        _time_durable(bench_sequence, 3)  # warm both paths up
        _time_chain(3)
        print(f"{'N':>6} {'durable ms/step':>16} {'chain ms/step':>14} {'ratio':>7}")
        per_step: dict[int, float] = {}
        for n in args.sizes:
            durable = _time_durable(bench_sequence, n) / n * 1000
            raw = _time_chain(n) / n * 1000
            per_step[n] = durable
            print(f"{n:>6} {durable:>16.2f} {raw:>14.2f} {durable / raw:>7.2f}")
        if len(per_step) > 1:
            small, large = min(per_step), max(per_step)
            print(f"cost per step at N={large} over N={small}: "
                  f"{per_step[large] / per_step[small]:.2f}  (target <= 1.2)")
        if args.fan_out:
            durable = _time_durable(bench_fan_out, args.fan_out)
            raw = _time_group(args.fan_out)
            print(f"fan-out of {args.fan_out}: workflow.all {args.fan_out / durable:.0f}/s, "
                  f"group {args.fan_out / raw:.0f}/s, throughput ratio {raw / durable:.2f} "
                  f"(target >= 0.7)")
        if args.throughput:
            rate = _throughput(args.throughput)
            print(f"one-activity workflows, start to result: {rate:.0f}/s (target >= 150)")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
