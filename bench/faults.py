"""Fault benchmark: how many seconds a workflow needs to move again after each kind of crash.

    python bench/faults.py              # PostgreSQL 127.0.0.1:5432 + Redis 127.0.0.1:6379

Each scenario uses a fresh worker (prefork, 2 processes) with the production defaults of
durable_celery/conf.py (heartbeat 1 s, dead after 10 s), breaks something while a workflow runs,
starts a replacement when the scenario needs one, and prints the seconds from the fault to the
workflow's result, and how often its activities ran. Numbers, not assertions (the tests in
tests/e2e/test_liveness.py assert the behaviour, with short settings).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import Worker, prepare_backend  # noqa: E402

QUEUES = "bench-faults,bench-faults-activity"


def _marks(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


def _wait(predicate: Callable[[], Any], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the scenario did not reach its fault point")
        time.sleep(0.05)


def _start(definition: Any, *args: Any) -> Any:
    from durable_celery import DurableClient

    return DurableClient().start(definition, *args)


def _finish(handle: Any) -> str:
    try:
        return repr(handle.result(timeout=900))
    except Exception as error:  # noqa: BLE001 - a failure is an outcome too
        return f"{type(error).__name__}: {getattr(error, 'message', error)}"


def _first_row_done(handle: Any) -> bool:
    history = handle.history()
    return bool(history) and history[0]["status"] == "completed" and len(history) == 1


class Scenarios:
    """Each returns ``(seconds from the fault until the work moves again, seconds until the
    workflow's outcome, outcome, activity marks)``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.count = 0

    def _path(self) -> Path:
        self.count += 1
        return self.workdir / f"marks-{self.count}"

    def _worker(self, **env: str) -> Worker:
        return Worker(env, self.workdir / f"worker-{self.count}-{time.monotonic_ns()}.log",
                      queues=QUEUES)

    def whole_worker_killed(self, timeout: float | None) -> Result:
        from bench.workflows import fault_around_slow

        path = self._path()
        worker = self._worker()
        handle = _start(fault_around_slow, str(path), 5.0, timeout)
        _wait(lambda: "started" in _marks(path))
        worker.kill()
        fault = time.monotonic()
        replacement = self._worker()
        _wait(lambda: _marks(path).count("started") == 2)
        resumed = time.monotonic() - fault
        outcome = _finish(handle)
        seconds = time.monotonic() - fault
        replacement.stop()
        return resumed, seconds, outcome, " ".join(_marks(path))

    def pool_process_killed(self) -> Result:
        from bench.workflows import fault_around_slow
        from durable_celery.models import HistoryEvent
        from durable_celery.models import Worker as Registered

        path = self._path()
        worker = self._worker()
        handle = _start(fault_around_slow, str(path), 5.0, None)
        _wait(lambda: "started" in _marks(path))
        row = HistoryEvent.objects.filter(execution__workflow_id=handle.workflow_id,
                                          status="scheduled").first()
        assert row is not None and row.worker_id is not None
        os.kill(Registered.objects.get(pk=row.worker_id).pid, signal.SIGKILL)
        fault = time.monotonic()
        _wait(lambda: _marks(path).count("started") == 2)
        resumed = time.monotonic() - fault
        outcome = _finish(handle)
        seconds = time.monotonic() - fault
        worker.stop()
        return resumed, seconds, outcome, " ".join(_marks(path))

    def killed_during_step(self) -> Result:
        from bench.workflows import fault_slow_step

        path = self._path()
        worker = self._worker()
        handle = _start(fault_slow_step, str(path), 5.0)
        _wait(lambda: _first_row_done(handle))
        worker.kill()
        fault = time.monotonic()
        replacement = self._worker()
        _wait(lambda: _step_claimed_by_a_live_worker(handle))
        resumed = time.monotonic() - fault
        outcome = _finish(handle)
        seconds = time.monotonic() - fault
        replacement.stop()
        return resumed, seconds, outcome, " ".join(_marks(path))

    def connections_terminated(self) -> Result:
        from django.db import connection

        from bench.workflows import fault_around_slow

        path = self._path()
        worker = self._worker()
        handle = _start(fault_around_slow, str(path), 3.0, None)
        _wait(lambda: "started" in _marks(path))
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                           "datname = current_database() AND pid <> pg_backend_pid()")
        fault = time.monotonic()
        outcome = _finish(handle)
        seconds = time.monotonic() - fault
        worker.stop()
        return seconds, seconds, outcome, " ".join(_marks(path))

    def process_exits_in_activity(self) -> Result:
        from bench.workflows import fault_exits

        path = self._path()
        worker = self._worker()
        started = time.monotonic()
        outcome = _finish(_start(fault_exits, str(path)))
        seconds = time.monotonic() - started
        worker.stop()
        return seconds, seconds, outcome, " ".join(_marks(path))

    def broker_restarts_empty(self) -> Result:
        from bench.workflows import fault_one
        from tests.support.redis_server import PrivateRedis

        broker = PrivateRedis().start()
        env = {"CELERY_BROKER_URL": broker.url}
        paths = [self._path() for _ in range(5)]
        from durable_celery.store import outbox

        publisher = outbox._publisher
        outbox.set_publisher(_refuse)  # the steps are asked for through the outbox
        quiet = logging.getLogger(outbox.__name__)
        level, quiet.level = quiet.level, logging.ERROR
        handles = [_start(fault_one, str(p)) for p in paths]
        quiet.setLevel(level)
        outbox.set_publisher(publisher)  # type: ignore[arg-type]
        steps = Worker(env, self.workdir / "worker-steps.log", queues="bench-faults")
        _wait(lambda: all(h.history() for h in handles), timeout=60)
        broker.restart_empty()
        fault = time.monotonic()
        worker = Worker(env, self.workdir / "worker-after.log", queues=QUEUES)
        _wait(lambda: any(_marks(p) for p in paths))
        resumed = time.monotonic() - fault
        outcomes = {_finish(h) for h in handles}
        seconds = time.monotonic() - fault
        steps.kill()
        worker.stop()
        broker.kill()
        return resumed, seconds, ", ".join(sorted(outcomes)), " ".join(
            str(len(_marks(p))) for p in paths)


