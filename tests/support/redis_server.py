"""A private ``redis-server`` for tests that need a broker to die: never the machine's shared
one. It keeps nothing on disk, so a restart comes back empty (as the machine's Redis would)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["PrivateRedis", "redis_server_problem"]


def redis_server_problem() -> str | None:
    """Why a private Redis cannot be started here, or ``None``."""
    return None if shutil.which("redis-server") else "redis-server is not installed"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """``redis-server`` on a free port of its own; :meth:`restart_empty` kills it by its pid
    and starts a new one, empty, on the same port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.workdir = tempfile.mkdtemp(prefix="durable-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> PrivateRedis:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"private redis-server on port {self.port} did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart_empty(self) -> None:
        self.kill()
        self.start()
