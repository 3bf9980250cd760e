"""Fixtures and helpers of the operations browser tests (headless Chromium via selenium):
a live server sharing the session database, a browser, logging in, and explicit waits for
every navigation. Registered for tests/admin by tests/admin/conftest.py.

Skips when Chromium, its driver or selenium are missing (fails under ``CI=true``). Screenshots
go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["ARTIFACTS", "NAVIGATION_TIMEOUT", "chromium", "live_url", "login", "open_page",
           "screenshot", "submit_and_wait"]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT = 30
#: Seconds any one page load may take: generous, since the machine may be busy.
NAVIGATION_TIMEOUT = 60


@pytest.fixture
def live_url(db_access: None) -> Iterator[str]:
    """The Django project served on a free port by a thread of this process (it shares the
    session database as it is, unlike pytest-django's ``live_server``, which flushes it)."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    thread = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait(30)
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Headless Chromium driven by selenium (no implicit waits: every wait is explicit)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (binary and driver_path):
        reason = "chromium and chromedriver are not installed (.ci/run installs them)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=1500,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(NAVIGATION_TIMEOUT)
    yield driver
    driver.quit()


def _wait(driver: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT)


def open_page(driver: Any, url: str, ready: str) -> Any:
    """Load ``url`` and wait until the element matching CSS ``ready`` is there; return it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(url)
    return _wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, ready)))


def submit_and_wait(driver: Any, button: Any, ready: str) -> Any:
    """Click ``button``, wait for the page it was on to go, then for CSS ``ready``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    page = driver.find_element(By.TAG_NAME, "html")
    button.click()
    _wait(driver).until(ec.staleness_of(page))
    return _wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, ready)))


def login(driver: Any, base: str, username: str, password: str) -> None:
    """Log into the admin and wait for its index page."""
    from selenium.webdriver.common.by import By

    open_page(driver, f"{base}/admin/login/", "input[name=username]")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    submit_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "input[type=submit]"),
                    "#user-tools")


def screenshot(driver: Any, name: str) -> Path:
    """Save a full-page screenshot as ``test-artifacts/{name}.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1500, max(min(int(height) + 120, 6000), 800))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1500, 1100)
    return path