#: (seconds until the work moved again, seconds until the outcome, outcome, marks)
Result = tuple[float, float, str, str]


def _step_claimed_by_a_live_worker(handle: Any) -> bool:
    """The run was taken back from the dead worker: its next step ran (or runs) elsewhere."""
    return len(handle.history()) >= 2


def _refuse(*_: object) -> None:
    raise ConnectionError("the benchmark holds this message back")


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="durable-faults-"))
    prepare_backend("postgres", workdir)
    run = Scenarios(workdir)
    scenarios: list[tuple[str, Callable[[], Result]]] = [
        ("whole worker SIGKILLed mid-activity, no timeout; new worker started",
         lambda: run.whole_worker_killed(None)),
        ("same, start_to_close_timeout=15s", lambda: run.whole_worker_killed(15.0)),
        ("only the pool process running the activity killed", run.pool_process_killed),
        ("worker killed during the step right after an activity", run.killed_during_step),
        ("database connections terminated while an activity runs",
         run.connections_terminated),
        ("activity messages queued in a Redis that restarts empty (5 workflows)",
         run.broker_restarts_empty),
        ("activity that kills its own process, maximum_attempts=2 (start to failure)",
         run.process_exits_in_activity),
    ]
    print(f"{'moved':>6} {'done':>6}  scenario — outcome — activity marks "
          f"(seconds from the fault)")
    for name, scenario in scenarios:
        resumed, seconds, outcome, marks = scenario()
        print(f"{resumed:>6.1f} {seconds:>6.1f}  {name} — {outcome} — {marks}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
