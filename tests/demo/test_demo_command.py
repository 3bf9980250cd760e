"""``manage.py durable_demo`` as a user runs it: a subprocess on the embedded setup (SQLite and
Kombu's ``memory://`` broker, worker threads in the demo process).

Before this was fixed the demo spent about a second per step (Kombu's in-process transport polls
once a second), sat silent for four seconds in worker shutdown before printing the result, and
failed in any project that had its own ``order_flow`` workflow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
           "CELERY_BROKER_URL": "memory://localhost/",
           # The project's own workers import a module with the README's names.
           "DURABLE_IMPORTS": "tests.demo.user_workflows"}
    env.update(overrides)
    return env


def _run_timed(args: list[str], env: dict[str, str],
               timeout: float = 120) -> tuple[int, list[tuple[float, str]]]:
    """Run ``manage.py`` with ``args``; every output line with the second it arrived."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "manage.py", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = [(time.monotonic() - started, line.rstrip("\n")) for line in proc.stdout]
    return proc.wait(timeout), lines


def test_the_demo_runs_steps_in_milliseconds_beside_a_users_order_flow(tmp_path: Path) -> None:
    code, lines = _run_timed(["durable_demo", "--sleep", "0s"], _env(tmp_path))
    text = "\n".join(line for _, line in lines)
    assert code == 0, text
    assert "started workflow durable_demo-" in text and "(namespace durable_demo)" in text
    assert '"approved": true' in text and '"notification": "sent rcpt-' in text

    # Seven history transitions: six broker hops plus a timer. At Kombu's default polling of
    # once a second that took ~9 s; each step now takes milliseconds.
    finished = re.search(r"workflow finished in (\d+) ms", text)
    assert finished, text
    assert int(finished.group(1)) < 4000, text

    # The result is printed as soon as the workflow has finished, not after worker shutdown.
    last_row = max(at for at, line in lines if re.match(r"\s+\d+ ms  #", line))
    result_at = next(at for at, line in lines if line.startswith("result:"))
    assert result_at - last_row < 1.5, text


def _refused(tmp_path: Path, **overrides: str) -> str:
    proc = subprocess.run([sys.executable, "manage.py", "durable_demo"], cwd=REPO,
                          env=_env(tmp_path, **overrides), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "--allow-external" in proc.stderr, proc.stderr
    assert "durable_demo" in proc.stderr
    assert not (tmp_path / "demo.sqlite3").exists(), "refused, yet it touched the database"
    return proc.stderr


def test_the_demo_refuses_a_real_broker_unless_asked(tmp_path: Path) -> None:
    # Nothing listens on port 1: the refusal comes before any connection.
    stderr = _refused(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    assert "the broker redis://127.0.0.1:1/0" in stderr


def test_the_demo_refuses_a_real_database_unless_asked(tmp_path: Path) -> None:
    stderr = _refused(tmp_path, DATABASE_URL="postgres://nobody:secret@127.0.0.1:1/shop")
    assert "the database postgresql shop" in stderr
    assert "secret" not in stderr
