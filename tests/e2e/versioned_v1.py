"""Version 1 of ``versioned_order``: the code before the change. A worker imports exactly one of
``versioned_v1`` / ``versioned_v2`` / ``versioned_v3`` (through ``DURABLE_IMPORTS``), as a
deployment would; tests swap them between steps of runs in flight."""

from __future__ import annotations

from durable_celery import durable_workflow, workflow
from tests.e2e.lifecycle_workflows import NO_RETRY


@durable_workflow
async def versioned_order(key: str) -> list[object]:
    acts = workflow.proxy_activities(retry_policy=NO_RETRY)
    charged = await acts.lc_step(f"{key}-charge-v1", "charged v1")
    go = await workflow.wait_for(f"ship-{key}")
    shipped = await acts.lc_step(f"{key}-ship", "shipped")
    return [charged, go, shipped]
