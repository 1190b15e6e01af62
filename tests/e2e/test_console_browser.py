"""The operator's console in a real browser (headless Chromium through Selenium) on the whole
running pipeline, served by its own process (`accessa run console`, as ops; the `console`
fixture): sign in with `accessa console`'s link, watch an upload complete without a reload,
read its document page, redrive a dead letter through the confirmation step.

The screenshots it takes are the README's (docs/console-*.png)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from accessa.ops.localrun import REPO, LocalPipeline
from mocks.policy_pdf import make_policy_pdf

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
DOCS = REPO / "docs"
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "needs Debian's chromium and chromium-driver (make system-packages)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def login_url(pipeline: LocalPipeline, operator: str = "oncall") -> str:
    out = subprocess.run(
        [sys.executable, "-m", "accessa.cli.main", "console", "--operator", operator, "--json"],
        env=pipeline.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)["url"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None  # else the module was skipped
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def signed_in(browser: WebDriver, pipeline: LocalPipeline, console: str) -> WebDriver:
    browser.get(login_url(pipeline))
    wait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-stage]"))
    return browser


def wait(driver: WebDriver, timeout: float) -> WebDriverWait:
    """Polls a DOM condition; a region swapped by the page's refresh mid-read is read again."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=ignored)


def mock_openai(pipeline: LocalPipeline, **config: object) -> None:
    httpx.post(f"{pipeline.openai_url}/_mock/config", json=config, timeout=10).raise_for_status()


def upload(pipeline: LocalPipeline, name: str) -> str:
    """A policy PDF of its own text (no embedding-cache hits), uploaded by a fresh user."""
    pdf = make_policy_pdf(seed=random.randrange(1 << 30), pages=4)
    with httpx.Client(
        base_url=pipeline.api_url,
        timeout=120,
        headers={"Authorization": f"Bearer {pipeline.token(uuid.uuid4())}"},
    ) as client:
        response = client.post("/api/v2/documents", files={"file": (name, pdf, "application/pdf")})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def read(driver: WebDriver, selector: str, expr: str) -> Any:
    """`expr` of the first element matching `selector` (None if none), read in one script so
    the page's live refresh cannot swap the element away between two reads."""
    return driver.execute_script(
        f"const el = document.querySelector(arguments[0]); return el ? ({expr}) : null;",
        selector,
    )


def read_all(driver: WebDriver, selector: str, expr: str) -> list:
    return driver.execute_script(
        f"return [...document.querySelectorAll(arguments[0])].map(el => ({expr}));", selector
    )


def screenshot(driver: WebDriver, name: str, *, whole: bool = False) -> None:
    """The window, or the whole page (the window grown to the document's height), in docs/."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    if whole:
        driver.set_window_size(1400, min(height + 140, 2400))
    assert driver.save_screenshot(str(DOCS / name)), f"could not write {DOCS / name}"
    driver.set_window_size(1400, 1000)


def test_a_login_link_signs_in_once(
    browser: WebDriver, pipeline: LocalPipeline, console: str
) -> None:
    url = login_url(pipeline, "first-use")
    assert url.startswith(f"{console}/console/login?token=")  # the console process, not the API
    assert httpx.get(f"{pipeline.api_url}/console/", timeout=30).status_code == 404
    browser.get(url)
    assert browser.find_elements(By.CSS_SELECTOR, "[data-stage]"), browser.page_source[:500]
    assert "first-use" in browser.find_element(By.CSS_SELECTOR, "header .who").text
    browser.get(url)
    assert "already used or has expired" in browser.page_source


def test_an_upload_goes_from_queued_to_complete_on_the_open_page(
    signed_in: WebDriver, pipeline: LocalPipeline, console: str
) -> None:
    driver = signed_in
    driver.get(f"{console}/console/")
    driver.execute_script("window.notReloaded = true")
    # Embedding slow enough that the job is on its way for more than two of the page's 2 s
    # refreshes (at 1.5 s a fast pipeline finished between two, and the page saw only "done").
    mock_openai(pipeline, latency_ms=5000)
    try:
        job_id = upload(pipeline, "live-policy.pdf")
        seen: list[str | None] = [None]

        def state(d: WebDriver) -> str | None:
            now = read(d, f'tr[data-job="{job_id}"]', "el.dataset.state")
            if now != seen[-1]:
                seen.append(now)
            return now

        wait(driver, 60).until(lambda d: state(d) not in (None, "done"))
        wait(driver, 240).until(lambda d: state(d) == "done")
    finally:
        mock_openai(pipeline, latency_ms=0)
    assert seen[1] in ("queued", "working") and seen[-1] == "done", seen
    assert driver.execute_script("return window.notReloaded") is True  # updated in place
    badge = read(driver, f'tr[data-job="{job_id}"] .badge', "[el.textContent, el.className]")
    assert badge == ["done", "badge ok"]
    screenshot(driver, "console-pipeline.png", whole=True)

    driver.get(read(driver, f'tr[data-job="{job_id}"] a', "el.href"))
    labels = read_all(driver, "#waterfall .wf-label", "el.textContent")
    assert len(labels) >= 5 and labels[0] == "queued" and labels[-1] == "complete", labels
    headings = read_all(driver, "#chunks tbody .heading", "el.textContent")
    assert len(headings) > 1 and any(headings), headings
    screenshot(driver, "console-document.png", whole=True)

    driver.get(f"{console}/console/jobs")
    assert read(driver, f'#jobs tr[data-job="{job_id}"] .badge', "el.textContent") == "done"
    screenshot(driver, "console-jobs.png")
    driver.get(f"{console}/console/cost")
    assert read_all(driver, "#cost-users tbody tr td a", "el.textContent")
    screenshot(driver, "console-cost.png")


def test_a_dead_letter_is_redriven_after_confirmation_and_its_job_completes(
    signed_in: WebDriver, pipeline: LocalPipeline, console: str
) -> None:
    driver = signed_in
    mock_openai(pipeline, fail_next=[400])  # a permanent refusal: the embedder dead-letters it
    job_id = upload(pipeline, "refused-policy.pdf")
    driver.get(f"{console}/console/jobs/{job_id}")
    wait(driver, 240).until(lambda d: read(d, "#job-state", "el.dataset.state") == "deadletter")
    assert "provider_rejected_input" in read(driver, ".error-box", "el.textContent")

    driver.get(f"{console}/console/dlq")
    record = read(driver, f'#dlq tr:has(a[href$="{job_id}"]) td a', "el.href")
    assert record, "the dead letter is not listed"
    screenshot(driver, "console-dlq.png")
    driver.get(record)
    driver.find_element(By.ID, "redrive").click()  # the first click only asks
    wait(driver, 30).until(lambda d: d.find_elements(By.ID, "confirm-redrive"))
    question = read(driver, "#confirm-redrive", "el.textContent")
    assert "Redrive this record to the embedder stage?" in question
    screenshot(driver, "console-redrive-confirm.png")
    driver.find_element(By.ID, "redrive-confirm").click()

    back = f"/console/jobs/{job_id}?notice=redriven"
    wait(driver, 30).until(lambda d: d.current_url.endswith(back))
    driver.execute_script("window.notReloaded = true")
    wait(driver, 240).until(lambda d: read(d, "#job-state", "el.dataset.state") == "done")
    assert driver.execute_script("return window.notReloaded") is True
    actors = read_all(driver, "#document-live td", "el.textContent")
    assert "console:oncall" in actors  # the reopening is in the audit trail
