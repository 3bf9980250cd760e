"""A real browser (headless Chromium) on the operator pages: a failed activity's origin, the
timeline of a parallel workflow, a bulk interrupt, the workers page. Every navigation waits
explicitly for the page it leads to; screenshots of each page go to ``test-artifacts/``."""

from __future__ import annotations

import pytest

from tests.admin import ops_workflows as ow
from tests.admin.browser_support import login, open_page, screenshot, submit_and_wait
from tests.admin.helpers import detail_url, wait_history, wait_status
from tests.e2e import workflows as wf

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_failed_activity_page_shows_the_exception_type_and_raising_function(
        live_url, chromium, durable, make_user, uid):
    from selenium.webdriver.common.by import By

    handle = durable.start(ow.ops_missing_order, f"o-{uid}", workflow_id=f"br-key-{uid}")
    wait_status(handle, "failed")
    user = make_user(operate=True)
    login(chromium, live_url, user.username, f"pw-{uid}")

    open_page(chromium, f"{live_url}/admin/durable_celery/workflowexecution/?q={uid}",
              "#result_list")
    submit_and_wait(chromium, chromium.find_element(By.LINK_TEXT, handle.workflow_id),
                    "#dc-error")
    error = chromium.find_element(By.ID, "dc-error")
    assert error.find_element(By.CLASS_NAME, "dc-error-type").text == "KeyError"
    assert error.find_element(By.CLASS_NAME, "dc-origin").text.startswith("lookup_order (")
    traceback = error.find_element(By.CSS_SELECTOR, "#dc-tb-workflow pre")
    assert not traceback.is_displayed()  # collapsed until asked for
    error.find_element(By.CSS_SELECTOR, "#dc-tb-workflow summary").click()
    assert traceback.is_displayed() and "in lookup_order" in traceback.text
    attempts = chromium.find_elements(By.CSS_SELECTOR, "tr.dc-attempt[data-outcome=failed]")
    assert len(attempts) == 2
    assert all("KeyError" in row.text for row in attempts)
    screenshot(chromium, "ops-failed-activity")


def test_timeline_renders_bars_for_a_parallel_workflow(live_url, chromium, durable, make_user,
                                                       uid):
    from selenium.webdriver.common.by import By

    handle = durable.start(ow.ops_parallel, f"p-{uid}", 3, 0.5, workflow_id=f"br-par-{uid}")
    assert len(handle.result(timeout=60)) == 3
    user = make_user()
    login(chromium, live_url, user.username, f"pw-{uid}")
    open_page(chromium, live_url + detail_url(handle.workflow_id), "#dc-gantt")
    bars = chromium.find_elements(
        By.CSS_SELECTOR, ".dc-lane[data-kind=activity] .dc-seg-attempt-completed")
    assert len(bars) == 3
    boxes = [(bar.rect["x"], bar.rect["x"] + bar.rect["width"]) for bar in bars]
    assert all(width > 20 for width in (end - start for start, end in boxes)), boxes
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(boxes) for b in boxes[i + 1:])
    sleep = chromium.find_element(By.CSS_SELECTOR, ".dc-lane[data-kind=sleep] .dc-seg-wait-sleep")
    assert sleep.rect["x"] >= max(end for _, end in boxes) - 5  # the wait follows the branches
    screenshot(chromium, "ops-timeline-parallel")


