"""A user's project as docs/installation.md builds it, for the install test.

:func:`configure_project` turns a fresh ``django-admin startproject shop`` into a project that
uses durable_celery the way the installation guide says — ``durable_celery`` in
``INSTALLED_APPS``, ``shop/celery.py`` and ``shop/__init__.py`` importing it, workflows in
``orders/tasks.py`` (found by ``autodiscover_tasks``), ``CELERY_RESULT_EXTENDED`` — with the
embedded ``filesystem://`` broker and SQLite, so that it needs no server.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PROJECT", "QUEUES", "configure_project"]

#: The project name given to ``startproject``.
PROJECT = "shop"
#: The queues its worker consumes: the workflow's task queue and its activity queue.
QUEUES = ["orders", "orders-activity"]

CELERY_PY = '''\
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
'''

INIT_PY = '''\
from .celery import app as celery_app

__all__ = ["celery_app"]
'''

TASKS_PY = '''\
from durable_celery import RetryPolicy, activity, durable_workflow, workflow


@activity
def charge(order_id: str, amount: float) -> str:
    return f"receipt-{order_id}-{int(amount * 100)}"


@durable_workflow(task_queue="orders")
async def order_flow(order_id: str) -> dict:
    acts = workflow.proxy_activities(retry_policy=RetryPolicy(maximum_attempts=3))
    receipt = await acts.charge(order_id, 9.99)
    await workflow.sleep_for("1s")
    decision = await workflow.wait_for(f"approve-{order_id}")
    return {"receipt": receipt, "decision": decision}
'''

SETTINGS_TAIL = '''

# --- added by following durable_celery's docs/installation.md ---
INSTALLED_APPS += ["orders", "durable_celery"]

DATABASES["default"]["OPTIONS"] = {
    "transaction_mode": "IMMEDIATE", "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}

BROKER_DIR = BASE_DIR / "broker"
CELERY_BROKER_URL = "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "data_folder_in": str(BROKER_DIR), "data_folder_out": str(BROKER_DIR),
    "control_folder": str(BROKER_DIR / "control"), "store_processed": False,
    "polling_interval": 0.05,
}
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_EXTENDED = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
'''


def configure_project(site: Path) -> Path:
    """Add durable_celery to the fresh project in ``site`` (holding ``manage.py``).

    Returns:
        The project package folder (``site/shop``).
    """
    package = site / PROJECT
    (package / "celery.py").write_text(CELERY_PY)
    (package / "__init__.py").write_text(INIT_PY)
    orders = site / "orders"
    orders.mkdir()
    (orders / "__init__.py").write_text("")
    (orders / "tasks.py").write_text(TASKS_PY)
    with open(package / "settings.py", "a") as settings:
        settings.write(SETTINGS_TAIL)
    (site / "broker" / "control").mkdir(parents=True)
    return package
