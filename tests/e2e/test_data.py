"""Workflow data and observability, end to end on real workers: search fields, entities, emit,
trace and interceptors."""

from __future__ import annotations

import json
import math
import os

import pytest

from tests.conftest import BACKEND
from tests.e2e import data_workflows as dw
from tests.e2e.helpers import wait_until
from tests.support.counters import count

pg_only = pytest.mark.skipif(BACKEND.name == "sqlite", reason="PostgreSQL query plans")


def _kinds(handle) -> list[tuple[str, str]]:
    return [(h["kind"], h["name"]) for h in handle.history()]


# --- search fields ----------------------------------------------------------------------------


def test_search_counter_incr_twice(client, uid):
    handle = client.start(dw.search_counter, workflow_id=f"counter-{uid}")
    assert handle.result(timeout=30) == [1, 2, "2"]
    assert handle.describe()["search"] == {"counter": "2"}
    assert _kinds(handle) == [("search", "session"), ("search", "incr"), ("search", "incr"),
                              ("search", "get")]
    assert [h["result"] for h in handle.history()][1:] == [1, 2, "2"]


def test_order_status_fields(client, uid):
    handle = client.start(dw.order_status, f"o-{uid}", workflow_id=f"order-{uid}",
                          search={"customer": "acme"})
    assert handle.result(timeout=30) == [2, [f"o-{uid}", "completed", ""]]
    assert handle.describe()["search"] == {"customer": "acme", "order_id": f"o-{uid}",
                                           "status": "completed"}
    found = client.search(workflow_name="order_status", order_id=f"o-{uid}", status="running")
    assert found == []  # status= filters the execution's status, not the field
    found = client.search(order_id=f"o-{uid}", customer="acme")
    assert [h.workflow_id for h in found] == [f"order-{uid}"]


def test_search_values_given_at_start_are_text_as_inside_a_workflow(client, uid):
    """``search=`` at the start stores what ``search().set`` would: ``str(value)``, with
    ``None`` as the empty text, and ``client.search`` compares the same way."""
    handle = client.start(dw.order_status, f"o-{uid}", workflow_id=f"text-{uid}",
                          search={"customer": "acme", "tier": 3, "note": None})
    assert handle.result(timeout=30)[1][2] == ""
    assert handle.describe()["search"] == {"customer": "acme", "tier": "3", "note": "",
                                           "order_id": f"o-{uid}", "status": "completed"}
    assert [h.workflow_id for h in client.search(note=None, tier=3, customer="acme",
                                                 order_id=f"o-{uid}")] == [f"text-{uid}"]


def test_enrich_and_client_search_finds_exactly_those(client, uid):
    flagged = [client.start(dw.onboarding, f"u{i}-{uid}", True, workflow_id=f"on-{i}-{uid}")
               for i in range(2)]
    plain = client.start(dw.onboarding, f"u9-{uid}", False, workflow_id=f"on-9-{uid}")
    for handle in [*flagged, plain]:
        assert handle.result(timeout=30) is True
    assert plain.describe()["search"] == {"user": f"u9-{uid}"}
    assert flagged[0].describe()["search"] == {"custom1": "durable", "user": f"u0-{uid}"}
    assert _kinds(plain) == [("search", "set")]  # enrich takes one position
    found = {h.workflow_id for h in client.search(custom1="durable")}
    assert found == {h.workflow_id for h in flagged}
    assert [h.workflow_id for h in client.search(custom1="durable", user=f"u1-{uid}")] == \
        [f"on-1-{uid}"]
    assert client.search(custom1="durable", workflow_name="search_counter") == []


def test_search_set_all_incr_mget_mult(client, uid):
    handle = client.start(dw.search_all, uid, workflow_id=f"sall-{uid}")
    result = handle.result(timeout=30)
    assert result["results"] == [5, 7]
    assert result["name"] == "fan-out"
    assert result["ten"] == 10
    assert result["mget"] == ["fan-out", "10", "1"]
    assert result["eleven"] == 11
    assert result["m12"] == 12
    assert math.isclose(result["m120"], 120, abs_tol=1e-6)
    assert result["deleted"] == 1 and result["after"] == ""
    search = handle.describe()["search"]
    assert search["total"] == "11" and float(search["product"]) == pytest.approx(120)
    assert "a" not in search
    assert count(f"{uid}-x") == 1 and count(f"{uid}-y") == 1


