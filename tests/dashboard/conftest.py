"""The dashboard's slow suites (`make test-dashboard`): Debian's Chromium driven by Playwright, and a real Prometheus.

Their tools come from deploy/dashboard/install-test-tools.sh. Where one is missing a test is
skipped, except in CI (CI set), where it fails. Screenshots of the pages go to
tests/output/dashboard/ (git-ignored; CI keeps them as artifacts).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from api.conftest import start_server, stop_server

SCREENSHOTS = ROOT / "tests" / "output" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
# what a headless browser needs here, and nothing that reaches out to the network by itself
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--metrics-recording-only", "--mute-audio"]


def need(tool: str, present: bool) -> None:
    if present:
        return
    why = f"{tool} is missing: deploy/dashboard/install-test-tools.sh installs it (make test-dashboard runs it)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, but {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def browser():
    need("chromium", Path(CHROMIUM).exists())
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        need("playwright (pip install -e '.[test]')", False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())  # the buttons' "are you sure?"
    yield page
    context.close()
    assert not errors, f"the page's script failed: {errors}"


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def prometheus_tools():
    need("prometheus", shutil.which("prometheus") is not None)
    need("promtool", shutil.which("promtool") is not None)
    return shutil.which("prometheus"), shutil.which("promtool")


@pytest.fixture
def server(settings, store, storage, bucket, tmp_path):
    """`spotbot serve` for the test (its environment extended per test); stopped, and its jobs cancelled, at the end."""
    from framework.scheduler import Scheduler

    servers = []

    def start(**env: str):
        env.setdefault("SPOTBOT_API_IMAGES_URI", f"s3://{bucket}/api/")
        running = start_server(settings, tmp_path / f"serve-{len(servers)}.log", **env)
        servers.append(running)
        return running

    yield start
    for running in servers:
        stop_server(running)
    scheduler = Scheduler(settings, store, storage)
    for job in store.jobs.list():
        if not job.status.terminal:
            scheduler.cancel(job.job_id, wait_seconds=10)
