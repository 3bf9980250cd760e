"""Running one activity attempt: find the function, run it under its context and timeout."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from typing import Any

from ..activity import ActivityContext, activity
from ..errors import DurableTimeoutError, UnknownActivityError
from ..payloads import decode_args, encode
from ..registry import ActivityDefinition, find_activity
from ..store.activities import record_activity_failure, record_activity_result, start_attempt
from ..telemetry import workflow_span

__all__ = ["run_activity_attempt"]

logger = logging.getLogger(__name__)


def run_activity_attempt(message: dict[str, Any], celery_task_id: str | None) -> str:
    """Run the attempt described by ``message`` and record its outcome.

    A duplicate delivery, or an attempt replaced by a later one, runs nothing.

    Returns:
        ``"completed"``, ``"retry"``, ``"failed"``, or ``"skipped"``.
    """
    if not start_attempt(message, celery_task_id):
        logger.info("durable_celery: activity %s attempt %s is settled, replaced or claimed "
                    "by another delivery; skipped", message["activity"], message["attempt"])
        return "skipped"
    try:
        definition = find_activity(message["activity"], message.get("task_queue"))
        with workflow_span(f"activity/{definition.name}", message.get("namespace") or "",
                           message["workflow_id"], {"durable.activity": definition.name,
                                                    "durable.attempt": message["attempt"]}):
            value = encode(_invoke(definition, message),
                           where=f"the result of activity {message['activity']!r}")
    except Exception as error:  # every failure is recorded; the policy decides what follows
        logger.info("durable_celery: activity %s attempt %s failed: %s", message["activity"],
                    message["attempt"], error)
        if isinstance(error, UnknownActivityError):
            logger.error("durable_celery: %s", error)
        return record_activity_failure(message, error, celery_task_id)
    record_activity_result(message, value, celery_task_id)
    return "completed"


def _invoke(definition: ActivityDefinition, message: dict[str, Any]) -> Any:
    ctx = ActivityContext(
        activity_name=definition.name, args=decode_args(
            definition.function, message.get("args", []), where=f"activity {definition.name!r}"),
        workflow_id=message["workflow_id"], attempt=int(message["attempt"]),
        task_queue=message.get("task_queue") or "", headers=dict(message.get("headers") or {}))
    timeout = message.get("timeout")
    token = activity.running(ctx)
    try:
        if timeout is None:
            return definition.invoke(ctx.args)
        if definition.is_async:
            return _run_async_with_timeout(definition, ctx.args, float(timeout))
        return _run_sync_with_timeout(definition, ctx.args, float(timeout))
    finally:
        activity.finished(token)


def _timeout_error(definition: ActivityDefinition, timeout: float) -> DurableTimeoutError:
    return DurableTimeoutError(
        f"activity {definition.name!r} exceeded its start_to_close_timeout of {timeout:g}s")


def _run_async_with_timeout(definition: ActivityDefinition, args: list[Any],
                            timeout: float) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(definition.function(*args), timeout)

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        raise _timeout_error(definition, timeout) from None


def _run_sync_with_timeout(definition: ActivityDefinition, args: list[Any],
                           timeout: float) -> Any:
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome["value"] = context.run(definition.function, *args)
        except BaseException as error:  # carried back to the calling thread
            outcome["error"] = error

    runner = threading.Thread(target=target, name=f"activity-{definition.name}", daemon=True)
    runner.start()
    runner.join(timeout)
    if runner.is_alive():
        raise _timeout_error(definition, timeout)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
