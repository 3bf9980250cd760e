"""docs/testing.md's worked example, run as written: a user's project that enables the kit with
one line, in its own pytest session on its own SQLite test database, with pytest-django's
rolled-back transactions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.backends import current_backend

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "testing.md"

#: A test of the project's own, run after the docs' tests: each test's writes were rolled back.
ISOLATION_TEST = '''
import pytest

from durable_celery.models import WorkflowExecution


@pytest.mark.django_db
def test_every_test_starts_from_an_empty_database(durable_env):
    assert not WorkflowExecution.objects.exists()
'''


def _example_files() -> dict[str, str]:
    """The docs' code blocks that begin with ``# file: <path>``, by path."""
    blocks = re.findall(r"```python\n# file: (\S+)\n(.*?)```", DOCS.read_text(), flags=re.S)
    return {path: code for path, code in blocks}


def test_the_docs_example_runs_in_a_project_of_its_own(tmp_path):
    if current_backend().name != "sqlite":
        pytest.skip("the project has its own SQLite test database; one backend suffices")
    files = _example_files()
    assert {"conftest.py", "shop/workflows.py", "tests/test_checkout.py",
            "tests/test_checkout_versions.py"} <= set(files)
    files["tests/test_z_isolation.py"] = ISOLATION_TEST
    for path, code in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(code)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DURABLE_", "DATABASE_URL", "CELERY_", "PYTEST_"))}
    env.update(DJANGO_SETTINGS_MODULE="django_app.settings",
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]),
               DATABASE_URL=f"sqlite:///{tmp_path}/project.sqlite3")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout, result.stdout
