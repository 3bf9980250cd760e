"""Pure parts of workflow data: entity document paths, and activity interceptors in the engine
(positions still taken at call time, args and headers changed before scheduling)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from durable_celery import clear_interceptors, register_activity_interceptor, workflow
from durable_celery.errors import InvalidArgumentError
from durable_celery.store import documents as d
from tests.unit.engine_sim import record, run_step


def test_paths_get_set_delete() -> None:
    doc: dict[str, Any] = {}
    d.set_path(doc, "a.b.c", 1)
    assert doc == {"a": {"b": {"c": 1}}}
    assert d.get_path(doc, "a.b") == {"c": 1} and d.get_path(doc, "a.x.y") is None
    assert d.get_path(doc, None) is doc
    d.set_path(doc, "list", [{"n": 1}, {"n": 2}])
    assert d.get_path(doc, "list.1.n") == 2
    d.set_path(doc, "list.0.n", 5)
    assert doc["list"][0] == {"n": 5}
    assert d.delete_path(doc, "a.b") == {"a": {}, "list": [{"n": 5}, {"n": 2}]}
    with pytest.raises(InvalidArgumentError):
        d.get_path(doc, "a..b")


def test_deep_merge_merges_objects_at_every_depth_and_replaces_lists() -> None:
    doc = {"user": {"name": "Bob", "address": {"city": "Paris"}, "tags": ["a"]}}
    d.deep_merge(doc, {"user": {"age": 30, "address": {"zip": "1"}, "tags": ["b"]}})
    assert doc == {"user": {"name": "Bob", "age": 30, "address": {"city": "Paris", "zip": "1"},
                            "tags": ["b"]}}


def test_append_document_extends_lists() -> None:
    doc: dict[str, Any] = {"user": {"tags": ["premium"]}}
    d.append_document(doc, {"user": {"tags": ["verified"], "log": "x"}, "new": [1, 2]})
    assert doc == {"user": {"tags": ["premium", "verified"], "log": ["x"]}, "new": [1, 2]}


def test_list_number_and_flag_helpers() -> None:
    doc: dict[str, Any] = {"n": "text"}
    assert d.append_path(doc, "l", 1) == [1]
    assert d.prepend_path(doc, "l", 0) == [0, 1]
    assert d.remove_at(doc, "l", 0) == [1] and d.remove_at(doc, "l", 9) == [1]
    assert d.increment_path(doc, "c", 2) == 2 and d.increment_path(doc, "c", 0.5) == 2.5
    assert d.toggle_path(doc, "f") is True and d.toggle_path(doc, "f") is False
    assert d.set_if_missing(doc, "f", True) is False and d.set_if_missing(doc, "g", 7) == 7
    with pytest.raises(InvalidArgumentError):
        d.increment_path(doc, "n", 1)
    with pytest.raises(InvalidArgumentError):
        d.append_path(doc, "n", 1)


class Tag:
    async def execute(self, activity_ctx: dict[str, Any], workflow_ctx: dict[str, Any],
                      next: Callable[[], Awaitable[Any]]) -> Any:  # noqa: A002
        activity_ctx["options"]["headers"]["tag"] = workflow_ctx["workflow_id"]
        activity_ctx["args"] = [*activity_ctx["args"], "extra"]
        return {"wrapped": await next()}


@pytest.fixture
def tagging() -> Iterator[None]:
    register_activity_interceptor(Tag())
    yield
    clear_interceptors()


def test_activity_interceptor_changes_what_is_scheduled(tagging: None) -> None:
    async def flow() -> Any:
        acts = workflow.proxy_activities()
        first = acts.greet("a")          # position 1, taken now
        r = workflow.random()            # position 2
        return [await first, r]

    outcome = run_step(flow)
    assert [(c.seq, c.kind) for c in outcome.commands] == [(1, "activity"), (2, "random")]
    command = outcome.commands[0]
    assert command.input["args"] == ["a", "extra"] and command.input["headers"] == {"tag": "wf-1"}
    history = [record(1, "activity", "greet", result="hi"),
               record(2, "random", result=outcome.commands[1].result)]
    done = run_step(flow, history)
    assert done.status == "completed" and done.result[0] == {"wrapped": "hi"}


def test_interceptors_keep_gather_order(tagging: None) -> None:
    async def flow() -> Any:
        acts = workflow.proxy_activities()
        return await workflow.all(acts.one(), acts.two(), acts.three())

    outcome = run_step(flow)
    assert [(c.seq, c.name) for c in outcome.commands] == [(1, "one"), (2, "two"), (3, "three")]
    history = [record(i + 1, "activity", n, result=n) for i, n in enumerate(["one", "two",
                                                                            "three"])]
    assert run_step(flow, history).result == [{"wrapped": "one"}, {"wrapped": "two"},
                                              {"wrapped": "three"}]
