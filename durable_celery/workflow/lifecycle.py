"""A run's life across code changes and across runs: ``patched``, ``deprecate_patch``,
``continue_as_new``."""

from __future__ import annotations

from typing import Any, NoReturn

from ..engine import current_context
from ..errors import InvalidArgumentError
from ..payloads import encode
from ..registry import lookup_workflow

__all__ = ["continue_as_new", "deprecate_patch", "patched"]


def _check_patch_id(patch_id: str, what: str) -> None:
    if not isinstance(patch_id, str) or not patch_id:
        raise InvalidArgumentError(f"{what} needs a non-empty str patch id, got {patch_id!r}")


def patched(patch_id: str) -> bool:
    """Whether this run takes the code of patch ``patch_id`` (the new branch).

    Write a change to a workflow that may have runs in flight as::

        if workflow.patched("charge-before-ship"):
            await acts.charge(order)      # new code
        await acts.ship(order)            # old and new code

    First run — the run reaches this point for the first time, with code that has the patch: a
    marker ``patch`` / ``patch_id`` is recorded at this position and the answer is ``True``.
    This holds for a run that started under older code and reaches this point for the first
    time under the new code: it has not yet done anything the old code would have done here.

    Replay — the answer is what the run recorded:

    * the position holds the marker of ``patch_id``: ``True`` (the position is taken again);
    * the position holds another call: the history was recorded by code without the patch, so
      the answer is ``False`` and **no position is taken** — the old branch's calls line up
      with history as before. "Recorded before the patch existed" therefore means exactly: at
      this position, history holds something other than this patch's marker.

    Takes one position when it answers ``True``. Once no run that lacks the marker can replay,
    replace the check by :func:`deprecate_patch` and delete the old branch.

    Raises:
        InvalidArgumentError: ``patch_id`` is not a non-empty str.
    """
    _check_patch_id(patch_id, "patched")
    return current_context().patch(patch_id)


def deprecate_patch(patch_id: str) -> None:
    """Say that every run still in flight has patch ``patch_id``: the old branch is gone.

    Keep it where ``if workflow.patched(patch_id):`` was. First run: records the marker, like
    :func:`patched` (code still asking ``patched(patch_id)`` on another worker replays it with
    ``True``). Replay: a marker at this position is taken; history without it is accepted
    too — the marker is accepted but not required. Returns ``None``.

    Raises:
        InvalidArgumentError: ``patch_id`` is not a non-empty str.
    """
    _check_patch_id(patch_id, "deprecate_patch")
    current_context().patch(patch_id)


def continue_as_new(*args: Any) -> NoReturn:
    """End this run and start a new run of the same workflow id and task queue with ``args``
    and an empty history. Never returns; takes no position.

    The step that reaches this call records it: this run ends as ``continued`` and the next run
    is stored in the same transaction (``previous_run_id`` names this one). The next run keeps
    the workflow id, task queue, retry policy, search fields, entity type and document, parent
    and the ``execution_timeout`` deadline. ``handle.result()`` follows the chain to the last
    run, and a parent waiting on this workflow receives the last run's outcome.

    Calls this run made that are still open are cancelled. Calling durable functions while the
    raised :class:`~durable_celery.errors.ContinueAsNewError` unwinds raises it again.

    Args:
        *args: The next run's arguments: JSON, dataclasses, pydantic models; checked against
            the workflow function's signature when it is registered here.

    Raises:
        ContinueAsNewError: Always (control flow: let it propagate).
        TypeError: ``args`` do not fit the workflow's signature or are not JSON.
        InvalidArgumentError: Called from a hook thread (only a workflow's own function can).
    """
    ctx = current_context()
    info = ctx.info
    if info.workflow_dimension:
        raise InvalidArgumentError(
            f"continue_as_new can only end a workflow's main function; hook "
            f"{info.workflow_name!r} runs as a thread inside workflow {info.workflow_id!r}")
    definition = lookup_workflow(info.workflow_name)
    stored = definition.check_args(args) if definition is not None else encode(
        list(args), where=f"arguments of workflow {info.workflow_name!r}")
    raise ctx.continue_as_new(stored)
