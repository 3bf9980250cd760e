"""``WorkflowHandle``: one workflow, seen from outside."""

from __future__ import annotations

import time
from typing import Any

from .conf import durable_setting
from .errors import WorkflowNotRunningError, error_from_dict
from .payloads import decode_result
from .registry import lookup_workflow
from .serialization import storable_json
from .statuses import ExecutionStatus

__all__ = ["WorkflowHandle"]

#: What an interrupted run without a stored error raises from ``result()``.
_INTERRUPTED = {"class": "DurableInterruptedError", "type": "DurableInterruptedError",
                "message": "interrupted", "code": 410}


#: The shortest wait between two polls of ``result()``, in seconds.
_FIRST_POLL_DELAY = 0.002


def _reason(reason: Any, call: str) -> Any:
    """``reason`` as it will be stored, if it can be (checked before anything is stored)."""
    return storable_json(reason, where=f"the reason given to {call}()")


def _poll_delay(waited: float, longest: float) -> float:
    """Seconds until ``result()`` looks again: a twentieth of the time waited so far, at least
    2 ms and at most ``DURABLE_RESULT_POLL_INTERVAL`` — a short workflow's result is seen
    within milliseconds, a long one is not polled more often than the setting says."""
    return min(longest, max(_FIRST_POLL_DELAY, waited / 20))


