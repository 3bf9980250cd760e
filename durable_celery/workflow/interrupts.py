"""``workflow.interrupt``: end a workflow (and its descendants) from inside a workflow."""

from __future__ import annotations

from typing import Any

from ..serialization import storable_json
from ..validation import check_text
from ._immediate import record_in_storage

__all__ = ["interrupt"]


def interrupt(workflow_id: str, reason: str | None = None, descend: bool = False) -> Any:
    """End ``workflow_id`` as interrupted; with ``descend``, every descendant too.

    Its timers are cancelled and late activity or child results are ignored. Interrupting a
    finished workflow changes nothing. First run: done in this step's transaction (this
    workflow itself ends when the step commits). Replay: not done again. The awaitable returns
    the ids interrupted.

    Raises:
        InvalidArgumentError: (at the call) ``workflow_id`` is not a str, is empty, holds a
            NUL character or is longer than an id can be.
        NotJSONSerializableError: (at the call) ``reason`` cannot be stored (not JSON, a NUL,
            over ``DURABLE_MAX_PAYLOAD_BYTES``).
        WorkflowNotFoundError: (on await) no workflow has this id.
    """
    check_text(workflow_id, "workflow.interrupt workflow_id")
    reason = storable_json(reason, where="the reason given to workflow.interrupt()")
    spec = {"workflow_id": workflow_id, "reason": reason, "descend": bool(descend)}
    return record_in_storage("interrupt", workflow_id, spec)
