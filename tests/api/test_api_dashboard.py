"""The dashboard over HTTP (no browser: tests/dashboard drives Chromium): its login and session cookie, the CSRF
header for changes, error groups and retry by signature through the API, pages of files, thumbnails, /metrics."""

from __future__ import annotations

import io
import re

from conftest import cli_env, register_echo, submit, upload

from framework.api.auth import CSRF_HEADER, SESSION_COOKIE

from .conftest import TOKEN, wait_for


def run_job(settings, storage, bucket) -> str:
    """A job of 4 good files, 3 failing ones and a PNG image (the echo bot takes .txt only: the image is a .txt too)."""
    register_echo(settings, file_types=".txt,.png")
    files = {f"in/ok{i}.txt": f"hello {i}" for i in range(4)}
    files.update({f"in/raise{i}.txt": "RAISE" for i in range(3)})
    upload(storage, bucket, files)
    code, job, stderr = submit(settings, bucket, env=cli_env(settings, SPOTBOT_MAX_ATTEMPTS="1"))
    assert code == 3, stderr
    return job["job_id"]


def session(api) -> tuple[dict[str, str], str]:
    """Log in as the page's script does; the session cookie and the page's CSRF value."""
    answer = api.post("/dashboard/session")
    assert answer.status_code == 204
    cookie = answer.cookies.get(SESSION_COOKIE)
    page = api.get("/dashboard", auth=False, cookies={SESSION_COOKIE: cookie})
    assert page.status_code == 200
    csrf = re.search(r'<meta name="spotbot-csrf" content="([0-9a-f]+)">', page.text).group(1)
    return {SESSION_COOKIE: cookie}, csrf