class WorkflowHandle:
    """Observe and act on the workflow ``workflow_id`` in ``namespace``.

    A handle names a workflow id and, optionally, one run of it (``run_id``). A handle from
    ``client.start`` names the run it started; ``client.get_handle(id)`` names none.

    * Reading — ``status()``, ``describe()``, ``history()`` — reads the named run or, without
      one, the id's current run at the time of the call (the active run if there is one, else
      the newest).
    * ``result()`` and acting — ``signal``, ``cancel``, ``interrupt``, ``resume`` — apply to
      the last run of the named run's continue-as-new chain (the current run without one):
      where the workflow the run started is now.
    """

    def __init__(self, workflow_id: str, namespace: str, run_id: str | None = None) -> None:
        self.workflow_id = workflow_id
        self.namespace = namespace
        self._run_id = run_id

    def __repr__(self) -> str:
        run = f", run_id={self._run_id!r}" if self._run_id else ""
        return f"WorkflowHandle({self.workflow_id!r}, namespace={self.namespace!r}{run})"

    @property
    def run_id(self) -> str:
        """The run this handle names; without one, the id's current run, looked up now.

        Raises:
            WorkflowNotFoundError: The workflow (or this run of it) does not exist.
        """
        return self._run_id or str(self._execution().run_id)

    def _execution(self) -> Any:
        from .store.executions import get_execution

        return get_execution(self.namespace, self.workflow_id, self._run_id)

    def _current(self) -> Any:
        from .store.executions import chain_end

        return chain_end(self._execution())

    def result(self, timeout: float | None = None) -> Any:
        """Block until the workflow ends; return its value or raise its terminal error.

        A run that continued as new is followed to the next run, until the last one ends.
        When the workflow's definition is registered in this process, the value is rebuilt by
        its return annotation (dataclasses, pydantic models); otherwise the stored JSON returns.

        Raises:
            DurableError: The workflow failed (its class, ``.code`` and ``.message``).
            DurableInterruptedError: It was interrupted or cancelled (code 410).
            DurableTimeoutError: Its ``execution_timeout`` passed (code 596).
            TimeoutError: ``timeout`` seconds passed first.
        """
        from .store.executions import outcome_of

        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        longest = float(durable_setting("DURABLE_RESULT_POLL_INTERVAL"))
        run_id = self.run_id
        while True:
            outcome = outcome_of(self.namespace, self.workflow_id, run_id)
            run_id = outcome.run_id
            if outcome.status == ExecutionStatus.COMPLETED:
                return _rebuilt_result(outcome.workflow_name, outcome.result)
            if outcome.status == ExecutionStatus.FAILED:
                raise error_from_dict(outcome.error or {})
            if outcome.status == ExecutionStatus.INTERRUPTED:
                raise error_from_dict({**_INTERRUPTED, **(outcome.error or {})})
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"workflow {self.workflow_id!r} did not finish within "
                                   f"{timeout}s (status {outcome.status})")
            time.sleep(_poll_delay(now - started, longest))

    def status(self) -> str:
        """``pending``, ``running``, ``completed``, ``failed``, ``interrupted`` — or
        ``continued`` for a named run that continued as new."""
        return str(self._execution().status)

    def describe(self) -> dict[str, Any]:
        """Identity (``workflow_id``, ``run_id``), status, outcome, search fields, entity and
        lineage (``parent_workflow_id``, ``previous_run_id`` …)."""
        from .store.executions import describe_execution

        return describe_execution(self._execution())

    def history(self) -> list[dict[str, Any]]:
        """Every recorded durable call of the run, in order."""
        from .store.executions import history_of

        return history_of(self._execution())

    def signal(self, signal_id: str, data: Any) -> int:
        """Send a signal to this workflow's namespace (this workflow must still be running).

        Raises:
            WorkflowNotFoundError: The workflow does not exist.
            WorkflowNotRunningError: It has finished.
        """
        execution = self._current()
        if not execution.is_active:
            raise WorkflowNotRunningError(
                f"workflow {self.workflow_id!r} is {execution.status}; signal {signal_id!r} "
                f"was not sent")
        from .client import DurableClient

        return DurableClient(namespace=self.namespace).signal(signal_id, data)

    def cancel(self, reason: str | None = None, descend: bool = False) -> list[str]:
        """Ask the workflow to cancel itself (with ``descend``, its running descendants too).

        Cooperative: the durable calls the workflow waits on raise ``asyncio.CancelledError``
        in the workflow function; its ``finally:`` / ``except CancelledError:`` blocks may make
        durable calls (cleanup activities), which run normally. If the function lets the error
        propagate, the run ends ``interrupted`` (``result()`` raises
        ``DurableInterruptedError``); if it returns, the run completes with that value. Running
        activities whose call was cancelled learn it at their next heartbeat
        (``activity.get_context().cancelled``; ``activity.heartbeat()`` raises
        ``asyncio.CancelledError``). Cancelling a run that has ended, or asking twice, does
        nothing.

        Returns:
            The ids whose cancellation this call requested (empty when the run had ended).

        Raises:
            WorkflowNotFoundError: The workflow does not exist.
            NotJSONSerializableError: ``reason`` is not JSON, holds a NUL character or is over
                ``DURABLE_MAX_PAYLOAD_BYTES``; nothing is stored.
        """
        from .store.lifecycle import request_cancel

        reason = _reason(reason, "cancel")
        execution = self._current()
        return request_cancel(self.namespace, self.workflow_id, execution.run_id, reason,
                              descend)

    def interrupt(self, reason: str | None = None, descend: bool = False) -> list[str]:
        """End the workflow as interrupted (with ``descend``, its descendants too): a hard stop,
        no workflow code runs afterwards.

        Returns:
            The ids interrupted; empty when the workflow had already finished.

        Raises:
            NotJSONSerializableError: As for :meth:`cancel`.
        """
        from .store.executions import interrupt_execution

        reason = _reason(reason, "interrupt")
        if not self._current().is_active:
            return []
        return interrupt_execution(self.namespace, self.workflow_id, reason, descend)

    def resume(self) -> WorkflowHandle:
        """Continue an interrupted or failed run from where it stopped.

        Recorded outcomes stay; the calls that were open when it ended are issued again (and,
        for a failed run, the failed activity calls its failure came from run again with fresh
        attempts). Resuming a completed run does nothing. Recorded in the run's history as an
        operator action of user ``client``.

        Returns:
            This handle.

        Raises:
            OperationError: The run is still pending or running, or its code ended with a
                cancellation (start the workflow again instead).
            WorkflowNotFoundError: The workflow does not exist.
        """
        from .store.operations import resume_as_operator

        execution = self._current()
        resume_as_operator(self.namespace, self.workflow_id, "client", run_id=execution.run_id)
        return self


def _rebuilt_result(workflow_name: str, value: Any) -> Any:
    definition = lookup_workflow(workflow_name)
    if definition is None:
        return value
    return decode_result(definition.function, value, where=f"workflow {workflow_name!r}")
