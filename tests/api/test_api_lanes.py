"""Cancels never queue behind scans (issue 14, item 8): the API's long work runs in lanes, and a cancel has its own.

The real app served by uvicorn on a free port, over the test's real Elasticsearch and S3; the threads that scan
are filled with work that does not end until the test lets it (as long scans of millions of keys would)."""

from __future__ import annotations

import threading
import time

import pytest
import requests
import uvicorn
from pydantic import SecretStr

from framework.api.app import build, create_app
from framework.endpoints.process import free_port
from framework.models import Job, JobStatus

from .conftest import TOKEN, wait_for

BLOCKERS = 16  # more than the background has threads in all, on main and now


@pytest.fixture
def served(settings, store):
    """(the app's services, its URL): the app served by uvicorn in this process, so the test can fill its lanes."""
    services = build(settings.model_copy(update={"api_token": SecretStr(TOKEN)}))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(services.settings, services=services), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to start")
    yield services, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_a_cancel_and_a_close_never_wait_behind_scans(served, store):
    # Given every thread that scans busy with work that will not end by itself
    services, url = served
    release = threading.Event()
    held = [services.background.run(f"a long scan {i}", lambda: release.wait(120)) for i in range(BLOCKERS)]
    # and a running batch job and a long-running job taking files
    store.jobs.create(Job(job_id="busy-1", bot="echo", input_uri="s3://b/in/", output_uri="s3://b/out/",
                          status=JobStatus.RUNNING))
    store.jobs.create(Job(job_id="open-1", bot="echo", input_uri="s3://b/in/", output_uri="s3://b/out/",
                          status=JobStatus.RUNNING, accepting=True))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        # When the first is cancelled and the second closed
        started = time.monotonic()
        cancelled = requests.post(f"{url}/jobs/busy-1/cancel", headers=headers, timeout=60)
        took = time.monotonic() - started
        closed = requests.post(f"{url}/jobs/open-1/close", headers=headers, timeout=60)

        # Then the cancel's answer already shows the job CANCELLED: it did not wait for a scan's thread
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["status"] == "CANCELLED", cancelled.json()
        assert store.jobs.get("busy-1").status == JobStatus.CANCELLED
        assert closed.status_code == 200 and closed.json()["accepting"] is False, closed.text
        assert not any(future.done() for future in held)  # the scans were holding their threads all along
        print(f"\ncancel answered CANCELLED in {took:.2f} s with {BLOCKERS} scans holding the scan lane")
    finally:
        release.set()