def test_bulk_interrupt_of_three_workflows(live_url, chromium, durable, make_user, uid):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    handles = [durable.start(wf.approval, f"{uid}-{i}", workflow_id=f"br-bulk-{i}-{uid}")
               for i in range(3)]
    for handle in handles:
        wait_history(handle, lambda rows: any(r["kind"] == "wait" for r in rows))
    user = make_user(operate=True)
    login(chromium, live_url, user.username, f"pw-{uid}")

    open_page(chromium, f"{live_url}/admin/durable_celery/workflowexecution/?q=br-bulk-",
              "#result_list")
    for handle in handles:
        row = chromium.find_element(By.LINK_TEXT, handle.workflow_id).find_element(
            By.XPATH, "./ancestor::tr")
        row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    Select(chromium.find_element(By.NAME, "action")).select_by_value("bulk_interrupt")
    screenshot(chromium, "ops-list-selected")
    submit_and_wait(chromium, chromium.find_element(By.CSS_SELECTOR, "button[name=index]"),
                    "#dc-bulk-runs")
    listed = chromium.find_elements(By.CSS_SELECTOR, "#dc-bulk-runs tr.dc-bulk-act")
    assert sorted(r.find_element(By.TAG_NAME, "a").text for r in listed) == sorted(
        h.workflow_id for h in handles)
    chromium.find_element(By.NAME, "reason").send_keys("bulk from the browser")
    screenshot(chromium, "ops-bulk-confirm")
    submit_and_wait(chromium, chromium.find_element(By.ID, "dc-confirm"), "ul.messagelist")
    assert "Interrupted 3 workflow(s)" in chromium.find_element(
        By.CSS_SELECTOR, "ul.messagelist").text
    screenshot(chromium, "ops-list-after-bulk")
    for handle in handles:
        assert handle.status() == "interrupted"
        operator = [r for r in handle.history() if r["kind"] == "operator"]
        assert [(r["name"], r["input"]["user"], r["input"]["reason"]) for r in operator] == [
            ("interrupt", user.username, "bulk from the browser")]

    open_page(chromium, live_url + detail_url(handles[0].workflow_id), "#dc-history")
    assert f"by {user.username}" in chromium.find_element(By.ID, "dc-history").text
    screenshot(chromium, "ops-workflow-interrupted")


def test_retrying_run_and_workers_pages(live_url, chromium, durable, make_user, uid):
    from selenium.webdriver.common.by import By

    from durable_celery.models import ActivityAttempt
    from tests.e2e.helpers import wait_until

    handle = durable.start(ow.ops_keeps_retrying, f"r-{uid}", workflow_id=f"br-retry-{uid}")
    wait_until(lambda: ActivityAttempt.objects.filter(
        event__execution__workflow_id=handle.workflow_id).exists(), what="a failed attempt")
    user = make_user(operate=True)
    login(chromium, live_url, user.username, f"pw-{uid}")
    try:
        open_page(chromium, f"{live_url}/admin/durable_celery/workflowexecution/"
                            f"?health=retrying&q={uid}", "#result_list")
        row = chromium.find_element(By.LINK_TEXT, handle.workflow_id).find_element(
            By.XPATH, "./ancestor::tr")
        assert "retrying" in row.text and "ValueError" in row.text
        screenshot(chromium, "ops-list-retrying")
        submit_and_wait(chromium, chromium.find_element(By.LINK_TEXT, handle.workflow_id),
                        "#dc-retrying")
        assert chromium.find_element(By.ID, "dc-next-retry").text
        screenshot(chromium, "ops-workflow-retrying")
        # the page reloads itself while the run is active, and keeps an opened traceback open
        chromium.find_element(By.CSS_SELECTOR, "details.dc-tb summary").click()
        opened = chromium.find_element(By.CSS_SELECTOR, "details.dc-tb").get_attribute("id")
        marker = chromium.execute_script("window.dcMarker = 1; return window.dcMarker")
        assert marker == 1
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(chromium, 20).until(
            lambda d: d.execute_script("return window.dcMarker === undefined"))
        WebDriverWait(chromium, 20).until(
            lambda d: d.find_element(By.ID, opened).get_attribute("open") is not None)

        open_page(chromium, f"{live_url}/admin/durable_celery/worker/", "#dc-queues")
        assert chromium.find_elements(By.CSS_SELECTOR, "#dc-live-workers tr.dc-worker")
        consumed = chromium.find_element(By.CSS_SELECTOR, "tr.dc-queue[data-queue=durable]")
        assert consumed.get_attribute("data-consumed") == "yes"
        screenshot(chromium, "ops-workers")
    finally:
        handle.interrupt()
