"""Real Celery worker processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["WorkerProcess"]

REPO = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``celery -A django_app worker`` in a subprocess, with the session's environment.

    Args:
        queues: Celery queues to consume.
        name: Node name (unique per worker).
        concurrency: Pool size.
        log_dir: Where its log file goes.
        env: Extra environment (e.g. ``DURABLE_*`` settings for this worker only).
        pool: Celery pool (``prefork``, ``threads``, ``solo``).
    """

    def __init__(self, queues: list[str], name: str, log_dir: str, concurrency: int = 2,
                 env: dict[str, str] | None = None, pool: str = "prefork") -> None:
        self.queues = queues
        self.name = name
        self.concurrency = concurrency
        self.env = dict(env or {})
        self.pool = pool
        self.log_path = Path(log_dir) / f"worker-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> WorkerProcess:
        """Start the worker and wait until it consumes."""
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "django_app", "worker",
             "-Q", ",".join(self.queues), "-n", f"{self.name}@%h", "-c", str(self.concurrency),
             "-P", self.pool, "-l", "info", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited at start:\n{self.log_tail()}")
            if b"ready." in self.log_path.read_bytes():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} not ready in {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children) at once."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP the whole worker: alive, but silent (a stopped VM, a long pause)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Warm shutdown, then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            self.kill()

    def log_tail(self, lines: int = 60) -> str:
        """The end of its log, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
