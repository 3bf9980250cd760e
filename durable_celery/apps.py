"""Django app configuration of durable_celery."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["DurableCeleryConfig"]


class DurableCeleryConfig(AppConfig):
    """Connects the Celery side (tasks, worker hooks) once Django is ready."""

    name = "durable_celery"
    verbose_name = "Durable workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import tasks  # noqa: F401 - registers the Celery tasks and worker hooks
        from .interceptors import workflow_interceptors
        from .store import data, observe, steps  # noqa: F401 - search, entity, emit, trace

        # Steps ask the interceptor registry on every run.
        steps.workflow_interceptors = workflow_interceptors  # type: ignore[assignment]
