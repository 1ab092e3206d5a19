"""The dashboard in a real browser (Debian's Chromium, driven by Playwright): a job with failing files runs while
its page refreshes itself to the end, its error groups show the right counts, "retry this group" reruns only that
group's files, and a page asked for without the token shows the login."""

from __future__ import annotations

import json
import re

from conftest import register_echo, upload, wait_for

from api.conftest import TOKEN

RAISE = "ValueError: asked to fail by <path>"
BAD_RESULT = ("TypeError: main_task returned a dict that is not JSON-serializable: Object of type set is not JSON "
              "serializable")


def log_in(page, url: str) -> None:
    page.goto(url)
    assert "/dashboard/login" in page.url
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(url) + "$"))


def shown(page) -> dict:
    """What the job page shows now: its status, files ended of all, and the error groups (signature -> count)."""
    return page.evaluate("""() => ({
        status: document.querySelector("h1 .badge").textContent,
        done: [...document.querySelectorAll("#done b")].map(b => parseInt(b.textContent, 10)),
        groups: Object.fromEntries([...document.querySelectorAll("#error-groups tr.group")]
                                   .map(row => [row.dataset.signature, parseInt(row.querySelector(".count").textContent, 10)])),
        marker: window.__loadedOnce === true,
    })""")


def test_a_job_runs_to_its_end_on_the_page_and_one_error_group_is_retried(server, page, screenshot, settings, store,
                                                                          storage, bucket, tmp_path):
    # Given a server, and a job whose files take a while, 3 of which raise and 2 return what cannot be stored
    calls = tmp_path / "calls.jsonl"
    api = server(SPOTBOT_MAX_ATTEMPTS="1", ECHO_CALLS_LOG=str(calls), SPOTBOT_CHUNK_SIZE="4")
    register_echo(settings)
    files = {f"in/ok{i:02d}.txt": "SLOW 0.4 hello" for i in range(20)}
    files.update({f"in/raise{i}.txt": "RAISE" for i in range(3)})
    files.update({f"in/sub/bad{i}.txt": "BADRESULT" for i in range(2)})
    upload(storage, bucket, files)
    submitted = api.post("/jobs", json={"bot": "echo", "input": f"s3://{bucket}/in/", "output": f"s3://{bucket}/out/",
                                        "workers": 2})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]

    # When its page is open while it runs
    url = f"{api.url}/dashboard/jobs/{job_id}"
    log_in(page, url)
    page.evaluate("() => { window.__loadedOnce = true; }")  # gone if the page reloaded instead of refreshing its <main>
    seen = []

    def ended():
        now = shown(page)
        seen.append(now["done"][0] if now["done"] else None)
        return now if now["status"] == "COMPLETED_WITH_ERRORS" else None

    final = wait_for(ended, 120, "the page to show the job ended")

    # Then its progress moved to the end in place, and the error groups show the right counts
    ends = [value for value in seen if value is not None]
    assert final["done"] == [25, 25] and final["marker"], final
    assert len(set(ends)) >= 2 and min(ends) < 25, f"the page never showed the job part-way: {seen}"
    assert final["groups"] == {RAISE: 3, BAD_RESULT: 2}
    page.locator("#chart-counts polyline").first.wait_for()  # the charts come after the page
    assert page.locator("#chart-counts polyline").count() == 2  # COMPLETED and ERROR over time
    screenshot(page, "job")

    # When "retry this group" is pressed for the group of bad results
    calls.write_text("")
    page.locator(f'#error-groups tr[data-signature="{BAD_RESULT}"] button.retry-group').click()

    # Then only its two files ran again; they failed again, so the groups keep their counts
    def retried():
        events = page.locator(".events li").all_inner_texts()
        now = shown(page)
        return now if any("retry 1: 2 file(s) re-opened" in e for e in events) and now["status"] == "COMPLETED_WITH_ERRORS" \
            else None

    again = wait_for(retried, 120, "the page to show the retried group ended")
    assert again["groups"] == {RAISE: 3, BAD_RESULT: 2} and again["done"] == [25, 25]
    ran = sorted(json.loads(line)["key"] for line in calls.read_text().splitlines())
    assert ran == ["in/sub/bad0.txt", "in/sub/bad1.txt"]
    assert page.locator("#notice").inner_text().startswith("done:")

    # and the other pages show the job, its files and the rest
    page.goto(f"{api.url}/dashboard")
    row = page.locator(f'tr[data-job="{job_id}"]')
    assert row.locator(".done").inner_text() == "25" and row.locator(".total").inner_text() == "25"
    screenshot(page, "jobs")
    page.goto(f"{url}/files?status=ERROR")
    assert page.locator("table.files tbody tr").count() == 5
    screenshot(page, "files")
    page.click("text=in/raise1.txt")
    assert "ValueError: asked to fail by in/raise1.txt" in page.locator("pre.error").inner_text()
    screenshot(page, "file")
    for name in ("workers", "endpoints", "bots"):
        page.goto(f"{api.url}/dashboard/{name}")
        assert page.locator("h1").inner_text() == name.capitalize()
        screenshot(page, name)
    assert page.locator("text=echo-upper").count() >= 1


def test_a_page_without_the_token_shows_the_login(server, browser, screenshot, settings, store):
    api = server()
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{api.url}/dashboard/workers")
        assert "/dashboard/login?next=/dashboard/workers" in page.url
        assert page.locator("#token").is_visible() and page.locator("nav").count() == 0
        screenshot(page, "login")
        page.fill("#token", "not-the-token-of-this-server")
        page.click("button[type=submit]")
        page.locator("#login-error").wait_for(state="visible")
        assert "/dashboard/login" in page.url
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{api.url}/dashboard/workers")
        assert page.locator("h1").inner_text() == "Workers"
        cookie = next(c for c in context.cookies() if c["name"] == "spotbot_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != TOKEN
        assert page.evaluate("() => document.cookie") == ""  # the page's own scripts cannot read it
        page.click("#logout")
        page.wait_for_url(re.compile(r".*/dashboard/login$"))
        page.goto(f"{api.url}/dashboard")
        assert "/dashboard/login" in page.url
    finally:
        context.close()
