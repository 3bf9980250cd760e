"""``WorkflowHandle``: one workflow, seen from outside."""

from __future__ import annotations

import time
from typing import Any

from .conf import durable_setting
from .errors import DurableInterruptedError, WorkflowNotRunningError, error_from_dict
from .payloads import decode_result
from .registry import lookup_workflow

__all__ = ["WorkflowHandle"]


class WorkflowHandle:
    """Observe and act on the workflow ``workflow_id`` in ``namespace``."""

    def __init__(self, workflow_id: str, namespace: str) -> None:
        self.workflow_id = workflow_id
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r}, namespace={self.namespace!r})"

    def _execution(self) -> Any:
        from .store.executions import get_execution

        return get_execution(self.namespace, self.workflow_id)

    def result(self, timeout: float | None = None) -> Any:
        """Block until the workflow ends; return its value or raise its terminal error.

        When the workflow's definition is registered in this process, the value is rebuilt by
        its return annotation (dataclasses, pydantic models); otherwise the stored JSON returns.

        Raises:
            DurableError: The workflow failed (its class, ``.code`` and ``.message``).
            DurableInterruptedError: It was interrupted (code 410).
            TimeoutError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = float(durable_setting("DURABLE_RESULT_POLL_INTERVAL"))
        while True:
            execution = self._execution()
            if execution.status == "completed":
                return _rebuilt_result(execution.workflow_name, execution.result)
            if execution.status == "failed":
                raise error_from_dict(execution.error or {})
            if execution.status == "interrupted":
                raise DurableInterruptedError((execution.error or {}).get("message", "interrupted"))
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"workflow {self.workflow_id!r} did not finish within "
                                   f"{timeout}s (status {execution.status})")
            time.sleep(interval)

    def status(self) -> str:
        """``pending``, ``running``, ``completed``, ``failed`` or ``interrupted``."""
        return str(self._execution().status)

    def describe(self) -> dict[str, Any]:
        """Identity, status, outcome, search fields, entity and lineage."""
        from .store.executions import describe_execution

        return describe_execution(self._execution())

    def history(self) -> list[dict[str, Any]]:
        """Every recorded durable call, in order."""
        from .store.executions import history_of

        return history_of(self._execution())

    def signal(self, signal_id: str, data: Any) -> int:
        """Send a signal to this workflow's namespace (this workflow must still be running).

        Raises:
            WorkflowNotFoundError: The workflow does not exist.
            WorkflowNotRunningError: It has finished.
        """
        execution = self._execution()
        if not execution.is_active:
            raise WorkflowNotRunningError(
                f"workflow {self.workflow_id!r} is {execution.status}; signal {signal_id!r} "
                f"was not sent")
        from .client import DurableClient

        return DurableClient(namespace=self.namespace).signal(signal_id, data)

    def interrupt(self, reason: str | None = None, descend: bool = False) -> list[str]:
        """End the workflow as interrupted (with ``descend``, its descendants too).

        Returns:
            The ids interrupted; empty when the workflow had already finished.
        """
        from .store.executions import interrupt_execution

        return interrupt_execution(self.namespace, self.workflow_id, reason, descend)


def _rebuilt_result(workflow_name: str, value: Any) -> Any:
    definition = lookup_workflow(workflow_name)
    if definition is None:
        return value
    return decode_result(definition.function, value, where=f"workflow {workflow_name!r}")
