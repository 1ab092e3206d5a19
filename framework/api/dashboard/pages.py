"""The dashboard's pages: jobs, one job, its files and one file, workers, endpoints, bots, and the login.

Server-rendered; a page that shows something still running asks to be refreshed, and the
page's script fetches it again with the X-Spotbot-Fragment header to swap in its <main>
alone. Every summary comes from an aggregation or a page of a search, never from reading
all of a job's files.
"""

from __future__ import annotations

import json
import urllib.parse

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from ...costs import job_cost
from ...endpoints import EndpointManager
from ...errors import NotFound
from ...launchers import launcher
from ...models import JOB_ID_PATTERN, FileStatus, Job, now_ms
from ..auth import CSRF_HEADER, SESSION_COOKIE, TokenCheck
from ..state import Api, api
from . import views
from .render import Renderer

router = APIRouter(prefix="/dashboard", include_in_schema=False)
JobId = Path(pattern=JOB_ID_PATTERN.pattern)
FileId = Path(pattern=r"^[0-9a-f]{40}$")
REFRESH_MS = 2000
FILES_PER_PAGE = 50
SESSION_HOURS = 12
LOG_LINES = 500


def renderer(request: Request) -> Renderer:
    return request.app.state.dashboard


def _job_view(state: Api, job: Job) -> views.JobView:
    counts, in_flight = state.store.jobs.shown(job)
    view = views.job_view(job, counts)
    spent = job_cost(job, counts, state.settings)
    view.in_flight, view.worker_seconds, view.cost = in_flight, spent["worker_seconds"], spent.get("cost")
    return view


@router.get("", response_class=HTMLResponse)
def jobs_page(request: Request, state: Api = Depends(api), page: Renderer = Depends(renderer)) -> Response:
    jobs = [_job_view(state, job) for job in state.store.jobs.list(limit=200)]
    running = any(not view.job.status.terminal for view in jobs)
    return page.render(request, "jobs.html", title="Jobs", nav="jobs", jobs=jobs, refresh=REFRESH_MS if running else 0)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str = JobId, state: Api = Depends(api),
             page: Renderer = Depends(renderer)) -> Response:
    job = state.store.jobs.get(job_id)
    view = _job_view(state, job)
    groups = state.store.reports.error_groups(job_id, size=20, examples=3)
    beats = state.store.reports.heartbeats(job_id, state.settings.lease_seconds)
    workers = [views.WorkerView(worker, **beats.get(worker.id, {}))
               for worker in sorted(job.workers.values(), key=lambda w: (w.started_at, w.id), reverse=True)]
    endpoints = _bot_endpoints(state, job.bot)
    return page.render(request, "job.html", title=f"Job {job_id}", nav="jobs", view=view, job=job, groups=groups,
                       workers=workers, endpoints=endpoints, events=list(reversed(job.events[-20:])),
                       refresh=0 if job.status.terminal else REFRESH_MS)


@router.get("/jobs/{job_id}/charts", response_class=HTMLResponse)
def job_charts(request: Request, job_id: str = JobId, state: Api = Depends(api),
               page: Renderer = Depends(renderer)) -> Response:
    """The job page's charts, fetched by its script after the page: the timeline is its costliest aggregation."""
    job = state.store.jobs.get(job_id)
    start = job.running_at or job.created_at
    interval, points = state.store.reports.timeline(job_id, start, job.finished_at or now_ms())
    counts_chart, rate_chart = views.charts(interval, points, {})
    return page.render(request, "charts.html", title="", nav="", counts_chart=counts_chart, rate_chart=rate_chart)


def _bot_endpoints(state: Api, bot_name: str) -> list[dict]:
    """The bot's endpoints: recorded state, and whether each answers now (asked only of those recorded in service)."""
    try:
        specs = state.store.bots.get(bot_name).endpoints()
    except NotFound:
        return []
    manager = EndpointManager(state.settings, state.store)
    out = []
    for spec in specs:
        found = state.store.endpoints.get(spec.name)
        endpoint = found[0] if found else None
        healthy = None
        if endpoint is not None and endpoint.status.value == "IN_SERVICE":
            healthy = manager.backend(endpoint.backend).healthy(endpoint)
        out.append({"name": spec.name, "image": spec.image, "endpoint": endpoint, "healthy": healthy})
    return out


