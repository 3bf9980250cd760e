"""A user's own workflow module that reuses the demo's plain names (``order_flow`` as in the
README, ``check_stock``, ``charge_card``) on the default task queue: the demo must run beside it."""

from __future__ import annotations

from durable_celery import activity, durable_workflow, workflow

__all__ = ["charge_card", "check_stock", "order_flow"]


@activity
def check_stock(sku: str, quantity: int) -> bool:
    """The user's stock check."""
    return True


@activity
def charge_card(order_id: str, amount: float) -> str:
    """The user's card charge."""
    return f"user-receipt-{order_id}"


@durable_workflow
async def order_flow(order_id: str) -> str:
    """The user's order workflow, named like the README's example."""
    acts = workflow.proxy_activities()
    return str(await acts.charge_card(order_id, 1.0))