# --- entities ---------------------------------------------------------------------------------


def test_user_profile_entity(client, uid):
    handle = client.start(dw.user_profile, "Ada", workflow_id=f"profile-{uid}", entity="user")
    result = handle.result(timeout=30)
    assert result["merged"]["user"] == {"name": "Ada", "tags": ["premium"], "status": "active",
                                        "address": {"city": "Paris"}}
    assert result["prepended"] == ["first", "premium", "verified"]
    assert result["removed"] == ["premium", "verified"]
    assert result["visits"] == 3 and result["flag"] is True and result["kept"] == "Ada"
    assert result["user"] == {"name": "Ada", "tags": ["premium", "verified"], "status": "active",
                              "address": {"city": "Paris", "zip": "75001"}}
    assert result["missing"] is None
    assert result["document"] == {"user": result["user"], "stats": {"visits": 3, "flag": True}}
    described = handle.describe()
    assert described["entity"] == result["document"] and described["entity_type"] == "user"
    assert {k for k, _ in _kinds(handle)} == {"entity"}


def test_find_entities(client, uid):
    handles = [client.start(dw.user_profile, f"{name}-{uid}", workflow_id=f"fe-{name}-{uid}",
                            entity="user") for name in ("ann", "bob")]
    for handle in handles:
        handle.result(timeout=30)
    found = client.find_entities("user", user__name=f"bob-{uid}")
    assert [row["workflow_id"] for row in found] == [f"fe-bob-{uid}"]
    assert found[0]["document"]["user"]["tags"] == ["premium", "verified"]
    both = client.find_entities("user", {"user.status": "active", "stats.flag": True},
                                user__address__city="Paris")
    assert {f"fe-ann-{uid}", f"fe-bob-{uid}"} <= {row["workflow_id"] for row in both}
    assert client.find_entities("user", user__name=f"bob-{uid}", user__status="new") == []
    assert client.find_entities("order", user__name=f"bob-{uid}") == []
    assert len(client.find_entities("user", {"user.status": "active"}, limit=1)) == 1


def test_pipeline_accumulates_with_merge(client, uid):
    handle = client.start(dw.pipeline, uid, 3, workflow_id=f"pipe-{uid}")
    assert handle.result(timeout=30) == {
        "results": {"step0": 0, "step1": 10, "step2": 20}, "last": 2}
    assert [count(f"{uid}-{i}") for i in range(3)] == [1, 1, 1]


def test_concurrent_appends_are_not_lost(client, uid):
    handle = client.start(dw.fanout_appends, uid, 12, workflow_id=f"fan-{uid}")
    items = handle.result(timeout=60)
    assert sorted(items) == list(range(12)) and len(items) == 12


@pytest.mark.skipif(not hasattr(__import__("durable_celery").workflow, "exec_hook_batch"),
                    reason="hook threads are not available")
def test_hook_threads_append_to_the_same_entity(client, uid):
    handle = client.start(dw.hooked_appends, uid, 6, workflow_id=f"hooks-{uid}")
    result = handle.result(timeout=60)
    assert sorted(result["items"]) == list(range(6))
    assert result["appends"] == "6"


def test_values_after_worker_crash_are_not_applied_twice(client, uid, start_worker):
    queue = f"datacrash-{uid}"
    worker = start_worker([queue, f"{queue}-activity"])
    handle = client.start(dw.data_crash, uid, 2.0, workflow_id=f"dcrash-{uid}",
                          task_queue=queue)
    wait_until(lambda: count(f"{uid}-started") == 1, timeout=30, what="the slow activity")
    described = handle.describe()
    assert described["search"] == {"visits": "1"}
    assert described["entity"] == {"log": ["before"], "count": 1}
    worker.kill()
    assert count(f"{uid}-finished") == 0, "the kill came too late to interrupt the activity"
    start_worker([queue, f"{queue}-activity"])
    result = handle.result(timeout=45)
    assert result == {"visits": "2", "document": {"log": ["before", "after"], "count": 1}}
    assert count(f"{uid}-started") >= 2
    assert [h["kind"] for h in handle.history()].count("search") == 4


