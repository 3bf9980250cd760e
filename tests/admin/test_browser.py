"""A real browser (headless Chromium) logs into the admin and signals a waiting workflow.

Every navigation — a ``get``, a click on a link or a submit button, a refresh — goes through
:func:`navigate`, which waits explicitly until the old page is gone, the new one has loaded and
an element that only the expected page has is there. Nothing reads a page right after a click,
so the test holds on a busy machine. (No implicit wait: Selenium advises against mixing them.)

Skips when Chromium, its driver or selenium are missing (install: ``apt-get install chromium
chromium-driver`` and ``pip install selenium``). Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.admin.helpers import wait_history
from tests.e2e import workflows as wf

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
#: Seconds any one navigation may take: generous, since the machine may be busy.
NAVIGATION_TIMEOUT = 60


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
    driver.set_page_load_timeout(NAVIGATION_TIMEOUT)
    yield driver
    driver.quit()


def navigate(browser: Any, go: Callable[[], object], arrived: Callable[[Any], Any],
             where: str) -> Any:
    """Navigate with ``go()`` (a get, a click, a refresh) and wait until the new page is there.

    Waits until the page shown before has been replaced (a click returns before the browser has
    even sent its request), the new document has loaded completely, and ``arrived(browser)``
    holds (a Selenium expected condition naming something only the expected page has).
    Returns what ``arrived`` returned.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    before = browser.find_element(By.TAG_NAME, "html")
    go()
    wait = WebDriverWait(browser, NAVIGATION_TIMEOUT)
    wait.until(ec.staleness_of(before), f"{where}: the previous page was never replaced")
    wait.until(lambda b: b.execute_script("return document.readyState") == "complete",
               f"{where}: the page never finished loading")
    return wait.until(arrived, f"{where}: never arrived; the browser shows {browser.current_url}")


def test_signal_a_waiting_workflow_from_the_browser(server, browser, durable, make_user, uid):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    handle = durable.start(wf.approval, uid, workflow_id=f"browser-{uid}")
    wait_history(handle, lambda rows: any(r["kind"] == "wait" for r in rows))
    user = make_user(operate=True)
    ARTIFACTS.mkdir(exist_ok=True)

    navigate(browser, lambda: browser.get(f"{server}/admin/login/"),
             ec.presence_of_element_located((By.NAME, "username")), "login page")
    browser.find_element(By.NAME, "username").send_keys(user.username)
    browser.find_element(By.NAME, "password").send_keys(f"pw-{uid}")
    submit = browser.find_element(By.CSS_SELECTOR, "input[type=submit]")
    # A staff user lands on the admin index, whose header names the user.
    navigate(browser, submit.click, ec.presence_of_element_located((By.ID, "user-tools")),
             "admin index after login")

    link = navigate(
        browser,
        lambda: browser.get(f"{server}/admin/durable_celery/workflowexecution/"
                            f"?q={handle.workflow_id}"),
        ec.element_to_be_clickable((By.LINK_TEXT, handle.workflow_id)), "workflow list")
    navigate(browser, link.click, ec.presence_of_element_located((By.ID, "dc-timeline")),
             "workflow page")
    assert "waits for signal" in browser.page_source
    browser.save_screenshot(str(ARTIFACTS / "admin-workflow-waiting.png"))

    signal_form = navigate(browser, browser.find_element(By.ID, "dc-signal").click,
                           ec.presence_of_element_located((By.NAME, "signal_id")),
                           "signal confirmation page")
    assert signal_form.get_attribute("value") == f"approval-{uid}"
    payload = browser.find_element(By.NAME, "payload")
    payload.clear()
    payload.send_keys('{"approved": true}')
    browser.save_screenshot(str(ARTIFACTS / "admin-signal-form.png"))
    # Confirming redirects to the workflow page, which shows what happened as a message.
    navigate(browser, browser.find_element(By.ID, "dc-confirm").click,
             ec.text_to_be_present_in_element((By.CSS_SELECTOR, "ul.messagelist"),
                                              "delivered to 1 waiting"),
             "workflow page after the signal")
    assert browser.find_elements(By.ID, "dc-timeline")

    assert handle.result(timeout=30) is True
    navigate(browser, browser.refresh,
             ec.text_to_be_present_in_element((By.ID, "dc-status"), "completed"),
             "workflow page after completion")
    assert browser.find_element(By.ID, "dc-status").text == "completed"
    assert "by " + user.username in browser.page_source  # the operator row in the timeline
    browser.save_screenshot(str(ARTIFACTS / "admin-workflow-completed.png"))
    browser.execute_script("document.getElementById('dc-timeline').scrollIntoView()")
    browser.save_screenshot(str(ARTIFACTS / "admin-workflow-timeline.png"))
