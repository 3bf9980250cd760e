"""Payloads beyond JSON (dataclasses, pydantic models), start-time argument checks, bound-method
activities, and ``workflow.now()`` / ``workflow.uuid4()`` on the pure engine."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel, Field

from durable_celery import activity, durable_workflow, registry, workflow
from durable_celery.engine import StepStatus
from durable_celery.errors import (
    ArgumentMismatchError,
    DurableFatalError,
    DurableMaxedError,
    NotJSONSerializableError,
    PayloadConversionError,
)
from durable_celery.payloads import (
    check_args,
    decode_args,
    decode_result,
    encode,
    needs_conversion,
)

from .engine_sim import Sim, info, record, run_step

if TYPE_CHECKING:
    from decimal import Decimal


@dataclasses.dataclass
class Item:
    sku: str
    quantity: int


@dataclasses.dataclass
class Order:
    order_id: str
    items: list[Item]
    placed_at: datetime
    note: str | None = None


class Receipt(BaseModel):
    order_id: str
    total_cents: int = Field(alias="totalCents")
    lines: list[Item] = []


class Opaque:
    """Not JSON, not a dataclass, not a model."""


@dataclasses.dataclass
class HoldsOpaque:
    thing: Any


def take_items(items: list[Item], label: str, count: int) -> list[Item]:
    return items


def take_order(order: Order | None, *extra: Item) -> Receipt:
    raise NotImplementedError


async def async_receipt(order_id: str) -> Receipt:
    raise NotImplementedError


def untyped(a, b=2):  # type: ignore[no-untyped-def]
    return a


def hint_only_for_checkers(amount: Decimal) -> Decimal:
    raise NotImplementedError


class Service:
    __hash__ = None  # type: ignore[assignment]  # an instance that cannot be a dict key

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.calls = 0

    def label(self, item: Item) -> Item:
        self.calls += 1
        return Item(f"{self.prefix}-{item.sku}", item.quantity + self.calls)

    async def async_label(self, item: Item) -> str:
        return f"{self.prefix}:{item.sku}"


ORDER = Order("o-1", [Item("a", 1), Item("b", 2)], datetime(2024, 5, 1, 12, 30, tzinfo=UTC))


# -- encode ------------------------------------------------------------------------------------


def test_encode_turns_dataclasses_and_models_into_plain_json() -> None:
    receipt = Receipt(order_id="o-1", totalCents=995, lines=[Item("a", 1)])
    encoded = encode([[Item("a", 1), Item("b", 2)], ORDER, receipt, ("t", 1), {"k": None}],
                     where="arguments of test")
    assert encoded == [
        [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 2}],
        {"order_id": "o-1", "items": [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 2}],
         "placed_at": "2024-05-01T12:30:00Z", "note": None},
        {"order_id": "o-1", "totalCents": 995, "lines": [{"sku": "a", "quantity": 1}]},
        ["t", 1], {"k": None},
    ]
    assert json.loads(json.dumps(encoded)) == encoded  # plain JSON, nothing left to convert


@pytest.mark.parametrize("value", [
    {1, 2}, Opaque(), float("nan"), datetime(2024, 1, 1), HoldsOpaque(Opaque()),
    [Item("a", 1), {"nested": Opaque()}], Item,
], ids=["set", "object", "nan", "bare-datetime", "dataclass-holding-object", "nested-object",
        "dataclass-class"])
def test_encode_refuses_what_is_not_json_nor_a_dataclass_or_model(value: Any) -> None:
    with pytest.raises(TypeError) as caught:
        encode([value], where="arguments of activity 'charge'")
    assert isinstance(caught.value, NotJSONSerializableError)
    assert "arguments of activity 'charge'" in str(caught.value)


# -- decode ------------------------------------------------------------------------------------


def test_decode_args_rebuilds_by_parameter_hints_and_leaves_the_rest() -> None:
    stored = encode([[Item("a", 1)], "label", "3"], where="test")
    items, label, count = decode_args(take_items, stored)
    assert items == [Item("a", 1)] and isinstance(items[0], Item)
    # Hints without a dataclass or model convert nothing: no coercion of "3" to 3.
    assert (label, count) == ("label", "3")


def test_decode_args_handles_optional_var_positional_and_extra_args() -> None:
    stored = encode([ORDER, Item("x", 9), Item("y", 8)], where="test")
    order, *extra = decode_args(take_order, stored)
    assert order == ORDER and order.placed_at.tzinfo is not None
    assert extra == [Item("x", 9), Item("y", 8)]
    assert decode_args(take_order, [None]) == [None]
    assert decode_args(untyped, [{"a": 1}, 2]) == [{"a": 1}, 2]


def test_decode_args_refuses_arguments_that_do_not_bind_without_retry() -> None:
    # The worker binds stored arguments before it runs a workflow, hook or activity: a wrong
    # count is an ArgumentMismatchError (fatal: never retried), not the call's plain TypeError.
    with pytest.raises(ArgumentMismatchError) as caught:
        decode_args(untyped, [{"a": 1}, 2, 3], where="activity 'untyped'")
    error = caught.value
    assert isinstance(error, TypeError) and isinstance(error, DurableFatalError)
    assert error.code == 598
    assert error.message == ("activity 'untyped' cannot be called with 3 argument(s): too many "
                             "positional arguments; its signature is untyped(a, b=2)")
    with pytest.raises(ArgumentMismatchError, match="with 0 argument"):
        decode_args(untyped, [])
    reply = {"signal": "s", "$durable": True}
    with pytest.raises(ArgumentMismatchError, match=r"4 argument\(s\) \(the last is the reply"):
        decode_args(untyped, [1, 2, 3, reply], where="workflow 'untyped'")
    with pytest.raises(ArgumentMismatchError, match=r"label\(item: 'Item'\)"):
        decode_args(Service("p").label, [])
    assert decode_args(max, [[1], 2, 3]) == [[1], 2, 3]  # no readable signature: the call tells


def test_decode_args_of_a_bound_method_skips_self() -> None:
    service = Service("wh")
    (item,) = decode_args(service.label, [{"sku": "a", "quantity": 1}])
    assert item == Item("a", 1)


def test_decode_result_by_return_annotation() -> None:
    assert decode_result(take_items, [{"sku": "a", "quantity": 1}]) == [Item("a", 1)]
    receipt = decode_result(async_receipt, {"order_id": "o", "totalCents": 5})
    assert isinstance(receipt, Receipt) and receipt.total_cents == 5
    assert decode_result(untyped, {"x": 1}) == {"x": 1}
    assert decode_result(Service("p").async_label, "p:a") == "p:a"


def test_a_payload_that_does_not_fit_its_hint_is_a_fatal_type_error() -> None:
    with pytest.raises(PayloadConversionError) as caught:
        decode_args(take_items, [[{"sku": "a"}], "l", 1], where="activity 'take_items'")
    error = caught.value
    assert isinstance(error, TypeError) and isinstance(error, DurableFatalError)
    assert "argument 'items' of activity 'take_items'" in error.message
    assert "quantity" in error.message
    with pytest.raises(PayloadConversionError, match="result of workflow 'w'"):
        decode_result(async_receipt, {"order_id": "o"}, where="workflow 'w'")


def test_unresolvable_hints_pass_plain_json(caplog: pytest.LogCaptureFixture) -> None:
    assert decode_args(hint_only_for_checkers, ["1.5"]) == ["1.5"]
    assert decode_result(hint_only_for_checkers, "1.5") == "1.5"
    assert "cannot be resolved" in caplog.text


def test_needs_conversion_looks_through_generics() -> None:
    assert needs_conversion(Item) and needs_conversion(Receipt)
    assert needs_conversion(list[Item]) and needs_conversion(dict[str, Item | None])
    assert needs_conversion(tuple[int, Receipt])
    assert not needs_conversion(int) and not needs_conversion(dict[str, list[int]])
    assert not needs_conversion(str | None)


def test_round_trip_keeps_nested_values_equal() -> None:
    (order,) = decode_args(take_order, encode([ORDER], where="test"))
    assert order == ORDER


# -- start-time check ----------------------------------------------------------------------------


def test_check_args_refuses_what_cannot_bind_and_returns_the_json_to_store() -> None:
    with pytest.raises(TypeError) as caught:
        check_args(take_items, [[]], where="workflow 'take_items'")
    message = str(caught.value)
    assert "workflow 'take_items'" in message and "missing a required argument" in message
    assert "(items: 'list[Item]', label: 'str', count: 'int')" in message
    with pytest.raises(ArgumentMismatchError, match="too many positional arguments"):
        check_args(take_items, [[], "l", 1, 2], where="workflow 'take_items'")
    assert isinstance(caught.value, ArgumentMismatchError)  # a TypeError, and not retried
    with pytest.raises(PayloadConversionError, match="argument 'items'"):
        check_args(take_items, [[{"sku": 1}], "l", 1], where="workflow 'take_items'")
    assert check_args(take_items, [[Item("a", 1)], "l", 1], where="w") == [
        [{"sku": "a", "quantity": 1}], "l", 1]


@pytest.fixture
def clean_registry() -> Iterator[None]:
    workflows = dict(registry._workflows)
    activities = dict(registry._activities)
    yield
    registry._workflows.clear()
    registry._workflows.update(workflows)
    registry._activities.clear()
    registry._activities.update(activities)


async def unit_order_flow(order: Order, tag: str) -> Receipt:
    return Receipt(order_id=f"{order.order_id}/{tag}", totalCents=len(order.items))


async def unit_bad_result_flow() -> object:
    return Opaque()


def test_workflow_entry_rebuilds_args_and_stores_plain_json(clean_registry: None) -> None:
    definition = durable_workflow(unit_order_flow)
    stored = definition.check_args([ORDER, "t"])
    outcome = run_step(definition.entry, args=stored)
    assert outcome.status == StepStatus.COMPLETED
    assert outcome.result == {"order_id": "o-1/t", "totalCents": 2, "lines": []}
    bad = run_step(durable_workflow(unit_bad_result_flow).entry)
    assert bad.status == StepStatus.FAILED and not bad.retryable
    assert isinstance(bad.error, NotJSONSerializableError)
    assert "the result of workflow 'unit_bad_result_flow'" in str(bad.error)
    with pytest.raises(TypeError, match="unit_order_flow"):
        definition.check_args([ORDER])


# -- bound-method activities ----------------------------------------------------------------------


def test_bound_method_registers_by_method_name(clean_registry: None) -> None:
    service = Service("wh")
    label = activity(task_queue="unit-bound-q")(service.label)
    found = registry.find_activity("label", "unit-bound-q")
    assert found.function == service.label and found.task_queue == "unit-bound-q"
    assert label.__durable_activity__ is found  # type: ignore[attr-defined]
    assert label.celery_task.name == "durable_celery.activity.unit-bound-q.label"  # type: ignore[attr-defined]
    assert label(Item("a", 1)) == Item("wh-a", 2) and service.calls == 1
    # The Celery task runs the same instance's method (JSON args are rebuilt only by the
    # durable path; here the method gets what it is given).
    assert label.celery_task.apply(args=(Item("b", 1),)).get() == Item("wh-b", 3)  # type: ignore[attr-defined]
    async_label = activity(task_queue="unit-bound-q")(service.async_label)
    assert registry.find_activity("async_label", "unit-bound-q").is_async
    assert async_label.celery_task.apply(args=(Item("c", 1),)).get() == "wh:c"  # type: ignore[attr-defined]


def test_registration_is_all_or_nothing(clean_registry: None) -> None:
    def label(item: Item) -> Item:
        return item

    activity(task_queue="unit-other-q")(label)
    before = registry.registered_activities()
    service = Service("wh")
    with pytest.raises(ValueError, match="'label' is already registered"):
        activity(task_queue="unit-other-q")(service.label)
    with pytest.raises(TypeError, match="takes no attributes"):
        activity(name="unit_len")(len)
    with pytest.raises(TypeError, match="name="):
        activity(Opaque())  # type: ignore[arg-type]
    assert registry.registered_activities() == before


# -- now() and uuid4() ---------------------------------------------------------------------------


async def clock_flow() -> list[Any]:
    acts = workflow.proxy_activities()
    first = workflow.now()
    ids = [workflow.uuid4(), workflow.uuid4()]
    await acts.tick()
    second = workflow.now()
    ids.append(workflow.uuid4())
    await acts.tock()
    return [first, second, ids]


def _observing(seen: list[list[Any]]) -> Any:
    async def observed() -> str:
        value = await clock_flow()
        seen.append(value)
        return repr(value)
    return observed


def _drive(run_id: str = "") -> tuple[Sim, list[list[Any]]]:
    """Run ``clock_flow`` to the end, collecting what it saw in every step that returned."""
    seen: list[list[Any]] = []
    sim = Sim(_observing(seen), run_id=run_id)
    sim.step()
    sim.complete("tick")
    sim.step()
    sim.complete("tock")
    assert sim.step().status == StepStatus.COMPLETED
    return sim, seen


def test_now_and_uuid4_are_recorded_and_identical_on_every_replay() -> None:
    sim, seen = _drive(run_id="run-a")
    assert len(seen) == 1  # only the last step returns; earlier ones suspended
    first, second, ids = seen[0]
    assert first.tzinfo is not None and first.utcoffset().total_seconds() == 0
    assert first <= second <= datetime.now(UTC)
    assert all(isinstance(i, uuid.UUID) and i.version == 4 for i in ids)
    assert len(set(ids)) == 3
    rows = sorted(sim.records.values(), key=lambda r: r.seq)
    assert [r.kind for r in rows] == ["now", "uuid4", "uuid4", "activity", "now", "uuid4",
                                      "activity"]
    assert datetime.fromisoformat(rows[0].result) == first
    assert [uuid.UUID(r.result) for r in rows if r.kind == "uuid4"] == ids
    # Replaying the finished history (twice) gives the very same values and records nothing.
    for _ in range(2):
        replay = run_step(_observing(seen), rows, run_id="run-a")
        assert replay.status == StepStatus.COMPLETED and replay.commands == []
    assert seen[1] == seen[0] and seen[2] == seen[0]


def test_uuid4_differs_between_runs_and_is_derived_from_the_run() -> None:
    _, (a,) = _drive(run_id="run-a")
    _, (b,) = _drive(run_id="run-b")
    _, (c,) = _drive(run_id="run-a")
    assert not set(a[2]) & set(b[2])
    assert a[2] == c[2]  # same run id, same positions: the same ids
    _, (d,) = _drive()
    _, (e,) = _drive()
    assert not set(d[2]) & set(e[2])  # no run id yet: random values, still recorded


def test_now_replays_the_recorded_value_not_the_clock() -> None:
    seen: list[datetime] = []

    async def flow() -> None:
        seen.append(workflow.now())

    stored = record(1, "now", result="2001-02-03T04:05:06.123456+00:00")
    assert run_step(flow, [stored]).status == StepStatus.COMPLETED
    assert seen == [datetime(2001, 2, 3, 4, 5, 6, 123456, tzinfo=UTC)]
    assert info().run_id == ""  # the default the store leaves until runs have ids


# -- results rebuilt where the workflow awaits them ---------------------------------------------


def test_activity_and_child_results_are_rebuilt_in_the_workflow(clean_registry: None) -> None:
    def unit_pick(lines: list[Item]) -> list[Item]:
        return lines

    def unit_single(item: Item) -> Item:
        return item

    activity(task_queue="unit-pick-q")(unit_pick)
    activity(task_queue="unit-pick-q")(unit_single)
    child = durable_workflow(unit_order_flow)
    seen: list[Any] = []

    async def flow() -> None:
        seen.clear()  # every step replays from the top: keep what the last one saw
        acts = workflow.proxy_activities(task_queue="unit-pick-q")
        seen.append(await acts.unit_pick([Item("a", 1)]))
        seen.append(await workflow.exec_child(child, args=[ORDER, "t"]))
        seen.append(await acts.not_registered_here())
        lenient = workflow.proxy_activities(task_queue="unit-pick-q",
                                            retry_policy={"throw_on_error": False})
        seen.append(await lenient.unit_single(Item("b", 2)))

    sim = Sim(flow)
    sim.step()
    assert sim.records[1].kind == "activity"
    sim.complete("unit_pick", [{"sku": "a", "quantity": 1}])
    sim.step()
    assert sim.records[2].kind == "child"
    sim.complete("unit_order_flow", {"order_id": "o-1/t", "totalCents": 2}, kind="child")
    sim.step()
    sim.complete("not_registered_here", {"sku": "z", "quantity": 0})
    sim.step()
    sim.fail("unit_single", {"type": "DurableMaxedError", "message": "gave up", "code": 597})
    assert sim.step().status == StepStatus.COMPLETED
    assert seen[0] == [Item("a", 1)]
    assert isinstance(seen[1], Receipt) and seen[1].total_cents == 2
    assert seen[2] == {"sku": "z", "quantity": 0}  # unknown here: the plain JSON arrives
    # throw_on_error=False: the error object comes back as it is, not "rebuilt" as an Item.
    assert isinstance(seen[3], DurableMaxedError) and seen[3].message == "gave up"
