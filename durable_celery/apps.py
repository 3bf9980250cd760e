"""Django app configuration of durable_celery."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["DurableCeleryConfig"]


class DurableCeleryConfig(AppConfig):
    """Connects the Celery side once Django is ready (``transport.install.install``)."""

    name = "durable_celery"
    verbose_name = "Durable workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import tasks  # noqa: F401 - the Celery tasks, for workers that import no tasks.py
        from .transport.install import install

        install()
