"""A real browser (headless Chromium) logs into the admin and signals a waiting workflow.

Every navigation — a ``get``, a click on a link or a submit button, a refresh — goes through
:func:`navigate`, which waits explicitly until the old page is gone, the new one has loaded and
an element that only the expected page has is there. Nothing reads a page right after a click,
so the test holds on a busy machine. (No implicit wait: Selenium advises against mixing them.)

The live server and the browser are the fixtures of tests/admin/browser_support.py. Skips when
Chromium, its driver or selenium are missing (install: ``apt-get install chromium
chromium-driver`` and ``pip install selenium``). Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.admin.browser_support import ARTIFACTS, NAVIGATION_TIMEOUT
from tests.admin.helpers import wait_history
from tests.e2e import workflows as wf

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


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


def test_signal_a_waiting_workflow_from_the_browser(live_url, chromium, durable, make_user,
                                                     uid):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    handle = durable.start(wf.approval, uid, workflow_id=f"chromium-{uid}")
    wait_history(handle, lambda rows: any(r["kind"] == "wait" for r in rows))
    user = make_user(operate=True)
    ARTIFACTS.mkdir(exist_ok=True)

    navigate(chromium, lambda: chromium.get(f"{live_url}/admin/login/"),
             ec.presence_of_element_located((By.NAME, "username")), "login page")
    chromium.find_element(By.NAME, "username").send_keys(user.username)
    chromium.find_element(By.NAME, "password").send_keys(f"pw-{uid}")
    submit = chromium.find_element(By.CSS_SELECTOR, "input[type=submit]")
    # A staff user lands on the admin index, whose header names the user.
    navigate(chromium, submit.click, ec.presence_of_element_located((By.ID, "user-tools")),
             "admin index after login")

    link = navigate(
        chromium,
        lambda: chromium.get(f"{live_url}/admin/durable_celery/workflowexecution/"
                            f"?q={handle.workflow_id}"),
        ec.element_to_be_clickable((By.LINK_TEXT, handle.workflow_id)), "workflow list")
    navigate(chromium, link.click, ec.presence_of_element_located((By.ID, "dc-timeline")),
             "workflow page")
    assert "waits for signal" in chromium.page_source
    chromium.save_screenshot(str(ARTIFACTS / "admin-workflow-waiting.png"))

    signal_form = navigate(chromium, chromium.find_element(By.ID, "dc-signal").click,
                           ec.presence_of_element_located((By.NAME, "signal_id")),
                           "signal confirmation page")
    assert signal_form.get_attribute("value") == f"approval-{uid}"
    payload = chromium.find_element(By.NAME, "payload")
    payload.clear()
    payload.send_keys('{"approved": true}')
    chromium.save_screenshot(str(ARTIFACTS / "admin-signal-form.png"))
    # Confirming redirects to the workflow page, which shows what happened as a message.
    navigate(chromium, chromium.find_element(By.ID, "dc-confirm").click,
             ec.text_to_be_present_in_element((By.CSS_SELECTOR, "ul.messagelist"),
                                              "delivered to 1 waiting"),
             "workflow page after the signal")
    assert chromium.find_elements(By.ID, "dc-timeline")

    assert handle.result(timeout=30) is True
    navigate(chromium, chromium.refresh,
             ec.text_to_be_present_in_element((By.ID, "dc-status"), "completed"),
             "workflow page after completion")
    assert chromium.find_element(By.ID, "dc-status").text == "completed"
    assert "by " + user.username in chromium.page_source  # the operator row in the timeline
    chromium.save_screenshot(str(ARTIFACTS / "admin-workflow-completed.png"))
    chromium.execute_script("document.getElementById('dc-timeline').scrollIntoView()")
    chromium.save_screenshot(str(ARTIFACTS / "admin-workflow-timeline.png"))
