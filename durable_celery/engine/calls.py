"""Durable calls as the workflow awaits them, and the ``workflow.all`` groups they belong to.

A call awaited on its own moves the code when its outcome arrives. A call handed to
``workflow.all`` only moves it when the whole group is complete (or a member fails), so storage
may hold such an outcome back until the last member arrives (:func:`outcomes_to_wake`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SHARED", "CallGroup", "DurableCall", "defers", "outcomes_to_wake",
           "waits_in_a_group"]


class DurableCall:
    """The awaitable a durable call returns. It takes its position when constructed.

    On first run it stays pending (the step suspends); on replay it resolves with the stored
    outcome when the replay reaches the moment the outcome originally arrived.
    """

    __slots__ = ("future", "seq", "kind", "_transform", "awaited", "group")

    def __init__(self, future: asyncio.Future[Any], seq: int, kind: str,
                 transform: Callable[[Any], Any] | None = None) -> None:
        self.future = future
        self.seq = seq
        self.kind = kind
        self._transform = transform
        #: Awaited on its own (not only as a member of a ``workflow.all``).
        self.awaited = False
        #: The ``workflow.all`` it was handed to (:data:`SHARED` when to more than one).
        self.group: CallGroup | None = None

    def __await__(self) -> Generator[Any, None, Any]:
        self.awaited = True
        value = yield from self.future.__await__()
        return self._transform(value) if self._transform else value

    def in_group(self, group: CallGroup) -> Awaitable[Any]:
        """This call as a member of ``group`` (``workflow.all``): awaited by the group alone."""
        self.group = group if self.group is None else SHARED
        group.members.append(self)
        return self._outcome()

    async def _outcome(self) -> Any:
        value = await self.future
        return self._transform(value) if self._transform else value


@dataclass(eq=False)
class CallGroup:
    """The durable calls one ``workflow.all`` waits for together: until every one has its
    outcome (or one fails), no single outcome moves the code that awaits the group."""

    members: list[DurableCall] = field(default_factory=list)

    def waiting(self, enough: int | None = None) -> int:
        """Activity members still waiting for an outcome (counting stops at ``enough``)."""
        count = 0
        for call in self.members:
            if call.kind == "activity" and not call.future.done():
                count += 1
                if count == enough:
                    break
        return count


#: The group of a call handed to more than one ``workflow.all``.
SHARED = CallGroup()


def _only_in_group(call: DurableCall) -> CallGroup | None:
    group = call.group
    return None if call.awaited or group is None or group is SHARED else group


def outcomes_to_wake(calls: Iterable[DurableCall]) -> int:
    """How many activity outcomes must arrive before a thread waiting on ``calls`` could move.

    Its code moves on an outcome of a call it awaits on its own; a call it awaits only as a
    member of one ``workflow.all`` moves it when the last member of that group has its outcome
    (a failure always wakes). So while every open activity call belongs to exactly one group the
    answer is the fewest members still open in any group; otherwise it is ``1``.
    """
    open_members: dict[int, int] = {}  # per group, counted once: a wide group is one scan
    for call in calls:
        if call.kind != "activity" or call.future.done():
            continue
        group = _only_in_group(call)
        if group is None:
            return 1
        if id(group) not in open_members:
            open_members[id(group)] = group.waiting()
    return max(min(open_members.values(), default=1), 1)


def defers(call: DurableCall) -> bool:
    """Whether the outcome of this open call alone cannot move the code: it is awaited only by
    its ``workflow.all``, which still waits for other activity calls."""
    group = _only_in_group(call)
    return not call.future.done() and group is not None and group.waiting(enough=2) > 1


def waits_in_a_group(call: DurableCall) -> bool:
    """Whether the code waits for this call only through ``workflow.all`` (one group or more):
    its suspension is the group's (:class:`~durable_celery.errors.DurableWaitForAllError`)."""
    return call.group is not None and not call.awaited
