"""Settings of the host project. Everything that differs between machines comes from the
environment; the defaults are the embedded setup (SQLite file, in-process broker).

Environment:
    DATABASE_URL: ``sqlite:///path`` (default: ``db.sqlite3`` here) or ``postgres://user@host/db``.
    CELERY_BROKER_URL: ``memory://`` (default, one process), ``filesystem://``, ``redis://…``,
        ``amqp://…``.
    DURABLE_BROKER_DIR: folder of the ``filesystem://`` broker.
    DURABLE_IMPORTS: comma-separated modules holding workflows (for workers: CELERY_IMPORTS).
    DJANGO_SECRET_KEY, DJANGO_DEBUG.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from django_app import compat

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "durable-celery-demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "durable_celery",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "django_app.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "django_app.wsgi.application"


def database_from_url(url: str) -> dict[str, object]:
    """Django's DATABASES entry for a ``sqlite:///…`` or ``postgres://…`` URL."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        options: dict[str, object] = {"timeout": 30}
        if not compat.NEEDS_SHIM:  # Django 4.2 and 5.0 get the same from django_app/compat.py
            # One writer at a time, taking the lock at BEGIN so steps never deadlock.
            options["transaction_mode"] = "IMMEDIATE"
            options["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": unquote(parsed.path[1:] if parsed.path.startswith("//") else parsed.path),
            "OPTIONS": options,
        }
    if parsed.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            # Workers keep their connection between tasks (a new PostgreSQL connection costs
            # several milliseconds, more than a whole step); Django checks it before reuse.
            "CONN_MAX_AGE": 300,
            "CONN_HEALTH_CHECKS": True,
            # Parameters bound on the server, and statements prepared from their second run on
            # a connection (Django turns psycopg's preparing off unless prepare_threshold is
            # given): a step's few statements are the same every time, and parsing and
            # planning them cost PostgreSQL more than running them.
            "OPTIONS": {"server_side_binding": True, "prepare_threshold": 2},
        }
    raise ValueError(f"DATABASE_URL must be sqlite:/// or postgres://, got {url!r}")


compat.install()
DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")),
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

# --- Celery (read by django_app/celery.py with namespace CELERY) -------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://localhost/")
_broker_dir = os.environ.get("DURABLE_BROKER_DIR", str(BASE_DIR / ".broker"))
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {"data_folder_in": _broker_dir, "data_folder_out": _broker_dir,
     "control_folder": os.path.join(_broker_dir, "control"), "store_processed": False,
     "polling_interval": 0.05}
    if CELERY_BROKER_URL.startswith("filesystem") else {"visibility_timeout": 3600})
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "django-db")
CELERY_RESULT_EXTENDED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Recent Celery (5.7 here) closes the database connection before every task whatever
# CONN_MAX_AGE says (celery/celery#9824), and a new PostgreSQL connection costs more than a
# durable step. With this Celery closes it every 2,000 tasks only; durable_celery's tasks still
# drop a connection that failed or outlived CONN_MAX_AGE, and their first statement (a claim)
# retries on a new connection when the database dropped the old one.
CELERY_DB_REUSE_MAX = 1000
# Workflow modules the workers import besides autodiscovered ``tasks.py`` files (the demo's own
# workflows live in durable_celery/demo.py, which only the demo command imports).
CELERY_IMPORTS = [m for m in os.environ.get("DURABLE_IMPORTS", "").split(",") if m]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # no handler of its own: a Celery worker's root handler prints each line once (a second
    # handler printed every line twice); elsewhere Python's last-resort handler prints warnings
    "loggers": {"durable_celery": {"level": "WARNING"}},
}

# Any other DURABLE_* environment variable overrides the durable_celery setting of that name
# (JSON value: numbers, true/false); see durable_celery/conf.py for the keys.
for _key, _value in os.environ.items():
    if _key.startswith("DURABLE_") and _key not in ("DURABLE_IMPORTS", "DURABLE_BROKER_DIR"):
        try:
            globals()[_key] = json.loads(_value)
        except ValueError:
            globals()[_key] = _value