# --- emit -------------------------------------------------------------------------------------


@pytest.mark.transport
def test_emit_once_reaches_a_subscriber_once_per_workflow(client, uid):
    with client.subscribe("order.completed") as sub:
        handles = [client.start(dw.order_completion, f"o{i}-{uid}", f"{uid}-{i}",
                                workflow_id=f"emit-{i}-{uid}") for i in range(2)]
        for handle in handles:
            handle.result(timeout=30)
        received = []
        while True:
            try:
                received.append(sub.get(timeout=2))
            except TimeoutError:
                break
    mine = sorted(p["order_id"] for t, p in received if p["order_id"].endswith(uid))
    assert mine == [f"o0-{uid}", f"o1-{uid}"]
    assert all(topic == "order.completed" for topic, _ in received)
    assert ("emit", "order.completed") in _kinds(handles[0])


@pytest.mark.transport
def test_emit_once_false_acts_each_time_the_code_runs(client, uid, start_worker):
    """``once=False`` publishes whenever the code reaching it runs: once for a run kept in
    memory from start to end, once per step for a run rebuilt from history at every step (a
    worker without the cache). Topic patterns match as AMQP topics do."""
    import queue

    from durable_celery.models import WorkflowExecution

    topic = f"progress.{uid}"
    no_cache = f"nocache-{uid}"
    start_worker([no_cache, f"{no_cache}-activity"], env={"DURABLE_WORKFLOW_CACHE_SIZE": "0"})
    with client.subscribe("progress.#") as everything, client.subscribe(topic) as exact:
        kept = client.start(dw.progress_reporter, topic, uid, 3, workflow_id=f"prog-{uid}")
        assert kept.result(timeout=30) == 3
        assert exact.get(timeout=10) == (topic, {"key": uid})
        with pytest.raises(queue.Empty):
            exact.get(timeout=1)
        rebuilt = client.start(dw.progress_reporter, topic, uid, 3, workflow_id=f"prog2-{uid}",
                               task_queue=no_cache)
        assert rebuilt.result(timeout=30) == 3
        steps = WorkflowExecution.objects.get(workflow_id=f"prog2-{uid}").step_count
        assert steps == 4
        events = [exact.get(timeout=10) for _ in range(steps)]
        assert events == [(topic, {"key": uid})] * steps
        with pytest.raises(queue.Empty):
            exact.get(timeout=1)
        seen = [everything.get_event(timeout=10) for _ in range(1 + steps)]
        assert sorted(e["workflow_id"] for e in seen) == [f"prog-{uid}"] + [f"prog2-{uid}"] * 4
    assert "emit" not in [kind for kind, _ in _kinds(kept)]  # once=False takes no position


def test_subscription_timeout_is_clear(client):
    with client.subscribe(f"nobody.{os.getpid()}") as sub:
        with pytest.raises(TimeoutError, match="no event"):
            sub.get(timeout=0.2)


# --- trace ------------------------------------------------------------------------------------


def _spans(key: str) -> list[dict]:
    path = dw.spans_path()
    if path is None or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        spans = [json.loads(line) for line in handle if line.strip()]
    return [s for s in spans if s["attributes"].get("key") == key]


def test_trace_records_one_span_per_call(client, uid):
    pytest.importorskip("opentelemetry.sdk.trace")
    handle = client.start(dw.traced, uid, workflow_id=f"trace-{uid}")
    assert handle.result(timeout=30) is True
    spans = wait_until(lambda: len([s for s in _spans(uid) if s["attributes"]["stage"] == "end"])
                       and _spans(uid), what="the spans")
    by_stage: dict[str, list[dict]] = {}
    for span in spans:
        by_stage.setdefault(span["attributes"]["stage"], []).append(span)
    assert len(by_stage["start"]) == 1 and len(by_stage["end"]) == 1
    start, end = by_stage["start"][0], by_stage["end"][0]
    assert start["name"] == "trace/traced"
    assert start["attributes"]["durable.workflow_id"] == f"trace-{uid}"
    assert start["attributes"]["tags"] == ["a", "b"]
    assert end["attributes"]["n"] == 2 and json.loads(end["attributes"]["nested"]) == {"x": 1}
    # once=False: a span each time the code runs; this run stayed in memory from start to end
    assert len(by_stage["every-replay"]) == 1
    assert [k for k, _ in _kinds(handle)] == ["trace", "activity", "activity", "trace"]


