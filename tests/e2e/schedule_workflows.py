"""Workflows and activities of the schedule tests (``test_schedules.py``), imported by the workers
through ``DURABLE_IMPORTS``. Each run bumps counters so tests can count what ran."""

from __future__ import annotations

import asyncio

from durable_celery import DurableFatalError, activity, durable_workflow, workflow
from tests.support.counters import bump


@activity
def schedule_mark(key: str, workflow_id: str) -> int:
    """Counts the runs under ``key`` and the executions of this run under ``key-workflow_id``."""
    bump(f"{key}-{workflow_id}")
    return bump(key)


@durable_workflow
async def scheduled_tick(key: str) -> str:
    """One counted activity; returns the run's workflow id."""
    workflow_id = workflow.get_context()["workflow_id"]
    await workflow.proxy_activities().schedule_mark(key, workflow_id)
    return str(workflow_id)


@durable_workflow
async def scheduled_failure(key: str) -> None:
    """Counts its run, then fails at once (no workflow retry)."""
    await workflow.proxy_activities().schedule_mark(key, workflow.get_context()["workflow_id"])
    raise DurableFatalError(f"scheduled failure {key}")


@durable_workflow
async def scheduled_sleeper(key: str, seconds: float) -> str:
    """Counts its start, sleeps on a durable timer, counts its end: a run that overlaps."""
    workflow_id = str(workflow.get_context()["workflow_id"])
    await workflow.proxy_activities().schedule_mark(f"{key}-started", workflow_id)
    await workflow.sleep_for(seconds)
    await workflow.proxy_activities().schedule_mark(f"{key}-finished", workflow_id)
    return workflow_id


@durable_workflow
async def scheduled_cleaner(key: str, seconds: float) -> str:
    """Counts its start and sleeps; cancelled, it counts its cleanup (an activity) and ends
    cancelled; otherwise it counts its end."""
    workflow_id = str(workflow.get_context()["workflow_id"])
    acts = workflow.proxy_activities()
    await acts.schedule_mark(f"{key}-started", workflow_id)
    try:
        await workflow.sleep_for(seconds)
    except asyncio.CancelledError:
        await acts.schedule_mark(f"{key}-cleaned", workflow_id)
        raise
    await acts.schedule_mark(f"{key}-finished", workflow_id)
    return workflow_id
