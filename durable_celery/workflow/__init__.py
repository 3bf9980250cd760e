"""The workflow-side API: ``from durable_celery import workflow``.

Every function here asks the replay context of the running workflow (found through a ContextVar)
for its position and stored outcome; none of them touches storage or Celery.
"""

from .activities import ActivityProxy, proxy_activities, proxy_local_activities
from .children import exec_child, execute_child, start_child
from .control import all_ as all  # noqa: A004 - the public name of API.md
from .control import did_interrupt, get_context, is_side_effect_allowed, now, random, uuid4
from .data import Entity, Search, enrich, entity, search
from .hooks import exec_hook, exec_hook_batch, hook
from .interrupts import interrupt
from .observe import emit, trace
from .signals import signal, wait_for
from .timers import sleep_for

__all__ = [
    "ActivityProxy",
    "Entity",
    "Search",
    "all",
    "did_interrupt",
    "emit",
    "enrich",
    "entity",
    "exec_child",
    "exec_hook",
    "exec_hook_batch",
    "execute_child",
    "get_context",
    "hook",
    "interrupt",
    "is_side_effect_allowed",
    "now",
    "proxy_activities",
    "proxy_local_activities",
    "random",
    "search",
    "signal",
    "sleep_for",
    "start_child",
    "trace",
    "uuid4",
    "wait_for",
]