def test_the_login_trades_the_token_for_a_cookie_that_needs_the_csrf_header_to_change_things(api, settings, store,
                                                                                              storage, bucket):
    job_id = run_job(settings, storage, bucket)
    # without a session, a page answers the login (a redirect to it), and /metrics and the API answer 401
    page = api.get(f"/dashboard/jobs/{job_id}", auth=False, allow_redirects=False)
    assert page.status_code == 303 and page.headers["Location"] == f"/dashboard/login?next=/dashboard/jobs/{job_id}"
    login = api.get("/dashboard/login", auth=False)
    assert login.status_code == 401 and 'id="token"' in login.text and job_id not in login.text
    assert api.get("/metrics", auth=False).status_code == 401
    assert api.post("/dashboard/session", auth=False).status_code == 401
    assert api.post("/dashboard/session", auth=False, headers={"Authorization": "Bearer not-the-token-at-all"}).status_code == 401

    # the cookie: HttpOnly, SameSite=Strict, not the token; Secure where the browser speaks TLS (to a proxy in front)
    answer = api.post("/dashboard/session")
    header = answer.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header and "Secure" not in header and TOKEN not in header
    behind_tls = api.post("/dashboard/session", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in behind_tls.headers["set-cookie"]

    cookies, csrf = session(api)
    assert csrf and csrf not in cookies.values() and TOKEN not in csrf
    for path in ("/dashboard", f"/dashboard/jobs/{job_id}", f"/dashboard/jobs/{job_id}/files", "/dashboard/workers",
                 "/dashboard/endpoints", "/dashboard/bots", "/metrics", f"/jobs/{job_id}"):
        assert api.get(path, auth=False, cookies=cookies).status_code == 200, path
    assert "worker time" in api.get(f"/dashboard/jobs/{job_id}", auth=False, cookies=cookies).text  # what it cost
    # a change by cookie alone (what a cross-site form could send) is refused, with the header it goes through
    refused = api.post(f"/jobs/{job_id}/retry", auth=False, cookies=cookies, json={"errors_only": True})
    assert refused.status_code == 403 and CSRF_HEADER in refused.json()["message"]
    wrong = api.post(f"/jobs/{job_id}/retry", auth=False, cookies=cookies, json={"errors_only": True},
                     headers={CSRF_HEADER: "0" * 64})
    assert wrong.status_code == 403
    assert api.post("/dashboard/logout", auth=False, cookies=cookies).status_code == 403
    out = api.post("/dashboard/logout", auth=False, cookies=cookies, headers={CSRF_HEADER: csrf})
    assert out.status_code == 204 and f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    # a forged cookie is no session
    assert api.get("/metrics", auth=False, cookies={SESSION_COOKIE: "f" * 64}).status_code == 401
    assert TOKEN not in api.output()


def test_error_groups_and_a_retry_of_one_group_through_the_api(api, settings, store, storage, bucket):
    job_id = run_job(settings, storage, bucket)
    groups = api.get(f"/jobs/{job_id}/errors").json()
    assert groups["errors"] == 3 and [(g["signature"], g["count"]) for g in groups["groups"]] == [
        ("ValueError: asked to fail by <path>", 3)]
    unknown = api.post(f"/jobs/{job_id}/retry", json={"signature": "KeyError: nothing"})
    assert unknown.status_code == 404 and unknown.json()["field"] == "signature"
    cookies, csrf = session(api)
    retried = api.post(f"/jobs/{job_id}/retry", auth=False, cookies=cookies, headers={CSRF_HEADER: csrf},
                       json={"signature": groups["groups"][0]["signature"]})
    assert retried.status_code == 202, retried.text

    def retried_and_ended():
        job = api.get(f"/jobs/{job_id}").json()
        retry = [event for event in job["events"] if "retry 1:" in event]
        return job if retry and job["status"] == "COMPLETED_WITH_ERRORS" else None

    job = wait_for(retried_and_ended, 120, "the retried group to end again")
    assert any("retry 1: 3 file(s) re-opened (ERROR, error 'ValueError: asked to fail by <path>')" in event
               for event in job["events"])
    assert job["counts"]["COMPLETED"] == 4 and job["counts"]["ERROR"] == 3


def test_files_are_paged_by_key_and_filtered(api, settings, store, storage, bucket):
    job_id = run_job(settings, storage, bucket)
    page = api.get(f"/dashboard/jobs/{job_id}/files").text
    keys = re.findall(r'/files/[0-9a-f]{40}">(in/[^<]+)</a>', page)
    assert keys == ["in/ok0.txt", "in/ok1.txt", "in/ok2.txt", "in/ok3.txt", "in/raise0.txt", "in/raise1.txt",
                    "in/raise2.txt"]
    errors = api.get(f"/dashboard/jobs/{job_id}/files", params={"status": "ERROR"}).text
    assert re.findall(r'/files/[0-9a-f]{40}">(in/[^<]+)</a>', errors) == ["in/raise0.txt", "in/raise1.txt", "in/raise2.txt"]
    assert "ValueError: asked to fail by in/raise1.txt" in errors
    labelled = api.get(f"/dashboard/jobs/{job_id}/files", params={"label": "short", "prefix": "in/ok"}).text
    assert re.findall(r'/files/[0-9a-f]{40}">(in/[^<]+)</a>', labelled) == ["in/ok0.txt", "in/ok1.txt", "in/ok2.txt",
                                                                            "in/ok3.txt"]
    after = api.get(f"/dashboard/jobs/{job_id}/files", params={"after": "in/ok3.txt"}).text
    assert re.findall(r'/files/[0-9a-f]{40}">(in/[^<]+)</a>', after)[0] == "in/raise0.txt"
    file_id = re.search(r'/files/([0-9a-f]{40})">in/ok2.txt', page).group(1)
    detail = api.get(f"/dashboard/jobs/{job_id}/files/{file_id}").text
    assert "&#34;upper&#34;: &#34;HELLO 2&#34;" in detail and "short" in detail
    assert api.get(f"/dashboard/jobs/{job_id}/files/{'0' * 40}").status_code == 404


def test_an_image_file_gets_a_thumbnail_read_through_the_api(api, settings, store, storage, bucket):
    from PIL import Image

    register_echo(settings, file_types=".png")
    data = io.BytesIO()
    Image.new("RGB", (1200, 800), (200, 30, 30)).save(data, "PNG")
    upload(storage, bucket, {"in/red.png": data.getvalue(), "in/not-an-image.png": b"plain text"})
    code, job, stderr = submit(settings, bucket, env=cli_env(settings, SPOTBOT_MAX_ATTEMPTS="1"))
    page = api.get(f"/dashboard/jobs/{job['job_id']}/files").text
    red = re.search(r'files/([0-9a-f]{40})/thumbnail\?size=64" width="64" height="64">\s*</td>\s*<td><a[^>]*>in/red.png',
                    page)
    assert red, page
    thumb = api.get(f"/dashboard/jobs/{job['job_id']}/files/{red.group(1)}/thumbnail", params={"size": 100})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert "private" in thumb.headers["cache-control"]
    image = Image.open(io.BytesIO(thumb.content))
    assert image.size == (100, 67) and image.getpixel((50, 30))[0] > 150
    broken = re.search(r'files/([0-9a-f]{40})/thumbnail\?size=64" width="64" height="64">\s*</td>\s*<td><a[^>]*>in/not-an-image',
                       page).group(1)
    refused = api.get(f"/dashboard/jobs/{job['job_id']}/files/{broken}/thumbnail")
    assert refused.status_code == 415 and refused.json()["field"] == "file"
    assert api.get(f"/dashboard/jobs/{job['job_id']}/files/{red.group(1)}/thumbnail", auth=False,
                   allow_redirects=False).status_code == 303


def test_metrics_need_the_token_unless_public(serve, settings, store, storage, bucket):
    job_id = run_job(settings, storage, bucket)
    guarded = serve()
    assert guarded.get("/metrics", auth=False).status_code == 401
    text = guarded.get("/metrics").text
    assert f'spotbot_job_files{{job_id="{job_id}",bot="echo",status="ERROR"}} 3' in text
    assert f'spotbot_job_files{{job_id="{job_id}",bot="echo",status="COMPLETED"}} 4' in text
    assert 'spotbot_bot_files_failed_total{bot="echo"} 3' in text
    assert 'spotbot_file_processing_seconds_count{bot="echo"} 4' in text
    assert f'spotbot_job_files_in_flight{{job_id="{job_id}"}} 0' in text
    worked = re.search(rf'spotbot_job_worker_seconds_total{{job_id="{job_id}"}} ([0-9.]+)', text)
    assert worked and float(worked.group(1)) > 0
    assert "in/ok0.txt" not in text  # no file names as labels
    public = serve(SPOTBOT_METRICS_PUBLIC="true")
    answer = public.get("/metrics", auth=False)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert public.get("/jobs", auth=False).status_code == 401  # only /metrics opens
