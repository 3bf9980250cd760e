"""``workflow.patched`` / ``deprecate_patch``: a change deployed between steps of runs in flight.

Each worker imports one version of ``versioned_order`` (tests/e2e/versioned_v1..3.py), as a
deployment would; a worker is stopped and one running the next version takes over the runs.
"""

from __future__ import annotations

import os

import pytest

from tests.e2e.helpers import wait_until
from tests.support.counters import count


def _deploy(start_worker, queue: str, version: int):
    modules = f"{os.environ['DURABLE_IMPORTS']},tests.e2e.versioned_v{version}"
    return start_worker([queue, f"{queue}-activity"], env={"DURABLE_IMPORTS": modules})


def _waiting(handle) -> bool:
    return any(r["kind"] == "wait" and r["status"] == "scheduled" for r in handle.history())


def _calls(handle) -> list[tuple[str, str]]:
    return [(r["kind"], r["name"]) for r in handle.history() if r["dimension"] == ""]


@pytest.mark.heavy
def test_a_run_in_flight_keeps_the_old_branch_and_a_new_run_takes_the_new_one(
        client, uid, start_worker):
    from durable_celery import NonDeterminismError

    queue = f"ver-{uid}"

    def start(name: str):
        return client.start("versioned_order", f"{uid}-{name}", task_queue=queue,
                            workflow_id=f"{uid}-{name}")

    v1 = _deploy(start_worker, queue, 1)
    old = start("old")
    wait_until(lambda: _waiting(old), timeout=30, what="the run started under v1 to wait")
    v1.stop()

    v2 = _deploy(start_worker, queue, 2)
    new, lost, deprecated = start("new"), start("lost"), start("deprecated")
    for handle in (new, lost, deprecated):
        wait_until(lambda handle=handle: _waiting(handle), timeout=30, what="a v2 run to wait")
    client.signal(f"ship-{uid}-old", "go")
    client.signal(f"ship-{uid}-new", "go")
    assert old.result(timeout=30) == ["charged v1", "go", "shipped"]
    assert new.result(timeout=30) == ["charged v2", "go", "shipped"]
    assert count(f"{uid}-old-charge-v1") == 1 and count(f"{uid}-old-charge-v2") == 0
    assert count(f"{uid}-new-charge-v2") == 1 and count(f"{uid}-new-charge-v1") == 0
    assert _calls(old) == [("activity", "lc_step"), ("wait", f"ship-{uid}-old"),
                           ("activity", "lc_step")]  # the replay under v2 recorded no marker
    assert _calls(new) == [("patch", "charge-v2"), ("activity", "lc_step"),
                           ("wait", f"ship-{uid}-new"), ("activity", "lc_step")]
    v2.stop()

    v3 = _deploy(start_worker, queue, 3)
    client.signal(f"ship-{uid}-deprecated", "go")
    assert deprecated.result(timeout=30) == ["charged v2", "go", "shipped"]
    fresh = start("fresh")
    wait_until(lambda: _waiting(fresh), timeout=30, what="a v3 run to wait")
    client.signal(f"ship-{uid}-fresh", "go")
    assert fresh.result(timeout=30) == ["charged v2", "go", "shipped"]
    assert _calls(fresh)[0] == ("patch", "charge-v2")  # v2 workers could still replay it
    v3.stop()

    # code that lost the patch meets a run that recorded its marker
    _deploy(start_worker, queue, 1)
    client.signal(f"ship-{uid}-lost", "go")
    with pytest.raises(NonDeterminismError) as info:
        lost.result(timeout=30)
    assert "patch 'charge-v2'" in info.value.message
    assert "position 1" in info.value.message
    assert count(f"{uid}-lost-charge-v1") == 0 and count(f"{uid}-lost-ship") == 0
