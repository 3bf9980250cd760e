"""Run inside the fresh virtual environment of the install test, from the fresh project's folder
(``python install_check.py WORKFLOW_ID``); imports nothing from the repository.

Starts ``orders.tasks.order_flow`` (run by the project's own Celery worker), signals it, waits
for its result, then renders the admin's workflow list and workflow page with Django's test
client. Prints one JSON line with what it saw; any failure raises.
"""

from __future__ import annotations

import json
import os
import sys


def main(workflow_id: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    import django

    django.setup()

    from django.contrib.auth.models import User
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse
    from orders.tasks import order_flow

    import durable_celery
    from durable_celery import DurableClient
    from durable_celery.models import WorkflowExecution

    client = DurableClient()
    handle = order_flow.start("o-1", workflow_id=workflow_id)
    client.signal("approve-o-1", {"approved": True})
    result = handle.result(timeout=120)

    setup_test_environment()
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
    browser = Client()
    browser.force_login(admin)
    changelist = browser.get(reverse("admin:durable_celery_workflowexecution_changelist"),
                             {"q": workflow_id})
    execution = WorkflowExecution.objects.get(workflow_id=workflow_id)
    detail = browser.get(reverse("admin:durable_celery_workflowexecution_change",
                                 args=[execution.pk]))
    templates = sorted({t.name for t in detail.templates if t.name})
    print(json.dumps({
        "durable_celery_file": durable_celery.__file__,
        "version": durable_celery.__version__,
        "result": result,
        "history_kinds": [row["kind"] for row in handle.history()],
        "changelist_status": changelist.status_code,
        "changelist_lists_it": workflow_id in changelist.content.decode(),
        "detail_status": detail.status_code,
        "detail_templates": templates,
        "detail_has_timeline": 'id="dc-timeline"' in detail.content.decode(),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
