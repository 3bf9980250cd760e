"""Benchmark: durable_celery against raw Celery on the same broker, database and worker.

    python bench/run.py                  # PostgreSQL 127.0.0.1:5432 + Redis 127.0.0.1:6379, then
                                         # the embedded default (SQLite + filesystem broker)
    python bench/run.py --quick          # N = 10, 100; fan-out 200; 100 workflows
    python bench/run.py --only postgres

For each backend this creates a fresh database, starts ONE Celery worker (prefork, 2 processes)
on the benchmark's queues and times, in one run:

* a workflow of N sequential no-op activities vs a raw Celery ``chain`` of N no-op tasks
  (per-step ms and the ratio), for N = 10, 100, 1000, with eager execution on (the default)
  and off (every activity through the broker);
* ``workflow.all`` of 1000 no-op activities vs a ``group`` of 1000;
* one-activity workflows started 200 at once, start to result, per second.

The raw baseline is what a chain user runs: plain Celery tasks whose results go to a **Redis
result backend**; the same chain with django-celery-results (``django-db``) is printed as a second
line. Both sides use the host project's worker settings (JSON, ``acks_late``, prefetch 1). The
embedded default has no Redis, so its chain stores results with ``django-db``. Numbers, not
assertions: tests assert behaviour; this reports speed (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import Worker, prepare_backend  # noqa: E402

#: Targets of DESIGN.md / issue 8: (measure, comparison, bound).
TARGETS = [
    ("ratio_100", "<=", 1.0, "per step vs chain link, N=100"),
    ("ratio_1000", "<=", 0.4, "per step vs chain link, N=1000"),
    ("ratio_100_no_eager", "<=", 1.5, "per step vs chain link, N=100, eager off"),
    ("growth", "<=", 1.2, "per-step cost N=1000 over N=10"),
    ("fan_out_ratio", ">=", 0.7, "fan-out of 1000: throughput vs group"),
    ("throughput", ">=", 150.0, "one-activity workflows per second (200 at once)"),
]


def _use_result_backend(url: str) -> None:
    from celery import current_app

    app = current_app._get_current_object()  # type: ignore[attr-defined]  # a Proxy at run time
    os.environ["CELERY_RESULT_BACKEND"] = url  # Celery reads this variable before its setting
    app.conf.result_backend = url
    app._backend = app._get_backend()  # replaces the one built for the previous setting


def _time_durable(definition: Any, *args: Any) -> float:
    from durable_celery import DurableClient

    started = time.perf_counter()
    DurableClient().start(definition, *args).result(timeout=900)
    return time.perf_counter() - started


def _time_chain(n: int) -> float:
    from celery import chain

    from bench.workflows import raw_noop

    started = time.perf_counter()
    chain(*(raw_noop.si() if i == 0 else raw_noop.s() for i in range(n))).apply_async().get(
        timeout=900, interval=0.002)
    return time.perf_counter() - started


def _time_group(n: int) -> float:
    from celery import group

    from bench.workflows import raw_noop

    started = time.perf_counter()
    group(raw_noop.si() for _ in range(n)).apply_async().get(timeout=900, interval=0.005)
    return time.perf_counter() - started


def _throughput(count: int) -> float:
    from bench.workflows import bench_one
    from durable_celery import DurableClient

    client = DurableClient()
    started = time.perf_counter()
    handles = [client.start(bench_one) for _ in range(count)]
    for handle in handles:
        handle.result(timeout=900)
    return count / (time.perf_counter() - started)


def _median_ms_per_step(timer: Any, n: int, repeats: int) -> float:
    return statistics.median(timer(n) for _ in range(repeats)) / n * 1000


def _alternating_ms_per_step(first: Any, second: Any, n: int,
                             repeats: int) -> tuple[float, float, float]:
    """Both timers, taking turns (the machine's speed drifts), as median ms per step, and the
    median of the pairs' ratios (second over first): each ratio compares two runs timed in the
    same second, so a drift between pairs does not move it, while a ratio of the two medians
    may pair a fast minute of one with a slow minute of the other."""
    times = [(first(n), second(n)) for _ in range(repeats)]
    return (statistics.median(a for a, _ in times) / n * 1000,
            statistics.median(b for _, b in times) / n * 1000,
            statistics.median(b / a for a, b in times))


def _measure(backend: str, sizes: list[int], fan_out: int, throughput: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"durable-bench-{backend}-"))
    env = prepare_backend(backend, workdir)
    from bench.workflows import bench_fan_out, bench_sequence

    results: dict[str, Any] = {"backend": backend, "sizes": sizes, "steps": {}}
    repeats = {n: 9 if n <= 100 else 1 for n in sizes}
    durable = lambda n: _time_durable(bench_sequence, n)  # noqa: E731

    worker = Worker({}, workdir / "worker-eager.log")
    try:
        _time_durable(bench_sequence, 5)  # warm both paths up
        _time_chain(5)
        for n in sizes:
            chain_ms, durable_ms, ratio = _alternating_ms_per_step(_time_chain, durable, n,
                                                                   repeats[n])
            results["steps"][n] = {"chain": chain_ms, "durable": durable_ms, "ratio": ratio}
        # The machine's speed drifts by tens of percent within minutes: the fan-out and its
        # group alternate, and each figure is the median of its runs (the ratio, of the pairs).
        rounds = 3 if backend == "postgres" else 1
        if fan_out:
            pairs = [(fan_out / _time_group(fan_out),
                      fan_out / _time_durable(bench_fan_out, fan_out)) for _ in range(rounds)]
            results["fan_out"] = {"n": fan_out,
                                  "group": statistics.median(g for g, _ in pairs),
                                  "durable": statistics.median(d for _, d in pairs),
                                  "ratio": statistics.median(d / g for g, d in pairs)}
        if throughput:
            results["throughput"] = {"n": throughput, "per_second": statistics.median(
                _throughput(throughput) for _ in range(rounds))}
    finally:
        worker.stop()
    worker = Worker({"DURABLE_EAGER_ACTIVITIES": "false"}, workdir / "worker-no-eager.log")
    try:
        _time_durable(bench_sequence, 5)
        _time_chain(5)
        for n in sizes:  # the chain again, on this worker and in these minutes
            chain_ms, durable_ms, ratio = _alternating_ms_per_step(_time_chain, durable, n,
                                                                   repeats[n])
            results["steps"][n].update(chain_no_eager=chain_ms, durable_no_eager=durable_ms,
                                       ratio_no_eager=ratio)
    finally:
        worker.stop()
    if backend == "postgres":
        _use_result_backend("django-db")
        worker = Worker({"CELERY_RESULT_BACKEND": "django-db"}, workdir / "worker-djdb.log")
        try:
            _time_chain(5)
            results["chain_django_db"] = {n: _median_ms_per_step(_time_chain, n, repeats[n])
                                          for n in sizes if n <= 100}
        finally:
            worker.stop()
    results["env"] = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    return results


def _report(results: dict[str, Any]) -> dict[str, float]:
    backend = results["backend"]
    baseline = "Redis result backend" if backend == "postgres" else "django-db result backend"
    print(f"\n## {backend}: {results['env']['DATABASE_URL'].split(':')[0]} + "
          f"{results['env']['CELERY_BROKER_URL'].split(':')[0]} broker; chain with {baseline}")
    print(f"{'N':>6} {'chain ms/link':>14} {'durable ms/step':>16} {'ratio':>6} "
          f"{'eager off ms':>13} {'ratio':>6}")
    measures: dict[str, float] = {}
    for n, row in sorted(results["steps"].items(), key=lambda item: int(item[0])):
        # eager off is compared with the chain timed beside it, on the same worker; each
        # ratio is the median of the alternating pairs' ratios
        chain_then = row.get("chain_no_eager", row["chain"])
        ratio = row.get("ratio", row["durable"] / row["chain"])
        plain = row.get("ratio_no_eager", row["durable_no_eager"] / chain_then)
        print(f"{n:>6} {row['chain']:>14.2f} {row['durable']:>16.2f} {ratio:>6.2f} "
              f"{row['durable_no_eager']:>13.2f} {plain:>6.2f}  (chain then {chain_then:.2f})")
        measures[f"ratio_{n}"] = ratio
        measures[f"ratio_{n}_no_eager"] = plain
    steps = {int(n): row["durable"] for n, row in results["steps"].items()}
    if len(steps) > 1:
        measures["growth"] = steps[max(steps)] / steps[min(steps)]
        print(f"per-step cost N={max(steps)} over N={min(steps)}: {measures['growth']:.2f}")
    if "chain_django_db" in results:
        links = ", ".join(f"N={n}: {ms:.2f} ms" for n, ms in results["chain_django_db"].items())
        print(f"chain with the django-db result backend instead: {links}")
    if "fan_out" in results:
        fan = results["fan_out"]
        measures["fan_out_ratio"] = fan.get("ratio", fan["durable"] / fan["group"])
        print(f"fan-out of {fan['n']}: workflow.all {fan['durable']:.0f}/s, group "
              f"{fan['group']:.0f}/s (medians), ratio {measures['fan_out_ratio']:.2f} "
              f"(median of alternating pairs)")
    if "throughput" in results:
        measures["throughput"] = results["throughput"]["per_second"]
        print(f"one-activity workflows, {results['throughput']['n']} started at once: "
              f"{measures['throughput']:.0f}/s")
    return measures


def _verdicts(measures: dict[str, float]) -> None:
    print("\n## targets (PostgreSQL + Redis)")
    for key, comparison, bound, what in TARGETS:
        if key not in measures:
            print(f"  -      {what}: not measured")
            continue
        value = measures[key]
        met = value <= bound if comparison == "<=" else value >= bound
        print(f"  {'met ' if met else 'MISS'}   {what}: {value:.2f} (target {comparison} {bound})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["postgres", "sqlite"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--fan-out", type=int)
    parser.add_argument("--throughput", type=int)
    parser.add_argument("--child", choices=["postgres", "sqlite"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.sizes or ([10, 100] if args.quick else [10, 100, 1000])
    fan_out = args.fan_out if args.fan_out is not None else (200 if args.quick else 1000)
    throughput = args.throughput if args.throughput is not None else (
        100 if args.quick else 200)
    if args.child:  # one backend per process: Django settings are fixed per process
        print(json.dumps(_measure(args.child, sizes, fan_out, throughput)))
        return 0
    measures: dict[str, float] = {}
    for backend in ("postgres", "sqlite"):
        if args.only and backend != args.only:
            continue
        command = [sys.executable, __file__, "--child", backend, "--sizes", *map(str, sizes),
                   "--fan-out", str(fan_out), "--throughput", str(throughput)]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode:
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        found = _report(json.loads(done.stdout.strip().splitlines()[-1]))
        if backend == "postgres":
            measures = found
    if measures:
        _verdicts(measures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
