"""The workflow page and list as an operator uses them: errors with their origin, attempts as
rows, the timeline, earlier runs, retrying and stuck runs, queues nobody consumes."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from durable_celery import RetryPolicy
from tests.admin import ops_workflows as ow
from tests.admin.helpers import detail_url, execution, wait_history, wait_status
from tests.e2e import workflows as wf
from tests.e2e.helpers import wait_until

pytestmark = pytest.mark.e2e

CHANGELIST = "admin:durable_celery_workflowexecution_changelist"
SEGMENT = re.compile(r'class="dc-seg dc-seg-(?P<css>[\w-]+)" style="left:(?P<left>[\d.]+)%;'
                     r'width:(?P<width>[\d.]+)%"')


def _page(client, workflow_id: str) -> str:
    response = client.get(detail_url(workflow_id))
    assert response.status_code == 200
    return response.content.decode()


def _lanes(body: str) -> list[tuple[str, list[tuple[str, float, float]]]]:
    """``(kind, [(css, left, width)])`` of every lane of the timeline."""
    lanes = []
    for chunk in body.split('<div class="dc-gantt-row dc-lane"')[1:]:
        kind = re.search(r'data-kind="(\w+)"', chunk)[1]  # type: ignore[index]
        track = chunk.split('class="dc-gantt-dur"')[0]
        lanes.append((kind, [(m["css"], float(m["left"]), float(m["width"]))
                             for m in SEGMENT.finditer(track)]))
    return lanes


def test_failed_activity_shows_type_origin_traceback_and_each_attempt(client, durable,
                                                                      make_user, uid):
    from durable_celery.models import ActivityAttempt

    handle = durable.start(ow.ops_missing_order, f"o-{uid}", workflow_id=f"ops-key-{uid}")
    wait_status(handle, "failed")
    client.force_login(make_user(operate=True))
    body = _page(client, handle.workflow_id)
    # the run's error: original type and message, the durable class, code, the raising frame
    error = body.split('id="dc-error"')[1].split('class="dc-section"')[0]
    assert '<span class="dc-error-type">KeyError</span>' in error
    assert f"&#x27;o-{uid}&#x27;" in error and "reported as DurableMaxedError" in error
    assert "code 597" in error and "raised in <code class=\"dc-origin\">lookup_order " in error
    assert 'id="dc-tb-workflow"' in error and "return orders[order_id]" in error
    # each attempt is its own row with worker, outcome, error and the wait before the next
    attempts = list(ActivityAttempt.objects.filter(event__execution=execution(
        handle.workflow_id)).order_by("number"))
    assert [(a.number, a.outcome) for a in attempts] == [(1, "failed"), (2, "failed")]
    table = body.split('class="dc-attempt-table"')[1].split("</table>")[0]
    assert table.count('<tr class="dc-attempt" data-outcome="failed">') == 2
    assert table.count("lookup_order") >= 2 and attempts[0].worker_name in table
    assert "100ms" in table  # the back-off after attempt 1
    assert "Retry from failed step" in body and "Re-run" in body
    assert "data-dc-refresh" not in body  # a finished run does not reload


def test_failed_workflow_function_keeps_every_try(client, durable, make_user, uid):
    handle = durable.start(ow.ops_workflow_fails, f"wf-{uid}", workflow_id=f"ops-fn-{uid}",
                           retry_policy=RetryPolicy(maximum_attempts=2,
                                                    initial_interval="100ms"))
    wait_status(handle, "failed")
    tries = [r for r in handle.history() if r["dimension"] == "retries"]
    assert [(r["kind"], r["attempts"], r["error"]["type"]) for r in tries] == [
        ("workflow_attempt", 1, "LookupError"), ("workflow_attempt", 2, "LookupError")]
    assert all("ops_workflow_fails" in r["error"]["traceback"] for r in tries)
    assert handle.describe()["attempt"] == 3
    client.force_login(make_user())
    body = _page(client, handle.workflow_id)
    section = body.split('id="dc-workflow-failures"')[1].split('class="dc-section"')[0]
    assert "Failed tries of the workflow function (2)" in section
    assert section.count('class="dc-error-type">LookupError<') == 2
    assert "raised in <code class=\"dc-origin\">ops_workflow_fails " in section
    assert "History (0 calls)" in body  # failed tries are not calls


def test_child_failure_reaches_the_parent_page_with_its_origin(client, durable, make_user,
                                                               uid):
    handle = durable.start(ow.ops_parent_of_failing, f"p-{uid}", workflow_id=f"ops-par-{uid}",
                           retry_policy=RetryPolicy(maximum_attempts=0))
    wait_status(handle, "failed")
    client.force_login(make_user())
    body = _page(client, handle.workflow_id)
    error = body.split('id="dc-error"')[1].split('class="dc-section"')[0]
    assert "KeyError" in error and "lookup_order" in error
    children = body.split('id="dc-children"')[1]
    assert f"p-{uid}-child" in children and "KeyError" in children
    call = body.split('data-kind="child"')[-1].split("</tr>")[0]
    assert "KeyError" in call and "lookup_order" in call


def test_retrying_run_looks_different_on_list_and_page(client, durable, make_user, uid):
    from durable_celery.models import ActivityAttempt

    retrying = durable.start(ow.ops_keeps_retrying, f"r-{uid}", workflow_id=f"ops-retry-{uid}")
    healthy = durable.start(ow.ops_waits, f"s-{uid}", workflow_id=f"ops-ok-{uid}")
    wait_until(lambda: ActivityAttempt.objects.filter(
        event__execution__workflow_id=retrying.workflow_id).exists(), what="a failed attempt")
    wait_history(healthy, lambda rows: any(r["kind"] == "wait" for r in rows))
    client.force_login(make_user(operate=True))
    try:
        url = reverse(CHANGELIST)
        listed = client.get(url, {"q": uid}).content.decode()
        row = listed.split(retrying.workflow_id + "</a>")[1].split("</tr>")[0]
        assert ">retrying</span>" in row and "ops_always_fails attempt 2" in row
        assert "ValueError: bad input (try 1)" in row
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row)  # next retry, to the second
        other = listed.split(healthy.workflow_id + "</a>")[1].split("</tr>")[0]
        assert "retrying" not in other and "dc-error" not in other
        for health, present, absent in (("retrying", retrying, healthy),
                                        ("failing", retrying, healthy)):
            body = client.get(url, {"q": uid, "health": health}).content.decode()
            assert present.workflow_id in body and absent.workflow_id not in body

        body = _page(client, retrying.workflow_id)
        assert 'id="dc-retrying"' in body and 'id="dc-next-retry"' in body
        assert "next retry at" in body and "retry wait" in body
        assert 'data-dc-refresh="5"' in body and "durable_celery/admin.js" in body
        assert 'data-outcome="failed"' in body and "ValueError" in body
    finally:
        retrying.interrupt()
        healthy.interrupt()


def test_stuck_filter(client, make_user, uid):
    """Stuck: active and nothing happened for DURABLE_STUCK_AFTER; waiting for a signal or a
    timer that is not due is not stuck."""
    from django.utils import timezone

    from durable_celery.models import HistoryEvent, Timer, WorkflowExecution

    ns = f"stuck-{uid}"
    old = timezone.now() - timedelta(hours=1)

    def run(name: str, **fields: object) -> WorkflowExecution:
        made = WorkflowExecution.objects.create(namespace=ns, workflow_id=f"{ns}-{name}",
                                                workflow_name="x", task_queue=f"none-{uid}",
                                                **fields)
        WorkflowExecution.objects.filter(pk=made.pk).update(created_at=old, updated_at=old)
        return made

    run("pending")
    waiting = run("waiting", status="running")
    HistoryEvent.objects.create(execution=waiting, seq=1, kind="wait", name=f"s-{uid}")
    busy = run("busy", status="running")  # an attempt heartbeating now is progress
    HistoryEvent.objects.create(execution=busy, seq=1, kind="activity", name="a", attempts=1,
                                started_at=old, heartbeat_at=timezone.now())
    HistoryEvent.objects.filter(execution=busy).update(created_at=old)
    sleeping = run("sleeping", status="running")
    Timer.objects.create(execution=sleeping, kind="sleep",
                         due_at=timezone.now() + timedelta(hours=1))
    overdue = run("overdue", status="running")
    Timer.objects.create(execution=overdue, kind="sleep", due_at=old)
    lost = run("lost", status="running")
    HistoryEvent.objects.create(execution=lost, seq=1, kind="activity", name="a",
                                attempts=1, dispatched_at=old)
    HistoryEvent.objects.filter(execution=lost).update(created_at=old)
    run("done", status="completed")
    fresh = WorkflowExecution.objects.create(namespace=ns, workflow_id=f"{ns}-fresh",
                                             workflow_name="x", task_queue="q")
    try:
        _check_stuck(client, make_user, ns, fresh.workflow_id)
    finally:  # the sweeper would keep re-requesting steps for these runs
        WorkflowExecution.objects.filter(namespace=ns).update(status="interrupted")


def _check_stuck(client, make_user, ns: str, fresh: str) -> None:
    import json
    from io import StringIO

    from django.core.management import call_command

    client.force_login(make_user())
    body = client.get(reverse(CHANGELIST), {"namespace": ns, "health": "stuck"}).content.decode()
    stuck = set(re.findall(rf">{ns}-(\w+)</a>", body))
    assert stuck == {"pending", "overdue", "lost"}, stuck
    assert "stuck (no progress for 10 min)" in body
    listed = client.get(reverse(CHANGELIST), {"namespace": ns}).content.decode()
    assert listed.split(f"{ns}-lost</a>")[1].split("</tr>")[0].count(">stuck</span>") == 1
    assert ">stuck</span>" not in listed.split(f"{fresh}</a>")[1].split("</tr>")[0]
    out = StringIO()
    call_command("durable", "list", "--health", "stuck", "--namespace", ns, "--json", stdout=out)
    assert {r["workflow_id"] for r in json.loads(out.getvalue())} == {
        f"{ns}-pending", f"{ns}-overdue", f"{ns}-lost"}


def test_timeline_draws_parallel_branches_side_by_side(client, durable, make_user, uid):
    handle = durable.start(ow.ops_parallel, f"par-{uid}", 3, 0.5, workflow_id=f"ops-par3-{uid}")
    assert len(handle.result(timeout=60)) == 3
    client.force_login(make_user())
    body = _page(client, handle.workflow_id)
    lanes = _lanes(body)
    activities = [segs for kind, segs in lanes if kind == "activity"]
    assert len(activities) == 3
    bars = [next((left, left + width) for css, left, width in segs
                 if css == "attempt-completed") for segs in activities]
    assert all(end - start >= 1 for start, end in bars)  # a 0.5 s run is a visible bar
    overlapping = [(a, b) for i, a in enumerate(bars) for b in bars[i + 1:]
                   if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, bars  # two worker processes ran branches at the same time
    sleeps = [segs for kind, segs in lanes if kind == "sleep"]
    assert len(sleeps) == 1 and sleeps[0][0][0] == "wait-sleep"
    assert sleeps[0][0][1] >= max(end for _, end in bars) - 1  # the wait follows the branches
    assert "Timeline (" in body and 'class="dc-tick"' in body


def test_earlier_runs_are_listed_and_linked(client, durable, make_user, uid):
    wid = f"ops-runs-{uid}"
    first = durable.start(wf.hello, "one", workflow_id=wid)
    assert first.result(timeout=30) == "Hello, one!"
    first_pk = execution(wid).pk
    second = durable.start(wf.hello, "two", workflow_id=wid)
    assert second.result(timeout=30) == "Hello, two!"
    client.force_login(make_user(operate=True))
    body = _page(client, wid)
    runs = body.split('id="dc-runs"')[1].split('class="dc-section"')[0]
    assert f"Runs of {wid} (2, newest first)" in runs
    assert f'href="{reverse("admin:durable_celery_workflowexecution_change", args=[first_pk])}"' \
        in runs
    assert 'id="dc-earlier-run"' not in body
    older = client.get(reverse("admin:durable_celery_workflowexecution_change",
                               args=[first_pk])).content.decode()
    assert 'id="dc-earlier-run"' in older and "Hello, one!" in older
    assert 'id="dc-actions"' not in older


def test_empty_sections_are_hidden_and_counts_constant(client, durable, make_user, uid):
    short = durable.start(wf.sequence, 1, workflow_id=f"ops-seq1-{uid}")
    long = durable.start(wf.sequence, 25, workflow_id=f"ops-seq25-{uid}")
    assert short.result(timeout=30) == 1 and long.result(timeout=60) == 25
    client.force_login(make_user())
    body = _page(client, short.workflow_id)
    for absent in ("dc-search", "dc-entity", "dc-hooks", "dc-children", "dc-runs",
                   "dc-open-work", "dc-error", "dc-retrying", "dc-workflow-failures"):
        assert f'id="{absent}"' not in body, absent
    counts = []
    for handle in (short, long):
        with CaptureQueriesContext(connection) as ctx:
            client.get(detail_url(handle.workflow_id))
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts
    assert _lanes(_page(client, long.workflow_id)).count(("activity", [])) == 0


def test_a_queue_nobody_consumes_is_named_everywhere(client, durable, make_user, uid, caplog):
    from durable_celery.store import inspect

    queue = f"nobody-{uid}"
    with caplog.at_level("WARNING", logger="durable_celery.client"):
        handle = durable.start(wf.hello, "x", workflow_id=f"ops-nobody-{uid}",
                               task_queue=queue)
    assert any(queue in r.getMessage() and "no live worker" in r.getMessage()
               for r in caplog.records)
    with CaptureQueriesContext(connection) as ctx:  # the answer is cached for a few seconds
        assert inspect.has_live_consumer(queue) is False
    assert len(ctx.captured_queries) == 0
    client.force_login(make_user())
    try:
        body = _page(client, handle.workflow_id)
        banner = body.split('class="dc-banner dc-banner-warn dc-unconsumed"')[1].split("</div>")[0]
        assert f"<code>{queue}</code>" in banner and "its first replay step" in banner
        assert f"-Q {queue},{queue}-activity</code>" in banner  # steps and their activities
        workers = client.get(reverse("admin:durable_celery_worker_changelist")).content.decode()
        row = workers.split(f'data-queue="{queue}"')[1].split("</tr>")[0]
        assert 'data-consumed="no"' in row and "no live worker" in row
        assert '<td class="dc-steps-waiting">1</td>' in row
    finally:
        handle.interrupt()


def test_start_on_a_consumed_queue_does_not_warn(durable, uid, caplog):
    with caplog.at_level("WARNING", logger="durable_celery.client"):
        handle = durable.start(wf.hello, "y", workflow_id=f"ops-fine-{uid}")
    assert handle.result(timeout=30) == "Hello, y!"
    assert not [r for r in caplog.records if r.name == "durable_celery.client"]


def test_workers_page_shows_what_each_worker_holds(client, durable, make_user, uid):
    from durable_celery.models import HistoryEvent

    client.force_login(make_user(operate=True))
    url = reverse("admin:durable_celery_worker_changelist")
    with CaptureQueriesContext(connection) as idle:
        client.get(url)
    handle = durable.start(ow.ops_parallel, f"hold-{uid}", 2, 3.0, workflow_id=f"ops-hold-{uid}")
    running = wait_until(lambda: list(HistoryEvent.objects.filter(
        execution__workflow_id=handle.workflow_id, kind="activity", status="scheduled",
        worker__isnull=False, started_at__isnull=False)), what="an attempt running")
    with CaptureQueriesContext(connection) as busy:
        body = client.get(url).content.decode()
    assert len(busy.captured_queries) == len(idle.captured_queries)
    workers = body.split('id="dc-live-workers"')[1]
    assert f">{handle.workflow_id}</a> #{running[0].seq} ops_pause (attempt 1" in workers
    assert 'data-consumed="yes"' in body.split('data-queue="durable-activity"')[1][:40]
    confirm = client.get(reverse("admin:durable_celery_workflowexecution_interrupt",
                                 args=[execution(handle.workflow_id).pk]))
    assert confirm.status_code == 200 and 'id="dc-confirm-form"' in confirm.content.decode()
    assert "data-dc-refresh" not in confirm.content.decode()  # only the page itself reloads
    assert len(handle.result(timeout=60)) == 2


def test_continue_as_new_chain_is_linked_both_ways(client, make_user, uid):
    from durable_celery.models import WorkflowExecution

    ns, wid = f"chain-{uid}", f"chain-{uid}"
    first = WorkflowExecution.objects.create(namespace=ns, workflow_id=wid, workflow_name="x",
                                             task_queue="q", status="continued")
    second = WorkflowExecution.objects.create(namespace=ns, workflow_id=wid, workflow_name="x",
                                              task_queue="q", status="completed",
                                              previous_run_id=first.run_id)
    client.force_login(make_user())
    page = client.get(reverse("admin:durable_celery_workflowexecution_change",
                              args=[second.pk])).content.decode()
    first_url = reverse("admin:durable_celery_workflowexecution_change", args=[first.pk])
    assert f'continued from <a href="{first_url}">' in page
    runs = page.split('id="dc-runs"')[1]
    assert "continued as this run" in runs
    older = client.get(first_url).content.decode()
    assert "continued from this run" in older.split('id="dc-runs"')[1]
    assert 'id="dc-earlier-run"' in older


def test_workflow_function_retrying_on_a_timer_is_flagged(client, durable, make_user, uid):
    handle = durable.start(ow.ops_workflow_fails, f"wr-{uid}", workflow_id=f"ops-wretry-{uid}",
                           retry_policy=RetryPolicy(maximum_attempts=5, initial_interval="1h"))
    wait_history(handle, lambda rows: any(r["dimension"] == "retries" for r in rows))
    client.force_login(make_user())
    try:
        listed = client.get(reverse(CHANGELIST), {"q": uid, "health": "retrying"}).content.decode()
        row = listed.split(handle.workflow_id + "</a>")[1].split("</tr>")[0]
        assert ">retrying</span>" in row and "workflow try 2: LookupError: no such customer" in row
        body = _page(client, handle.workflow_id)
        banner = body.split('id="dc-retrying"')[1].split("</div>")[0]
        assert "The workflow function failed (try 1) and runs again at" in banner
        assert "Latest error (the run is retrying)" in body
        assert "Failed tries of the workflow function (1)" in body
    finally:
        handle.interrupt()


def test_an_activity_queue_nobody_consumes_is_named_on_the_page(client, durable, make_user,
                                                                 uid):
    from durable_celery.models import HistoryEvent

    queue = f"elsewhere-{uid}"
    handle = durable.start(ow.ops_activity_elsewhere, uid, queue,
                           workflow_id=f"ops-elsewhere-{uid}")
    wait_until(lambda: HistoryEvent.objects.filter(
        execution__workflow_id=handle.workflow_id, kind="activity",
        dispatched_at__isnull=False).exists(), what="the attempt dispatched")
    client.force_login(make_user())
    try:
        body = _page(client, handle.workflow_id)
        banner = body.split('class="dc-banner dc-banner-warn dc-unconsumed"')[1].split("</div>")[0]
        assert f"<code>{queue}-activity</code>" in banner and "activity #1 ops_pause" in banner
        assert body.count("dc-unconsumed") == 1  # the workflow's own queue is consumed
        assert "activity: queued, not picked up yet" in body
        workers = client.get(reverse("admin:durable_celery_worker_changelist")).content.decode()
        row = workers.split(f'data-queue="{queue}-activity"')[1].split("</tr>")[0]
        assert 'data-consumed="no"' in row and '<td class="dc-attempts-waiting">1</td>' in row
    finally:
        handle.interrupt()
