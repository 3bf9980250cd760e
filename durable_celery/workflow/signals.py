"""``workflow.wait_for`` and ``workflow.signal``: the two sides of a signal."""

from __future__ import annotations

from typing import Any

from ..durations import parse_duration
from ..engine import DurableCall, current_context
from ..serialization import json_roundtrip
from ..validation import check_text
from ._immediate import Immediate

__all__ = ["signal", "wait_for"]


def wait_for(signal_id: str, timeout: str | float | None = None) -> DurableCall:
    """Wait for signal ``signal_id``; the awaitable returns its payload exactly as sent.

    First run: the wait is stored and the workflow suspends. A signal sent earlier and not yet
    taken is taken now. Replay: returns the stored payload, or ``False`` if ``timeout`` elapsed
    first.

    Args:
        signal_id: The id senders use, unique within the namespace.
        timeout: Optional longest wait (seconds or duration text).
    """
    check_text(signal_id, "wait_for signal id")
    seconds = None if timeout is None else parse_duration(timeout, what="wait_for timeout")
    return current_context().schedule("wait", signal_id, {"timeout": seconds})


def signal(signal_id: str, data: Any) -> Immediate[str]:
    """Send ``data`` to every workflow waiting on ``signal_id`` (or keep it for the next wait).

    First run: the signal is recorded and delivered when this step commits. Replay: not sent
    again. The awaitable returns ``signal_id``.
    """
    check_text(signal_id, "signal id")
    payload = json_roundtrip(data, where=f"payload of signal {signal_id!r}")
    value, _ = current_context().record_now("signal", signal_id, lambda _seq: signal_id,
                                            {"data": payload})
    return Immediate(value)
