"""The testing kit: run workflows in the test's process with time skipping, and check that
current code still fits recorded runs.

* :class:`WorkflowEnvironment` — an embedded worker and a clock the test controls; the pytest
  fixture ``durable_env`` (``pytest_plugins = ["durable_celery.testing.pytest"]``) opens one.
* :func:`replay` — run current code against exported histories; raises
  :class:`~durable_celery.errors.NonDeterminismError` at the first divergence.
* :class:`TestClock` — the clock the environment installs.

See ``docs/testing.md``. ``WorkflowEnvironment`` is imported on first use, so ``replay`` works
in a process whose Django apps are not loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import NonDeterminismError
from .clock import TestClock
from .replayer import ReplayResult, load_exports, replay

if TYPE_CHECKING:
    from .environment import WorkflowEnvironment

__all__ = ["NonDeterminismError", "ReplayResult", "TestClock", "WorkflowEnvironment",
           "load_exports", "replay"]


def __getattr__(name: str) -> Any:
    if name == "WorkflowEnvironment":
        from .environment import WorkflowEnvironment

        return WorkflowEnvironment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
