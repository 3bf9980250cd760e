"""Run the whole suite: unit tests once, end-to-end tests on every backend, one summary line.

    python tests/run.py                 # everything
    python tests/run.py --only sqlite   # one phase (sqlite, postgres, rabbitmq, install)
    python tests/run.py -- -x -k signal # extra pytest arguments after --
    python tests/run.py --only postgres -- tests/e2e/test_signals.py   # only these tests

Backends (see tests/support/backends.py): ``sqlite`` (SQLite + filesystem broker: no server),
``postgres`` (PostgreSQL + Redis; also the testing kit's tests), ``rabbitmq`` (PostgreSQL +
RabbitMQ, transport tests). Each runs in its own pytest process because Django settings are
fixed per process. The ``install`` phase builds the wheel and the sdist and installs the wheel
into a fresh virtual environment beside a fresh ``startproject`` (tests/install). Tests that need
a service that is not running skip with a reason, and fail when ``CI=true``.

The phases run side by side in :data:`LANES` (each session has its own database, Redis database
or RabbitMQ vhost and working directory, so they cannot see each other's messages): the suite is
mostly waiting on workers and brokers, not computing. Each phase's output is printed whole when
it ends. ``--serial`` runs one phase at a time, printing as it goes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: (phase, pytest arguments): what each pytest process runs.
PHASES: list[tuple[str, list[str]]] = [
    # The browser tests and the heavier kill tests run in the PostgreSQL phase only.
    ("sqlite", ["tests", "--ignore=tests/install", "-m", "not browser and not heavy"]),
    ("postgres", ["tests/e2e", "tests/admin", "tests/kit"]),
    ("rabbitmq", ["tests/e2e", "-m", "transport"]),
    # Builds the wheel and sdist, installs the wheel beside a fresh startproject (a minute or two).
    ("install", ["tests/install"]),
]
#: The backend (tests/support/backends.py) of a phase not named after one.
PHASE_BACKEND = {"install": "sqlite"}
#: Phases that run one after another; lanes run side by side (about equally long).
LANES: list[list[str]] = [["sqlite"], ["postgres"], ["rabbitmq", "install"]]


def _counts(junit: Path) -> dict[str, int]:
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if not junit.exists():
        return totals
    root = ET.parse(junit).getroot()
    for suite in root.iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    return totals


def _command(targets: list[str], junit: Path, extra: list[str]) -> list[str]:
    existing = [t for t in targets if not t.startswith("tests") or (REPO / t).exists()]
    if any(a.startswith("tests") for a in extra):
        # Test paths after "--" replace the phase's own (its options, e.g. -m, stay).
        existing = [t for t in existing if not t.startswith("tests")]
    return [sys.executable, "-m", "pytest", *existing, f"--junitxml={junit}",
            "-p", "no:cacheprovider", *extra]


class _Phase:
    """One pytest process: started, then waited for; its output goes to a file unless it runs
    alone in the foreground."""

    def __init__(self, name: str, outdir: Path, extra: list[str]) -> None:
        self.name = name
        self.junit = outdir / f"{name}.xml"
        self.log = outdir / f"{name}.log"
        self.command = _command(dict(PHASES)[name], self.junit, extra)
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.code: int | None = None

    def start(self, foreground: bool) -> None:
        env = {**os.environ, "DURABLE_TEST_BACKEND": PHASE_BACKEND.get(self.name, self.name)}
        if foreground:
            print(f"\n=== {self.name}: {' '.join(self.command[2:])}", flush=True)
            output = None
        else:
            output = self.log.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.command, cwd=REPO, env=env, stdout=output,
                                        stderr=subprocess.STDOUT if output else None)
        if output is not None:
            output.close()

    def report(self, foreground: bool) -> None:
        if not foreground:
            print(f"\n=== {self.name}: {' '.join(self.command[2:])}", flush=True)
            sys.stdout.write(self.log.read_text(errors="replace"))
        print(f"=== {self.name}: exit {self.code} in {time.monotonic() - self.started:.0f}s",
              flush=True)


def _run_lanes(lanes: list[list[_Phase]], serial: bool) -> None:
    """Run each lane's phases in order, the lanes side by side (one at a time if ``serial``)."""
    if serial:
        for phase in (p for lane in lanes for p in lane):
            phase.start(foreground=True)
            assert phase.process is not None
            phase.code = phase.process.wait()
            phase.report(foreground=True)
        return
    queues = [list(lane) for lane in lanes if lane]
    running: list[_Phase] = []
    for queue in queues:
        queue[0].start(foreground=False)
        running.append(queue[0])
    print(f"running side by side: {', '.join(p.name for p in running)} (each phase's output "
          f"is printed when it ends; meanwhile in {running[0].log.parent})", flush=True)
    try:
        while running:
            time.sleep(0.5)
            for phase in list(running):
                assert phase.process is not None
                code = phase.process.poll()
                if code is None:
                    continue
                phase.code = code
                phase.report(foreground=False)
                running.remove(phase)
                queue = next(q for q in queues if q and q[0] is phase)
                queue.pop(0)
                if queue:
                    queue[0].start(foreground=False)
                    running.append(queue[0])
    finally:
        for phase in running:  # interrupted: stop what still runs
            if phase.process is not None and phase.process.poll() is None:
                phase.process.terminate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=[name for name, _ in PHASES])
    parser.add_argument("--serial", action="store_true",
                        help="run the phases one after another, printing as they go")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    outdir = Path(tempfile.mkdtemp(prefix="durable-junit-"))
    lanes = [[_Phase(name, outdir, args.pytest_args) for name in lane
              if not args.only or name == args.only] for lane in LANES]
    lanes = [lane for lane in lanes if lane]
    started = time.monotonic()
    _run_lanes(lanes, serial=args.serial or len(lanes) == 1)
    summary = {"passed": 0, "failed": 0, "skipped": 0}
    failed_phases: list[str] = []
    for phase in (p for lane in lanes for p in lane):
        counts = _counts(phase.junit)
        failed = counts["failures"] + counts["errors"]
        summary["failed"] += failed
        summary["skipped"] += counts["skipped"]
        summary["passed"] += counts["tests"] - failed - counts["skipped"]
        if phase.code not in (0, 5) or failed:
            failed_phases.append(phase.name)
    print(f"\nbackends failing: {', '.join(failed_phases) or 'none'}")
    print(f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped"
          f" in {time.monotonic() - started:.0f}s")
    return 1 if failed_phases else 0


if __name__ == "__main__":
    sys.exit(main())
