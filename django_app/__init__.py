"""The host Django project: demo, admin and test settings for durable_celery."""

from .celery import app as celery_app

__all__ = ["celery_app"]
