"""The package as a user gets it: build the sdist and the wheel, check what they carry, install
the wheel (not editable) into a fresh virtual environment beside a fresh ``startproject``, follow
docs/installation.md, run a workflow on the project's own Celery worker and render the admin's
workflow list and workflow page — which fail with ``TemplateDoesNotExist`` when the templates do
not ship.

Runs in its own phase of tests/run.py (``--only install``); takes a minute or two. Dependencies
come from the machine's pip index as configured. It skips, with the reason, only when building
or installing is impossible here (no ``build`` package, no index to fetch from); under
``CI=true`` it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fresh_project import PROJECT, QUEUES, configure_project

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "durable_celery"
#: Folders and files of the work tree that are not sources (copying them would be slow or racy).
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "venv", ".tox", "build", "dist",
                                     "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache",
                                     ".mypy_cache", ".ruff_cache", "test-artifacts", ".broker",
                                     "db.sqlite3*")
#: Messages of pip and build that mean "no package index here", not "the package is broken".
NO_INDEX = ("No matching distribution found", "Could not find a version that satisfies",
            "Temporary failure in name resolution", "NewConnectionError",
            "Network is unreachable", "No module named build")

pytestmark = pytest.mark.timeout(1200)


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _impossible(reason: str) -> None:
    if _ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _clean_env() -> dict[str, str]:
    """The environment without anything pointing at this repository or its test session."""
    dropped = ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CELERY_BROKER_URL",
               "VIRTUAL_ENV", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items()
           if k not in dropped and not k.startswith("DURABLE_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(command: list[str], cwd: Path, what: str, timeout: float = 600,
         env: dict[str, str] | None = None) -> str:
    """Run ``command``; its output. Skips when it failed for want of a package index."""
    proc = subprocess.run(command, cwd=cwd, env=env or _clean_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        if any(marker in output for marker in NO_INDEX):
            _impossible(f"{what} is impossible here (no package index?): {output[-800:]}")
        pytest.fail(f"{what} failed ({proc.returncode}):\n{output[-4000:]}", pytrace=False)
    return output


def _package_files() -> set[str]:
    """Every file of the package folder in the work tree, relative to the repository."""
    return {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist) built from a copy of the sources (the wheel is built from the sdist)."""
    try:
        import build  # noqa: F401
    except ImportError:
        _impossible("the `build` package is not installed (python -m pip install -e '.[dev]')")
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    _run([sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(source)], work,
         "building the sdist and the wheel")
    wheels = list((work / "dist").glob("*.whl"))
    sdists = list((work / "dist").glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list((work / "dist").iterdir())
    return wheels[0], sdists[0]


def test_the_wheel_carries_the_whole_package_and_nothing_else(dists: tuple[Path, Path]) -> None:
    wheel, _ = dists
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_package_files() - names)
    assert not missing, f"the wheel lacks {missing}"
    assert any(n.startswith("durable_celery/templates/") for n in names)
    assert "durable_celery/py.typed" in names
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{dist_info}/licenses/LICENSE" in names
    top_level = {n.split("/")[0] for n in names}
    assert top_level == {"durable_celery", dist_info}, top_level


def test_the_sdist_carries_the_package_docs_and_license_only(dists: tuple[Path, Path]) -> None:
    _, sdist = dists
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    root = members[0].split("/")[0]
    names = {m.split("/", 1)[1] for m in members if "/" in m}
    missing = sorted(_package_files() - names)
    assert not missing, f"the sdist lacks {missing}"
    for document in ("LICENSE", "README.md", "CHANGELOG.md", "docs/installation.md",
                     "pyproject.toml", "setup.cfg", "MANIFEST.in"):
        assert document in names, f"the sdist lacks {document}"
    strays = sorted(n for n in names
                    if n.split("/")[0] in ("django_app", "tests", "bench", "manage.py"))
    assert not strays, f"{root} carries the host project or tests: {strays[:10]}"


@pytest.fixture(scope="module")
def project(dists: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Path, Path]]:
    """(python of a fresh venv with the wheel installed, folder of a fresh configured project)."""
    wheel, _ = dists
    work = tmp_path_factory.mktemp("install")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], work, "creating a virtual environment")
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], work,
         "installing the wheel and its dependencies", timeout=900)
    site = work / "site"
    site.mkdir()
    _run([str(venv / "bin" / "django-admin"), "startproject", PROJECT, str(site)], work,
         "django-admin startproject")
    configure_project(site)
    _run([str(python), "manage.py", "migrate", "--noinput"], site, "manage.py migrate")
    yield python, site


@pytest.fixture
def worker(project: tuple[Path, Path]) -> Iterator[subprocess.Popen[bytes]]:
    """The project's own worker: ``celery -A shop worker -Q orders,orders-activity``."""
    python, site = project
    log_path = site / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(python), "-m", "celery", "-A", PROJECT, "worker", "-Q", ",".join(QUEUES),
             "-c", "1", "-l", "info", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=site, env=_clean_env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while b"ready." not in log_path.read_bytes():
            assert proc.poll() is None, f"worker exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"worker not ready:\n{log_path.read_text()}"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def test_a_fresh_project_runs_a_workflow_and_renders_the_admin(
        project: tuple[Path, Path], worker: subprocess.Popen[bytes]) -> None:
    python, site = project
    shutil.copy(ROOT / "tests" / "support" / "install_check.py", site / "install_check.py")
    output = _run([str(python), "install_check.py", "order-o-1"], site,
                  "the workflow and the admin pages in the fresh project", timeout=300)
    seen = json.loads(output.strip().splitlines()[-1])

    installed = Path(seen["durable_celery_file"]).resolve()
    assert ROOT not in installed.parents, f"imported from the work tree: {installed}"
    assert "site-packages" in installed.parts
    from durable_celery import __version__

    assert seen["version"] == __version__
    assert seen["result"] == {"receipt": "receipt-o-1-999", "decision": {"approved": True}}
    assert seen["history_kinds"][:3] == ["activity", "sleep", "wait"]
    assert seen["changelist_status"] == 200 and seen["changelist_lists_it"], seen
    assert seen["detail_status"] == 200, seen
    assert "admin/durable_celery/workflowexecution/detail.html" in seen["detail_templates"]
    assert seen["detail_has_timeline"], seen


def test_the_host_project_is_not_installed(project: tuple[Path, Path]) -> None:
    python, site = project
    proc = subprocess.run([str(python), "-c", "import django_app"], cwd=site.parent,
                          env=_clean_env(), capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "No module named 'django_app'" in proc.stderr, proc.stderr
