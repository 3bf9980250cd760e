"""Version 2 of ``versioned_order``: charging changed, behind ``workflow.patched``."""

from __future__ import annotations

from durable_celery import durable_workflow, workflow
from tests.e2e.lifecycle_workflows import NO_RETRY


@durable_workflow
async def versioned_order(key: str) -> list[object]:
    acts = workflow.proxy_activities(retry_policy=NO_RETRY)
    if workflow.patched("charge-v2"):
        charged = await acts.lc_step(f"{key}-charge-v2", "charged v2")
    else:
        charged = await acts.lc_step(f"{key}-charge-v1", "charged v1")
    go = await workflow.wait_for(f"ship-{key}")
    shipped = await acts.lc_step(f"{key}-ship", "shipped")
    return [charged, go, shipped]