def test_one_trace_per_workflow_with_step_and_activity_spans(client, uid):
    pytest.importorskip("opentelemetry.sdk.trace")
    from durable_celery.telemetry import workflow_trace_ids

    workflow_id = f"trace1-{uid}"
    handle = client.start(dw.traced, uid, workflow_id=workflow_id)
    assert handle.result(timeout=30) is True

    def of_workflow() -> list[dict]:
        path = dw.spans_path()
        with open(path, encoding="utf-8") as spans_file:
            spans = [json.loads(line) for line in spans_file if line.strip()]
        return [s for s in spans if s["attributes"].get("durable.workflow_id") == workflow_id]

    def finished() -> list[dict] | None:
        found = of_workflow()
        return found if any(s["attributes"].get("stage") == "end" for s in found) else None

    spans = wait_until(finished, what="the workflow's spans")
    names = [s["name"] for s in spans]
    assert len([n for n in names if n == "step/traced"]) == 3  # one per replay step
    assert len([n for n in names if n.startswith("activity/")]) == 2
    expected = f"{workflow_trace_ids('durable', workflow_id)[0]:032x}"
    assert {s["trace_id"] for s in spans} == {expected}  # steps, activities, trace() alike


# --- interceptors -----------------------------------------------------------------------------


def test_interceptors_wrap_outermost_first(client, uid):
    handle = client.start(dw.intercepted, workflow_id=f"icpt-{uid}")
    assert handle.result(timeout=30) == ["A-in", "B-in", "body", "B-out", "A-out"]


def test_interceptor_may_call_an_activity(client, uid):
    handle = client.start(dw.audited, f"{uid}-body", workflow_id=f"audit-{uid}")
    assert handle.result(timeout=30) == {"audit": "audited", "result": "body"}
    assert count(f"audit-audit-{uid}") == 1 and count(f"{uid}-body") == 1
    history = handle.history()
    assert [(h["kind"], h["name"], h["input"]["args"][0]) for h in history] == [
        ("activity", "data_value", f"audit-audit-{uid}"),
        ("activity", "data_value", f"{uid}-body")]


def test_activity_interceptor_adds_a_header(client, uid):
    handle = client.start(dw.with_headers, f"hello-{uid}", workflow_id=f"hdr-{uid}")
    assert handle.result(timeout=30) == {"label": f"HELLO-{uid}".upper(),
                                         "headers": {"x-tenant": "acme"},
                                         "seen_by_interceptor": True}
    (row,) = handle.history()
    assert row["input"]["headers"] == {"x-tenant": "acme"}
    assert row["input"]["args"] == [f"HELLO-{uid}".upper()]


# --- indexes ----------------------------------------------------------------------------------


@pg_only
def test_client_search_and_entity_queries_use_indexes(client, uid):
    from django.db import connection

    from durable_celery.models import WorkflowExecution
    from durable_celery.store.data import entity_queryset, search_executions

    handle = client.start(dw.onboarding, f"ix-{uid}", True, workflow_id=f"ix-{uid}")
    handle.result(timeout=30)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
    try:
        plan = search_executions("durable", fields={"custom1": "durable"}).explain()
        entity_plan = entity_queryset("durable", "user", {"user.status": "active"}).explain()
        gin_plan = WorkflowExecution.objects.filter(
            document__contains={"user": {"status": "active"}}).explain()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = on")
    assert "Seq Scan on durable_celery_searchattribute" not in plan, plan
    assert "durable_search_key_value_idx" in plan, plan
    assert "Seq Scan" not in entity_plan, entity_plan  # entity index or document GIN index
    assert "durable_exec_document_gin" in gin_plan, gin_plan


def test_migrations_match_the_models(db_access):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("makemigrations", "durable_celery", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
