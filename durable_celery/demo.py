"""The order workflow that ``manage.py durable_demo`` runs, kept apart from every user's names.

Everything here lives under the demo's own names, so importing it into a project can never
collide with that project's workflows, activities, queues or signals:

* the workflow is registered as ``durable_demo.order_flow``;
* it runs on the task queue ``durable_demo`` (Celery queues ``durable_demo`` and
  ``durable_demo-activity``), and its activities are registered for that task queue only;
* the demo starts it in the namespace ``durable_demo``, where its workflow ids and signal ids
  live.

Only the demo command imports this module; a project's workers never load it.
"""

from __future__ import annotations

import asyncio

from celery import shared_task

from . import workflow
from .activity import activity
from .registry import durable_workflow
from .retry import RetryPolicy

__all__ = [
    "DEMO_NAMESPACE",
    "DEMO_QUEUES",
    "DEMO_TASK_QUEUE",
    "charge_card",
    "check_stock",
    "order_flow",
    "reserve_courier",
    "send_receipt",
    "wake_worker",
]

#: The demo's task queue; its activities run on ``durable_demo-activity``.
DEMO_TASK_QUEUE = "durable_demo"
#: The Celery queues the demo's in-process worker consumes.
DEMO_QUEUES = [DEMO_TASK_QUEUE, f"{DEMO_TASK_QUEUE}-activity"]
#: The namespace of the demo's workflow ids and signals.
DEMO_NAMESPACE = "durable_demo"


@activity(task_queue=DEMO_TASK_QUEUE)
def check_stock(sku: str, quantity: int) -> bool:
    """Pretend to ask the warehouse."""
    return quantity <= 10


@activity(task_queue=DEMO_TASK_QUEUE)
def charge_card(order_id: str, amount: float) -> str:
    """Pretend to charge a card; returns a receipt id."""
    return f"rcpt-{order_id}-{int(amount * 100)}"


@activity(task_queue=DEMO_TASK_QUEUE)
async def reserve_courier(order_id: str) -> str:
    """An async activity: book a courier."""
    await asyncio.sleep(0)
    return f"courier-for-{order_id}"


@activity(task_queue=DEMO_TASK_QUEUE)
def send_receipt(order_id: str, receipt: str) -> str:
    """Pretend to e-mail the receipt."""
    return f"sent {receipt}"


@durable_workflow(name="durable_demo.order_flow", task_queue=DEMO_TASK_QUEUE)
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


@shared_task(name="durable_demo.wake_worker", ignore_result=True)
def wake_worker() -> None:
    """Does nothing. The demo sends it to its own worker when stopping it, so that the worker's
    wait for messages on an in-process transport ends at once instead of after two seconds."""
