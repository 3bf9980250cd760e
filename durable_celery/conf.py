"""The one place durable_celery reads settings.

Every key is optional and read from Django settings; the default applies when it is absent.

==================================  =======  ==================================================
setting                             default  meaning
==================================  =======  ==================================================
``DURABLE_DEFAULT_TASK_QUEUE``      durable  task queue of workflows that name none
``DURABLE_DEFAULT_NAMESPACE``       durable  namespace of workflows and signals that name none
``DURABLE_SWEEP_INTERVAL``          0.5      seconds between sweeper passes over due timers
``DURABLE_OUTBOX_REPUBLISH_AFTER``  10       seconds before the sweeper re-sends an outbox row
                                             whose publication was never confirmed
``DURABLE_STEP_REDRIVE_AFTER``      10       seconds before the sweeper re-requests a replay
                                             step for an execution with unobserved results
``DURABLE_ACTIVITY_LEASE``          600      seconds an activity attempt may wait in its queue
                                             before it starts, and one without a
                                             ``start_to_close_timeout`` may run, before the
                                             sweeper re-drives it (its worker is presumed dead)
``DURABLE_ACTIVITY_LEASE_GRACE``    5        seconds added to a ``start_to_close_timeout``
                                             before the sweeper re-drives the attempt
``DURABLE_LOCAL_CONTINUATION``      True     run the next replay step in the worker that just
                                             recorded a result, when it has the workflow code
``DURABLE_SWEEPER_ENABLED``         True     start the sweeper thread in every Celery worker
``DURABLE_RESULT_POLL_INTERVAL``    0.05     seconds between database polls in
                                             ``handle.result()``
==================================  =======  ==================================================
"""

from __future__ import annotations

from typing import Any

__all__ = ["durable_setting"]

DEFAULTS: dict[str, Any] = {
    "DURABLE_DEFAULT_TASK_QUEUE": "durable",
    "DURABLE_DEFAULT_NAMESPACE": "durable",
    "DURABLE_SWEEP_INTERVAL": 0.5,
    "DURABLE_OUTBOX_REPUBLISH_AFTER": 10.0,
    "DURABLE_STEP_REDRIVE_AFTER": 10.0,
    "DURABLE_ACTIVITY_LEASE": 600.0,
    "DURABLE_ACTIVITY_LEASE_GRACE": 5.0,
    "DURABLE_LOCAL_CONTINUATION": True,
    "DURABLE_SWEEPER_ENABLED": True,
    "DURABLE_RESULT_POLL_INTERVAL": 0.05,
}


def durable_setting(name: str) -> Any:
    """Return the value of a ``DURABLE_*`` setting, or its documented default.

    Args:
        name: One of the keys in the table above.

    Raises:
        KeyError: ``name`` is not a durable_celery setting.
    """
    default = DEFAULTS[name]
    try:
        from django.conf import settings

        return getattr(settings, name, default) if settings.configured else default
    except ImportError:  # pragma: no cover - django is a hard dependency
        return default
