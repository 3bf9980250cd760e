"""Workflows, activities and interceptors of the workflow-data tests (``test_data.py``): search
fields, entities, emit, trace, interceptors. Imported by the workers through DURABLE_IMPORTS.

Interceptors are process-global; the ones registered here act only on the workflows named in
them and pass everything else straight through. When the OpenTelemetry SDK is installed, this
module also installs a tracer provider that appends every finished span, as one JSON line, to
:func:`spans_path` (beside the test counters), so the test process can read the spans a worker
made.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from durable_celery import (
    RetryPolicy,
    activity,
    durable_workflow,
    register_activity_interceptor,
    register_interceptor,
    workflow,
)
from tests.support.counters import bump

# --- spans: a file exporter in every process that imports this module ------------------------


def spans_path() -> str | None:
    """Where finished spans are appended (one JSON object a line), or ``None`` outside tests."""
    counters = os.environ.get("DURABLE_TEST_COUNTERS")
    return os.path.join(os.path.dirname(counters), "spans.jsonl") if counters else None


def _install_span_file_exporter() -> None:
    path = spans_path()
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError:
        return
    if path is None:
        return

    class FileSpanExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            with open(path, "a", encoding="utf-8") as handle:
                for span in spans:
                    handle.write(json.dumps({"name": span.name,
                                             "attributes": dict(span.attributes or {}),
                                             "trace_id": f"{span.context.trace_id:032x}",
                                             "pid": os.getpid()}) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter()))
    trace.set_tracer_provider(provider)


_install_span_file_exporter()


# --- activities -------------------------------------------------------------------------------


@activity
def data_value(key: str, value: Any = None) -> Any:
    """Bumps counter ``key``; returns ``value``."""
    bump(key)
    return value


@activity
def data_slow(key: str, seconds: float) -> str:
    import time

    bump(f"{key}-started")
    time.sleep(seconds)
    bump(f"{key}-finished")
    return "slow done"


@activity
def echo_headers(label: str) -> dict[str, Any]:
    ctx = activity.get_context()
    return {"label": label, "headers": dict(ctx.headers)}


# --- search fields ----------------------------------------------------------------------------


@durable_workflow
async def search_counter() -> list[Any]:
    search = await workflow.search()
    first = await search.incr("counter", 1)
    second = await search.incr("counter", 1)
    return [first, second, await search.get("counter")]


@durable_workflow
async def order_status(order_id: str) -> list[Any]:
    search = await workflow.search()
    written = await search.set({"order_id": order_id, "status": "pending"})
    await workflow.proxy_activities().data_value(f"{order_id}-charge", "charged")
    await search.set(status="completed")
    return [written, await search.mget("order_id", "status", "missing")]


@durable_workflow
async def onboarding(user: str, flag: bool) -> bool:
    if flag:
        await workflow.enrich({"custom1": "durable", "user": user})
    else:
        await workflow.enrich({"user": user})
    return True


@durable_workflow
async def search_all(key: str) -> dict[str, Any]:
    search = await workflow.search()
    await search.set({"name": "fan-out", "a": 1})
    acts = workflow.proxy_activities()
    results = await workflow.all(acts.data_value(f"{key}-x", 5), acts.data_value(f"{key}-y", 7))
    name = await search.get("name")
    ten = await search.incr("total", 10)
    mget = await search.mget("name", "total", "a")
    eleven = await search.incr("total", 1)
    m12 = await search.mult("product", 12)
    m120 = await search.mult("product", 10)
    deleted = await search.delete("a", "never-set")
    after = await search.get("a")
    return {"results": results, "name": name, "ten": ten, "mget": mget, "eleven": eleven,
            "m12": m12, "m120": m120, "deleted": deleted, "after": after}


# --- entities ---------------------------------------------------------------------------------


@durable_workflow
async def user_profile(name: str) -> dict[str, Any]:
    entity = await workflow.entity()
    await entity.set({"user": {"name": name, "tags": ["premium"], "status": "new"}})
    merged = await entity.merge({"user": {"address": {"city": "Paris"}, "status": "active"}})
    await entity.merge({"user": {"address": {"zip": "75001"}}})
    await entity.append({"user": {"tags": ["verified"]}})
    prepended = await entity.prepend("user.tags", "first")
    removed = await entity.remove("user.tags", 0)
    visits = await entity.increment("stats.visits")
    visits = await entity.increment("stats.visits", 2)
    flag = await entity.toggle("stats.flag")
    kept = await entity.set_if_not_exists("user.name", "someone else")
    await entity.set_if_not_exists("stats.tmp", 1)
    await entity.delete("stats.tmp")
    return {"merged": merged, "prepended": prepended, "removed": removed, "visits": visits,
            "flag": flag, "kept": kept, "user": await entity.get("user"),
            "missing": await entity.get("no.such.path"), "document": await entity.get()}


@durable_workflow
async def pipeline(key: str, steps: int) -> dict[str, Any]:
    entity = await workflow.entity()
    acts = workflow.proxy_activities()
    for i in range(steps):
        value = await acts.data_value(f"{key}-{i}", i * 10)
        await entity.merge({"results": {f"step{i}": value}, "last": i})
    return await entity.get()


@durable_workflow
async def fanout_appends(key: str, n: int) -> list[Any]:
    entity = await workflow.entity()
    acts = workflow.proxy_activities()
    values = await workflow.all(*(acts.data_value(f"{key}-{i}", i) for i in range(n)))
    await workflow.all(*(entity.append("items", v) for v in values))
    return await entity.get("items")


@durable_workflow
async def appender_hook(key: str, i: int, info: dict[str, Any]) -> None:
    """A hook thread: an activity, then an append and an incr on the shared data."""
    value = await workflow.proxy_activities().data_value(f"{key}-hook-{i}", i)
    items = await (await workflow.entity()).append("items", value)
    await (await workflow.search()).incr("appends", 1)
    await workflow.signal(str(info["signal"]), len(items))


@durable_workflow
async def hooked_appends(key: str, n: int) -> dict[str, Any]:
    entity = await workflow.entity()
    await entity.set({"items": []})
    await workflow.exec_hook_batch([
        {"key": str(i), "options": {"workflow_name": "appender_hook", "args": [key, i]}}
        for i in range(n)])
    search = await workflow.search()
    return {"items": await entity.get("items"), "appends": await search.get("appends")}


@durable_workflow
async def data_crash(key: str, seconds: float) -> dict[str, Any]:
    acts = workflow.proxy_activities(start_to_close_timeout="3s",
                                     retry_policy=RetryPolicy(initial_interval="100ms"))
    search = await workflow.search()
    await search.incr("visits", 1)
    entity = await workflow.entity()
    await entity.append("log", "before")
    await entity.increment("count")
    await acts.data_slow(key, seconds)
    await search.incr("visits", 1)
    await entity.append("log", "after")
    return {"visits": await search.get("visits"), "document": await entity.get()}


# --- emit and trace ---------------------------------------------------------------------------


@durable_workflow
async def order_completion(order_id: str, key: str) -> str:
    acts = workflow.proxy_activities()
    await acts.data_value(f"{key}-a", 1)
    await workflow.emit({"order.completed": {"order_id": order_id}})
    await acts.data_value(f"{key}-b", 2)
    await acts.data_value(f"{key}-c", 3)
    return order_id


@durable_workflow
async def progress_reporter(topic: str, key: str, steps: int) -> int:
    await workflow.emit({topic: {"key": key}}, once=False)
    acts = workflow.proxy_activities()
    for i in range(steps):
        await acts.data_value(f"{key}-{i}", i)
    return steps


@durable_workflow
async def traced(key: str) -> bool:
    await workflow.trace({"key": key, "stage": "start", "tags": ["a", "b"]})
    await workflow.trace({"key": key, "stage": "every-replay"}, once=False)
    acts = workflow.proxy_activities()
    await acts.data_value(f"{key}-1", 1)
    await acts.data_value(f"{key}-2", 2)
    return await workflow.trace({"key": key, "stage": "end", "n": 2, "nested": {"x": 1}})


# --- interceptors -----------------------------------------------------------------------------


class Wrapping:
    """Brackets the result of workflow ``intercepted`` with its label."""

    def __init__(self, label: str) -> None:
        self.label = label

    async def execute(self, ctx: dict[str, Any], next: Callable[[], Awaitable[Any]]) -> Any:  # noqa: A002
        if ctx["workflow_name"] != "intercepted":
            return await next()
        inner = await next()
        return [f"{self.label}-in", *inner, f"{self.label}-out"]


class Auditing:
    """Runs an activity before workflow ``audited`` (a durable call from an interceptor)."""

    async def execute(self, ctx: dict[str, Any], next: Callable[[], Awaitable[Any]]) -> Any:  # noqa: A002
        if ctx["workflow_name"] != "audited":
            return await next()
        audit = await workflow.proxy_activities().data_value(
            f"audit-{ctx['workflow_id']}", "audited")
        return {"audit": audit, "result": await next()}


class Tenancy:
    """Adds a header and changes the argument of activity calls made by ``with_headers``."""

    async def execute(self, activity_ctx: dict[str, Any], workflow_ctx: dict[str, Any],
                      next: Callable[[], Awaitable[Any]]) -> Any:  # noqa: A002
        if workflow_ctx["workflow_name"] != "with_headers":
            return await next()
        activity_ctx["options"]["headers"]["x-tenant"] = "acme"
        activity_ctx["args"] = [str(a).upper() for a in activity_ctx["args"]]
        result = await next()
        return {**result, "seen_by_interceptor": True}


register_interceptor(Wrapping("A"))
register_interceptor(Wrapping("B"))
register_interceptor(Auditing())
register_activity_interceptor(Tenancy())


@durable_workflow
async def intercepted() -> list[str]:
    await workflow.proxy_activities().data_value("intercepted-body", None)
    return ["body"]


@durable_workflow
async def audited(key: str) -> str:
    return await workflow.proxy_activities().data_value(key, "body")


@durable_workflow
async def with_headers(label: str) -> dict[str, Any]:
    return await workflow.proxy_activities().echo_headers(label)
