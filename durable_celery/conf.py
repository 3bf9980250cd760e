"""The one place durable_celery reads settings.

Every key is optional and read from Django settings; the default applies when it is absent.

======================================  =======  ==============================================
setting                                 default  meaning
======================================  =======  ==============================================
``DURABLE_DEFAULT_TASK_QUEUE``          durable  task queue of workflows that name none
``DURABLE_DEFAULT_NAMESPACE``           durable  namespace of workflows and signals that name
                                                 none
``DURABLE_EAGER_ACTIVITIES``            True     run an activity in the worker process that
                                                 scheduled it when that worker consumes its
                                                 queue, without a broker hop (within the
                                                 budget below)
``DURABLE_EAGER_MAX_STEPS``             100      eager activities one task may run back to
                                                 back before the next goes through the broker
``DURABLE_EAGER_MAX_SECONDS``           2.0      seconds one task may spend on eager
                                                 activities before the next goes through the
                                                 broker
``DURABLE_WORKFLOW_CACHE_SIZE``         256      suspended workflows each worker process keeps
                                                 in memory, so their next step needs no replay
                                                 (0 turns the cache off)
``DURABLE_SWEEP_INTERVAL``              0.5      seconds between sweeper passes over due timers
``DURABLE_RECOVERY_INTERVAL``           2.0      seconds between the sweeper's recovery duties
                                                 (dead workers, timeouts, lost messages)
``DURABLE_WORKER_HEARTBEAT_INTERVAL``   1.0      seconds between a worker's heartbeats
``DURABLE_WORKER_STALE_AFTER``          10.0     seconds without a heartbeat after which a
                                                 worker process is dead and what it held is
                                                 re-driven by any live worker
``DURABLE_STEP_LEASE``                  60.0     seconds a replay step may hold its run before
                                                 another worker may take the run over
``DURABLE_MAX_STEP_FAILURES``           5        replay steps in a row that fail (decision not
                                                 recorded, or the process died) before the run
                                                 fails with the cause
``DURABLE_OUTCOME_GUARD``               0.05     seconds a finished activity's result may wait
                                                 in memory for the step that records it with
                                                 the next decision; then it is recorded alone
``DURABLE_OUTBOX_REPUBLISH_AFTER``      10.0     seconds before the sweeper re-sends an outbox
                                                 row whose publication was never confirmed
``DURABLE_STEP_REDRIVE_AFTER``          10.0     seconds before the sweeper re-requests a replay
                                                 step for a run with unobserved results
``DURABLE_ACTIVITY_LEASE``              600.0    seconds an activity attempt may wait in its
                                                 queue before it is presumed lost and sent
                                                 again (a dead worker's work and a broker that
                                                 lost its messages are detected much sooner)
``DURABLE_ACTIVITY_LEASE_GRACE``        5.0      seconds added to a ``start_to_close_timeout``
                                                 or ``heartbeat_timeout`` before the sweeper
                                                 declares an attempt timed out (the worker
                                                 enforces the timeout itself first)
``DURABLE_LOCAL_CONTINUATION``          True     run the next replay step in the worker that
                                                 just recorded a result, when it has the
                                                 workflow code
``DURABLE_SWEEPER_ENABLED``             True     run the sweeper's duties (timers, recovery) in
                                                 every Celery worker; heartbeats run regardless
``DURABLE_RESULT_POLL_INTERVAL``        0.05     longest wait, in seconds, between two
                                                 database polls of ``handle.result()`` (it
                                                 polls after a twentieth of the time waited so
                                                 far, from 2 ms up to this)
``DURABLE_PUBLISH_TIMEOUT``             2.0      seconds a publication may wait for the broker
                                                 before the message is left to the outbox
``DURABLE_MAX_PAYLOAD_BYTES``           2097152  largest JSON value (arguments, result, signal
                                                 payload) stored, in bytes
``DURABLE_STUCK_AFTER``                 600.0    seconds without progress after which the
                                                 admin's and the CLI's "stuck" filter lists an
                                                 active run (see store/inspect.py)
======================================  =======  ==============================================
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULTS", "durable_setting"]

DEFAULTS: dict[str, Any] = {
    "DURABLE_DEFAULT_TASK_QUEUE": "durable",
    "DURABLE_DEFAULT_NAMESPACE": "durable",
    "DURABLE_EAGER_ACTIVITIES": True,
    "DURABLE_EAGER_MAX_STEPS": 100,
    "DURABLE_EAGER_MAX_SECONDS": 2.0,
    "DURABLE_WORKFLOW_CACHE_SIZE": 256,
    "DURABLE_SWEEP_INTERVAL": 0.5,
    "DURABLE_RECOVERY_INTERVAL": 2.0,
    "DURABLE_WORKER_HEARTBEAT_INTERVAL": 1.0,
    "DURABLE_WORKER_STALE_AFTER": 10.0,
    "DURABLE_STEP_LEASE": 60.0,
    "DURABLE_MAX_STEP_FAILURES": 5,
    "DURABLE_OUTCOME_GUARD": 0.05,
    "DURABLE_OUTBOX_REPUBLISH_AFTER": 10.0,
    "DURABLE_STEP_REDRIVE_AFTER": 10.0,
    "DURABLE_ACTIVITY_LEASE": 600.0,
    "DURABLE_ACTIVITY_LEASE_GRACE": 5.0,
    "DURABLE_LOCAL_CONTINUATION": True,
    "DURABLE_SWEEPER_ENABLED": True,
    "DURABLE_RESULT_POLL_INTERVAL": 0.05,
    "DURABLE_PUBLISH_TIMEOUT": 2.0,
    "DURABLE_MAX_PAYLOAD_BYTES": 2 * 1024 * 1024,
    "DURABLE_STUCK_AFTER": 600.0,
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
