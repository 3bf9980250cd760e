"""Workflows for what a team porting from Temporal or DBOS reaches for first: ``workflow.now()``,
``workflow.uuid4()``, dataclass and pydantic payloads, bound-method activities, arguments checked
at the start. Imported by the workers through ``DURABLE_IMPORTS``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from durable_celery import DurableFatalError, RetryPolicy, activity, durable_workflow, workflow
from tests.support.counters import bump

# --- what a workflow saw, replay by replay ------------------------------------------------------


def observe(key: str, value: Any) -> None:
    """Append ``value`` to the observations of ``key`` (one JSON line per call, any process)."""
    path = os.path.join(os.environ["DURABLE_TEST_COUNTERS"], f"observed-{key}.jsonl")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(value) + "\n")


def observations(key: str) -> list[Any]:
    """Everything observed under ``key``, in order."""
    path = os.path.join(os.environ["DURABLE_TEST_COUNTERS"], f"observed-{key}.jsonl")
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]
    except FileNotFoundError:
        return []


# --- payload types ------------------------------------------------------------------------------


@dataclass
class LineItem:
    sku: str
    quantity: int


@dataclass
class PickedLine:
    sku: str
    bin: str
    quantity: int


@dataclass
class Shipment:
    shipment_id: str
    lines: list[LineItem]
    express: bool = False


class Quote(BaseModel):
    sku: str
    total_cents: int = Field(alias="totalCents")
    currency: str = "EUR"


class Invoice(BaseModel):
    shipment_id: str
    quotes: list[Quote]
    seen_types: list[str] = []


@dataclass
class ShipmentReport:
    shipment_id: str
    picked: list[PickedLine]
    invoice: Invoice
    seen_types: list[str] = field(default_factory=list)


class Opaque:
    """Neither JSON nor a dataclass nor a model."""


@dataclass
class Wrapper:
    payload: Any


def _type_names(values: list[Any]) -> list[str]:
    return [type(v).__name__ for v in values]


# --- activities ---------------------------------------------------------------------------------


@activity
def pick_lines(lines: list[LineItem], warehouse: str) -> list[PickedLine]:
    """Gets ``LineItem`` objects (rebuilt from JSON) and returns ``PickedLine`` objects."""
    if not all(isinstance(line, LineItem) for line in lines):
        raise DurableFatalError(f"pick_lines got {_type_names(lines)}, not LineItem objects")
    return [PickedLine(line.sku, f"{warehouse}-{line.sku}", line.quantity) for line in lines]


@activity
def quote_line(line: PickedLine) -> Quote:
    """A pydantic model as the result (an alias on one field)."""
    if not isinstance(line, PickedLine):
        raise DurableFatalError(f"quote_line got {type(line).__name__}, not a PickedLine")
    return Quote(sku=line.sku, totalCents=line.quantity * 250)


class Warehouse:
    """A service object whose bound method is an activity; its state came from its constructor
    in the worker process that imported this module."""

    def __init__(self, name: str, bins: dict[str, str]) -> None:
        self.name = name
        self.bins = bins
        self.lookups = 0

    def locate_bin(self, sku: str, counter: str) -> dict[str, Any]:
        self.lookups += 1
        bump(counter)
        return {"warehouse": self.name, "bin": self.bins.get(sku, "overflow"),
                "process": os.getpid(), "lookups_so_far": self.lookups}


north = Warehouse("north", {"a": "A-01", "b": "B-07"})
locate_bin = activity(task_queue="payments")(north.locate_bin)


# --- workflows ----------------------------------------------------------------------------------


@durable_workflow
async def clock_and_ids(key: str, rounds: int) -> list[list[str]]:
    """``now()`` and ``uuid4()`` around activities: every replay records what it saw."""
    acts = workflow.proxy_activities()
    seen: list[list[str]] = []
    for index in range(rounds):
        moment, ident = workflow.now(), workflow.uuid4()
        if moment.tzinfo is None or moment.utcoffset().total_seconds() != 0:  # type: ignore[union-attr]
            raise DurableFatalError(f"now() returned {moment!r}, not aware UTC")
        seen.append([moment.isoformat(), str(ident)])
        observe(key, [index, moment.isoformat(), str(ident), ident.version])
        await acts.counted(f"{key}-activity", index)
    return seen


@durable_workflow
async def clock_around_slow(key: str, seconds: float) -> list[list[str]]:
    """A slow activity between two ``now()``/``uuid4()`` pairs: a window to kill the worker in
    (the short start_to_close_timeout gets a lost attempt re-driven soon)."""
    acts = workflow.proxy_activities(start_to_close_timeout="3s",
                                     retry_policy=RetryPolicy(initial_interval="100ms"))
    before = [workflow.now().isoformat(), str(workflow.uuid4())]
    observe(key, ["before", *before])
    await acts.slow(key, seconds)
    after = [workflow.now().isoformat(), str(workflow.uuid4())]
    observe(key, ["after", *after])
    return [before, after]


@durable_workflow
async def price_shipment(shipment_id: str, picked: list[PickedLine]) -> Invoice:
    """A child taking dataclasses and returning a pydantic model."""
    acts = workflow.proxy_activities()
    quotes = [await acts.quote_line(line) for line in picked]
    return Invoice(shipment_id=shipment_id, quotes=quotes,
                   seen_types=_type_names(picked) + _type_names(quotes))


@durable_workflow
async def ship(shipment: Shipment) -> ShipmentReport:
    """A dataclass argument; dataclasses in a list to and from an activity; a child's pydantic
    result; a dataclass result rebuilt by ``handle.result()``."""
    acts = workflow.proxy_activities()
    picked = await acts.pick_lines(shipment.lines, "north")
    invoice = await workflow.exec_child(price_shipment, args=[shipment.shipment_id, picked])
    return ShipmentReport(shipment.shipment_id, picked, invoice,
                          seen_types=[type(shipment).__name__, *_type_names(shipment.lines),
                                      *_type_names(picked), type(invoice).__name__])


@durable_workflow
async def locate_all(skus: list[str], counter: str) -> list[dict[str, Any]]:
    """Calls the bound-method activity once per sku."""
    acts = workflow.proxy_activities()
    return [await acts.locate_bin(sku, counter) for sku in skus]


@durable_workflow
async def opaque_activity_arg() -> str:
    """An activity argument that cannot become JSON: refused at the call."""
    await workflow.proxy_activities().pick_lines([Wrapper(Opaque())], "north")
    return "unreachable"


@durable_workflow
async def child_with_wrong_args(child_id: str) -> str:
    """Calls ``price_shipment`` with one argument too few: refused at the call."""
    try:
        await workflow.exec_child(price_shipment, args=["only-one"], workflow_id=child_id)
    except TypeError as error:
        return f"refused: {error}"
    return "started"
