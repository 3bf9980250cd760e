"""How the admin and ``manage.py durable`` present times, durations and stored errors.

Pure functions over stored values: no queries, no Django admin imports (the management command
uses them too).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

__all__ = ["STATUS_COLOURS", "ErrorView", "error_view", "format_duration", "format_seconds",
           "format_time", "pretty_json", "raising_frame"]

STATUS_COLOURS = {
    "pending": "#8a8a8a", "running": "#2f6fb3", "completed": "#2e7d32", "failed": "#c62828",
    "interrupted": "#b26a00", "scheduled": "#2f6fb3", "cancelled": "#8a8a8a",
    "continued": "#6a1b9a", "retrying": "#e65100", "timed_out": "#c62828",
    "worker_lost": "#ad1457",
}

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>.+)$',
                    re.MULTILINE)


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON text (for ``<pre>``; the template escapes it)."""
    try:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def format_seconds(seconds: float) -> str:
    """A number of seconds as ``12ms`` / ``4.56s`` / ``1h 2m 3s``."""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "",
             f"{minutes}m" if minutes else "", f"{secs}s"]
    return " ".join(p for p in parts if p)


def format_duration(start: datetime | None, end: datetime | None) -> str:
    """``end - start`` as :func:`format_seconds` does; empty when either is missing."""
    if start is None or end is None:
        return ""
    return format_seconds((end - start).total_seconds())


def format_time(moment: datetime | None, *, date: bool = True, millis: bool = False) -> str:
    """``2024-05-01 12:34:56`` in the current time zone (``.123`` with ``millis``); ``—`` for
    nothing."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment) if timezone.is_aware(moment) else moment
    text = local.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    return f"{text}.{local.microsecond // 1000:03d}" if millis else text


def raising_frame(traceback: str | None) -> dict[str, str] | None:
    """The innermost frame of a formatted traceback: ``{"function", "file", "line"}``."""
    if not traceback:
        return None
    frames = list(_FRAME.finditer(traceback))
    if not frames:
        return None
    last = frames[-1]
    return {"function": last["function"].strip(), "file": last["file"], "line": last["line"]}


@dataclass(frozen=True)
class ErrorView:
    """A stored error as people read it.

    Attributes:
        type: The original exception's class name (``KeyError``).
        message: Its message.
        code: The durable code (597 …), when there is one.
        durable_class: The durable class it was reported as (``DurableMaxedError``), when it
            differs from ``type``.
        traceback: The formatted traceback, when stored.
        origin: ``function (file:line)`` of the raising frame, from the traceback.
    """

    type: str
    message: str
    code: Any
    durable_class: str
    traceback: str
    origin: str

    @property
    def headline(self) -> str:
        """``KeyError: 'o-99'``."""
        return f"{self.type}: {self.message}" if self.message else self.type

    def lines(self, *, with_traceback: bool = True) -> list[str]:
        """The error as text lines (for the command line)."""
        extra = [f"as {self.durable_class}" if self.durable_class else "",
                 f"code {self.code}" if self.code is not None else "",
                 f"raised in {self.origin}" if self.origin else ""]
        lines = [self.headline + (f"  ({', '.join(e for e in extra if e)})"
                                  if any(extra) else "")]
        if with_traceback and self.traceback:
            lines += ["  " + line for line in self.traceback.rstrip().splitlines()]
        return lines


def error_view(error: dict[str, Any] | None) -> ErrorView | None:
    """Read a stored error (``describe_error`` form; older rows may lack fields)."""
    if not error:
        return None
    cls = str(error.get("class") or "")
    kind = str(error.get("type") or cls or "Error")
    traceback = str(error.get("traceback") or "")
    frame = raising_frame(traceback)
    origin = (f"{frame['function']} ({frame['file'].rsplit('/', 1)[-1]}:{frame['line']})"
              if frame else "")
    return ErrorView(type=kind, message=str(error.get("message") or ""),
                     code=error.get("code"), durable_class=cls if cls != kind else "",
                     traceback=traceback, origin=origin)
