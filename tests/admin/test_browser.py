"""A real browser (headless Chromium) logs into the admin and signals a waiting workflow.

Skips when Chromium, its driver or selenium are missing (install: ``apt-get install chromium
chromium-driver`` and ``pip install selenium``). Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admin.helpers import wait_history
from tests.e2e import workflows as wf

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def server(db_access: None) -> Iterator[str]:
    """The Django project served on a free port by a thread of this process.

    (pytest-django's ``live_server`` would flush every table after the test, under the running
    workers' feet; this server shares the session database as it is.)
    """
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
def browser() -> Iterator[object]:
    """Headless Chromium driven by selenium."""
    if not (CHROMIUM and DRIVER):
        reason = "chromium and chromedriver are not installed (.ci/run installs them)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def test_signal_a_waiting_workflow_from_the_browser(server, browser, durable, make_user, uid):
    from selenium.webdriver.common.by import By

    handle = durable.start(wf.approval, uid, workflow_id=f"browser-{uid}")
    wait_history(handle, lambda rows: any(r["kind"] == "wait" for r in rows))
    user = make_user(operate=True)
    ARTIFACTS.mkdir(exist_ok=True)

    browser.get(f"{server}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(user.username)
    browser.find_element(By.NAME, "password").send_keys(f"pw-{uid}")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    browser.get(f"{server}/admin/durable_celery/workflowexecution/?q={handle.workflow_id}")
    browser.find_element(By.LINK_TEXT, handle.workflow_id).click()
    assert "waits for signal" in browser.page_source
    browser.save_screenshot(str(ARTIFACTS / "admin-workflow-waiting.png"))

    browser.find_element(By.ID, "dc-signal").click()
    assert browser.find_element(By.NAME, "signal_id").get_attribute("value") == f"approval-{uid}"
    payload = browser.find_element(By.NAME, "payload")
    payload.clear()
    payload.send_keys('{"approved": true}')
    browser.save_screenshot(str(ARTIFACTS / "admin-signal-form.png"))
    browser.find_element(By.ID, "dc-confirm").click()
    assert "delivered to 1 waiting" in browser.page_source

    assert handle.result(timeout=30) is True
    browser.refresh()
    assert browser.find_element(By.ID, "dc-status").text == "completed"
    assert "by " + user.username in browser.page_source  # the operator row in the timeline
    browser.save_screenshot(str(ARTIFACTS / "admin-workflow-completed.png"))
    browser.execute_script("document.getElementById('dc-timeline').scrollIntoView()")
    browser.save_screenshot(str(ARTIFACTS / "admin-workflow-timeline.png"))
