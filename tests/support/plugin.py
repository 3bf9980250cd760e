"""Pytest plugin loaded with ``-p tests.support.plugin`` (see setup.cfg): it chooses the backend
before pytest-django reads Django settings, which happens before any conftest is imported."""

from tests.support.backends import configure_environment

configure_environment()
