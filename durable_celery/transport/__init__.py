"""Transport: the Celery tasks, the outbox publisher and the worker-side sweeper."""

__all__: list[str] = []
