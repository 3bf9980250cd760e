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


def _counts(junit: Path) -> dict[str, int]:
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if not junit.exists():
        return totals
    root = ET.parse(junit).getroot()
    for suite in root.iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=[name for name, _ in PHASES])
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    summary = {"passed": 0, "failed": 0, "skipped": 0}
    failed_phases: list[str] = []
    outdir = Path(tempfile.mkdtemp(prefix="durable-junit-"))
    for backend, targets in PHASES:
        if args.only and backend != args.only:
            continue
        existing = [t for t in targets if not t.startswith("tests") or (REPO / t).exists()]
        if any(a.startswith("tests") for a in args.pytest_args):
            # Test paths after "--" replace the phase's own (its options, e.g. -m, stay).
            existing = [t for t in existing if not t.startswith("tests")]
        junit = outdir / f"{backend}.xml"
        command = [sys.executable, "-m", "pytest", *existing, f"--junitxml={junit}",
                   "-p", "no:cacheprovider", *args.pytest_args]
        print(f"\n=== {backend}: {' '.join(command[2:])}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, cwd=REPO,
                               env={**os.environ,
                                    "DURABLE_TEST_BACKEND": PHASE_BACKEND.get(backend, backend)})
        counts = _counts(junit)
        failed = counts["failures"] + counts["errors"]
        summary["failed"] += failed
        summary["skipped"] += counts["skipped"]
        summary["passed"] += counts["tests"] - failed - counts["skipped"]
        print(f"=== {backend}: exit {code} in {time.monotonic() - started:.0f}s", flush=True)
        if code not in (0, 5) or failed:
            failed_phases.append(backend)
    print(f"\nbackends failing: {', '.join(failed_phases) or 'none'}")
    print(f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped")
    return 1 if failed_phases else 0


if __name__ == "__main__":
    sys.exit(main())