@router.get("/jobs/{job_id}/files", response_class=HTMLResponse)
def files_page(request: Request, job_id: str = JobId,
               status: FileStatus | None = Query(None), label: str | None = Query(None, max_length=512),
               prefix: str | None = Query(None, max_length=1024), signature: str | None = Query(None, max_length=1000),
               after: str | None = Query(None, max_length=1024),
               state: Api = Depends(api), page: Renderer = Depends(renderer)) -> Response:
    job = state.store.jobs.get(job_id)
    found = state.store.reports.files_page(job_id, status=status.value if status else None, label=label or None,
                                           prefix=prefix or None, signature=signature or None, after=after or None,
                                           size=FILES_PER_PAGE)
    filters = {"status": status.value if status else "", "label": label or "", "prefix": prefix or "",
               "signature": signature or ""}
    kept = {k: v for k, v in filters.items() if v}
    next_url = f"?{urllib.parse.urlencode({**kept, 'after': found.next})}" if found.next else ""
    return page.render(request, "files.html", title=f"Files of {job_id}", nav="jobs", job=job, files=found.files,
                       filters=filters, statuses=[s.value for s in FileStatus], next_url=next_url, after=after,
                       first_url=f"?{urllib.parse.urlencode(kept)}")


@router.get("/jobs/{job_id}/files/{file_id}", response_class=HTMLResponse)
def file_page(request: Request, job_id: str = JobId, file_id: str = FileId, state: Api = Depends(api),
              page: Renderer = Depends(renderer)) -> Response:
    task = state.store.reports.file(job_id, file_id)
    if task is None:
        raise NotFound(f"job {job_id} has no file {file_id}")
    output = json.dumps(task.output, indent=2, ensure_ascii=False, default=str) if task.output is not None else ""
    return page.render(request, "file.html", title=task.file_key, nav="jobs", job_id=job_id, file_id=file_id,
                       task=task, output=output)


@router.get("/jobs/{job_id}/workers/{worker_id}/logs", response_class=PlainTextResponse)
def worker_logs(job_id: str = JobId, worker_id: str = Path(max_length=256), state: Api = Depends(api)) -> Response:
    """The last lines the worker printed, read through the launcher that ran it."""
    job = state.store.jobs.get(job_id)
    worker = job.workers.get(worker_id)
    if worker is None:
        raise NotFound(f"job {job_id} has no worker {worker_id!r}")
    lines: list[str] = []
    for line in launcher(state.settings, worker.backend).logs(worker, follow=False):
        lines.append(line)
        if len(lines) > LOG_LINES:
            lines.pop(0)
    return PlainTextResponse("\n".join(lines) + "\n" if lines else "(no output yet)\n")


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request, state: Api = Depends(api), page: Renderer = Depends(renderer)) -> Response:
    jobs = [job for job in state.store.jobs.list(limit=200) if job.workers and
            (not job.status.terminal or any(w.state in views.LIVE for w in job.workers.values()))]
    rows = []
    for job in jobs:
        beats = state.store.reports.heartbeats(job.job_id, state.settings.lease_seconds)
        for worker in sorted(job.workers.values(), key=lambda w: (w.started_at, w.id), reverse=True):
            rows.append((job, views.WorkerView(worker, **beats.get(worker.id, {}))))
    return page.render(request, "workers.html", title="Workers", nav="workers", rows=rows,
                       refresh=REFRESH_MS if jobs else 0)


@router.get("/endpoints", response_class=HTMLResponse)
def endpoints_page(request: Request, state: Api = Depends(api), page: Renderer = Depends(renderer)) -> Response:
    endpoints = EndpointManager(state.settings, state.store).list()
    return page.render(request, "endpoints.html", title="Endpoints", nav="endpoints", endpoints=endpoints)


@router.get("/bots", response_class=HTMLResponse)
def bots_page(request: Request, state: Api = Depends(api), page: Renderer = Depends(renderer)) -> Response:
    return page.render(request, "bots.html", title="Bots", nav="bots", bots=state.store.bots.list())


# --- the session -----------------------------------------------------------------------------------

login = APIRouter(prefix="/dashboard", include_in_schema=False)


@login.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = Query("/dashboard", max_length=2048),
               page: Renderer = Depends(renderer)) -> Response:
    """The form that asks for the token; its script trades it for the session cookie at POST /dashboard/session."""
    target = next if next.startswith("/dashboard") and "//" not in next else "/dashboard"
    return page.render(request, "login.html", title="Log in", nav="", target=target, status_code=401)


def session_routes(check: TokenCheck) -> APIRouter:
    """POST /dashboard/session (the bearer token in, the cookie out) and POST /dashboard/logout."""
    routes = APIRouter(prefix="/dashboard", include_in_schema=False)

    @routes.post("/session", status_code=204, dependencies=[Depends(check)])
    def start_session(request: Request) -> Response:
        response = Response(status_code=204)
        response.set_cookie(SESSION_COOKIE, check.session, max_age=SESSION_HOURS * 3600, path="/", httponly=True,
                            samesite="strict", secure=_over_tls(request))
        return response

    @routes.post("/logout", status_code=204)
    def end_session(request: Request) -> Response:
        if request.headers.get(CSRF_HEADER) != check.csrf and check.required:
            return Response(status_code=403)  # a cross-site page may not log the user out either
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_over_tls(request))
        return response

    return routes


def _over_tls(request: Request) -> bool:
    """Secure cookies where the browser speaks TLS: to us, or to a proxy in front that says so."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"

