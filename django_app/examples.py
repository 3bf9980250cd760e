"""Example workflows and activities: the order flow the demo runs."""

from __future__ import annotations

import asyncio

from durable_celery import RetryPolicy, activity, durable_workflow, workflow

__all__ = ["check_stock", "charge_card", "order_flow", "reserve_courier", "send_receipt"]


@activity
def check_stock(sku: str, quantity: int) -> bool:
    """Pretend to ask the warehouse."""
    return quantity <= 10


@activity
def charge_card(order_id: str, amount: float) -> str:
    """Pretend to charge a card; returns a receipt id."""
    return f"rcpt-{order_id}-{int(amount * 100)}"


@activity
async def reserve_courier(order_id: str) -> str:
    """An async activity: book a courier."""
    await asyncio.sleep(0)
    return f"courier-for-{order_id}"


@activity
def send_receipt(order_id: str, receipt: str) -> str:
    """Pretend to e-mail the receipt."""
    return f"sent {receipt}"


@durable_workflow
async def order_flow(order_id: str, sku: str, quantity: int, amount: float,
                     pause: str = "3s") -> dict[str, object]:
    """Check stock, charge, sleep durably, wait for approval, then do two things in parallel."""
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(maximum_attempts=3,
                                                              initial_interval="200ms"))
    if not await acts.check_stock(sku, quantity):
        return {"order_id": order_id, "status": "out of stock"}
    receipt = await acts.charge_card(order_id, amount)
    slept = await workflow.sleep_for(pause)
    decision = await workflow.wait_for(f"approve-{order_id}")
    courier, sent = await workflow.all(acts.reserve_courier(order_id),
                                       acts.send_receipt(order_id, receipt))
    return {"order_id": order_id, "receipt": receipt, "slept": slept, "decision": decision,
            "courier": courier, "notification": sent}
