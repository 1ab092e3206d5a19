"""/jobs: submit (202, the scan goes on in the background), list, status with counts, results paged, cancel, retry, close."""

from __future__ import annotations

import threading
import time

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..costs import job_cost
from ..errors import NotFound, WrongState
from ..models import JOB_ID_PATTERN, NAME_PATTERN, FileStatus, Job, JobStatus, WorkerState
from .background import CONTROL
from .errors import responses
from .state import Api, api

router = APIRouter(prefix="/jobs", tags=["jobs"])
JobId = Path(pattern=JOB_ID_PATTERN.pattern, description="the job's id")
# how long a cancel request waits to show the job CANCELLED before it answers (the draining goes on)
CANCEL_SHOWN_WITHIN = 5.0
EVENTS_SHOWN = 20


class JobSubmission(BaseModel):
    """A job to run: the CLI's `spotbot submit` options."""

    model_config = ConfigDict(extra="forbid")

    bot: str = Field(pattern=NAME_PATTERN.pattern, description="a registered bot's name")
    input: str = Field(max_length=2048, description="s3://bucket/prefix of the files to process")
    output: str = Field(max_length=2048, description="s3://bucket/prefix where results go")
    workers: int | None = Field(None, ge=1, le=1024, description="bot workers (default: SPOTBOT_WORKERS)")
    job_id: str | None = Field(None, pattern=JOB_ID_PATTERN.pattern,
                               description="the job's id; submitting an existing id resumes that job")
    incremental: bool = Field(False, description="skip files whose object version has a COMPLETED result of this bot "
                                                 "with the same model fingerprint (they end SKIPPED)")


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    errors_only: bool = Field(False, description="re-run ERROR files only (default: every file not COMPLETED)")
    workers: int | None = Field(None, ge=1, le=1024, description="bot workers (default: as the job had)")
    concurrency: int | None = Field(None, ge=1, le=256, description="files each worker works at once (default: as the job had)")
    signature: str | None = Field(None, min_length=1, max_length=1000,
                                  description="re-run only the ERROR files of this error group (GET /jobs/{job_id}/errors)")


class WorkerOut(BaseModel):
    id: str
    batch_id: int
    state: WorkerState
    exit_code: int | None = None
    reason: str = ""


class JobOut(BaseModel):
    """A job's state and its files' counts per status (fresh while it runs, final once it ended)."""

    job_id: str
    bot: str
    status: JobStatus
    input: str
    output: str
    total: int
    counts: dict[str, int]
    accepting: bool = Field(description="a long-running job that still takes files")
    error: str | None = None
    workers: list[WorkerOut]
    events: list[str] = Field(description=f"the last {EVENTS_SHOWN} things that happened to the job")
    created_at: int
    running_at: int | None = None
    finished_at: int | None = None
    in_flight: int | None = Field(None, description="files being worked now (while the job runs)")
    cost: dict | None = Field(None, description="worker_seconds, files_per_worker_hour and, with "
                                               "SPOTBOT_COST_PER_WORKER_HOUR, cost, cost_per_1000_files, cost_at_end")
    settling: str | None = Field(None, description="what the verb still does in the background: the state shown is "
                                                   "the one before it; poll the Location header's URL")


class JobSummary(BaseModel):
    job_id: str
    bot: str
    status: JobStatus
    total: int
    input: str
    output: str
    created_at: int


class FileResult(BaseModel):
    """One file of a job: the CLI's `spotbot results` row."""

    file_key: str
    status: FileStatus
    output_uri: str
    labels: list[str]
    error: str
    attempts: int


class ResultsPage(BaseModel):
    files: list[FileResult]
    next: str | None = Field(description="pass as `after` for the next page; null on the last page")


def job_out(job: Job, counts: dict[str, int] | None = None) -> JobOut:
    return JobOut(
        job_id=job.job_id, bot=job.bot, status=job.status, input=job.input_uri, output=job.output_uri, total=job.total,
        counts=counts if counts is not None else job.counts, accepting=job.accepting, error=job.error or None,
        workers=[WorkerOut(id=w.id, batch_id=w.batch_id, state=w.state, exit_code=w.exit_code, reason=w.reason)
                 for w in job.workers.values()],
        events=job.events[-EVENTS_SHOWN:], created_at=job.created_at, running_at=job.running_at,
        finished_at=job.finished_at,
    )


def current(state: Api, job_id: str) -> JobOut:
    job = state.store.jobs.get(job_id)
    for worker in job.workers.values():  # the job's record of its workers lags; ask the launcher, as `spotbot status` does
        if worker.state in (WorkerState.STARTING, WorkerState.RUNNING):
            worker.state, worker.exit_code = state.scheduler.launcher.poll(worker)
    counts, in_flight = state.store.jobs.shown(job)
    return job_out(job, counts).model_copy(update={"in_flight": in_flight,
                                                   "cost": job_cost(job, counts, state.settings)})


@router.post("", response_model=JobOut, status_code=202,
             responses={200: {"model": JobOut, "description": "the job id exists and has ended"}, **responses(404, 422, 503)})
def submit(submission: JobSubmission, state: Api = Depends(api)) -> JSONResponse:
    """Run a bot over every matching file under an S3 prefix: answers 202 at once, scans and starts workers in the background.

    Bad input (an unknown bot, a missing bucket, a bad URI) is refused before anything is stored.
    """
    scheduler = state.scheduler
    job = scheduler.create_job(submission.bot, submission.input, submission.output, workers=submission.workers,
                               job_id=submission.job_id, incremental=submission.incremental)
    if job.status.terminal:
        return JSONResponse(job_out(job).model_dump(mode="json"), status_code=200)

    def run() -> None:
        started = scheduler.submit(submission.bot, submission.input, submission.output, workers=submission.workers,
                                   job_id=job.job_id, incremental=submission.incremental)
        if not started.status.terminal:
            state.background.supervise(job.job_id)

    state.background.run(f"job {job.job_id}", run, on_error=lambda exc: state.store.jobs.fail(job.job_id, f"submit: {exc}"))
    return JSONResponse(job_out(job).model_dump(mode="json"), status_code=202)


@router.get("", response_model=list[JobSummary], responses=responses(503))
def list_jobs(state: Api = Depends(api)) -> list[JobSummary]:
    """Every job, newest first."""
    return [JobSummary(job_id=j.job_id, bot=j.bot, status=j.status, total=j.total, input=j.input_uri,
                       output=j.output_uri, created_at=j.created_at) for j in state.store.jobs.list()]


@router.get("/{job_id}", response_model=JobOut, responses=responses(404, 422, 503))
def status(job_id: str = JobId, state: Api = Depends(api)) -> JobOut:
    """A job's state with its files' counts per status."""
    return current(state, job_id)


@router.get("/{job_id}/results", response_model=ResultsPage, responses=responses(404, 422, 503))
def results(job_id: str = JobId,
            status: FileStatus | None = Query(None, description="only files in this status"),
            limit: int = Query(100, ge=1, le=1000, description="files per page"),
            after: str | None = Query(None, max_length=1024, description="the `next` of the page before"),
            state: Api = Depends(api)) -> ResultsPage:
    """The job's files in key order, a page at a time."""
    state.store.jobs.get(job_id)
    files: list[FileResult] = []
    for task in state.store.files.page(job_id, status=status.value if status else None, size=limit + 1, after=after):
        if len(files) == limit:
            return ResultsPage(files=files, next=files[-1].file_key)
        files.append(FileResult(file_key=task.file_key, status=task.status, output_uri=task.output_uri,
                                labels=task.labels, error=task.error, attempts=task.attempts))
    return ResultsPage(files=files, next=None)


@router.post("/{job_id}/cancel", response_model=JobOut, status_code=202, responses=responses(404, 409, 422, 503))
def cancel(job_id: str = JobId, state: Api = Depends(api)) -> JobOut:
    """Stop a job: no new work is claimed, open files end CANCELLED; answers once the job shows CANCELLED.

    Draining the chunks workers still hold goes on in the background (at most a lease period).
    """
    job = state.store.jobs.get(job_id)
    if job.status.terminal:
        raise WrongState(f"job {job_id} has ended {job.status.value}; there is nothing to cancel", job_id=job_id)
    done = threading.Event()
    # the control lane: a cancel never waits for a thread behind scans (background.py)
    state.background.run(f"cancelling {job_id}", lambda: (state.scheduler.cancel(job_id), done.set()),
                         lane=CONTROL, key=f"cancel {job_id}")
    deadline = time.monotonic() + CANCEL_SHOWN_WITHIN
    while not done.wait(0.05) and time.monotonic() < deadline:
        if state.store.jobs.get(job_id).status.terminal:
            break
    return current(state, job_id)


@router.post("/{job_id}/retry", response_model=JobOut, status_code=202, responses=responses(404, 409, 422, 503))
def retry(request: RetryRequest | None = None, job_id: str = JobId, state: Api = Depends(api)) -> JobOut:
    """Run an ended job's ERROR (and, unless errors_only, CANCELLED) files again, in the same job, in the background."""
    request = request or RetryRequest()
    job = state.store.jobs.get(job_id)
    if not job.status.terminal:
        raise WrongState(f"job {job_id} is {job.status.value}; retry runs the files of an ended job again", job_id=job_id)
    if job.accepting:
        raise WrongState(f"job {job_id} is a long-running job; retry is for batch jobs", job_id=job_id)
    if request.signature is not None and not state.store.reports.group_size(job_id, request.signature):
        raise NotFound(f"signature: job {job_id} has no ERROR file with this error signature; "
                       f"GET /jobs/{job_id}/errors lists them", field="signature")

    done = threading.Event()

    def run() -> None:
        try:
            again = state.scheduler.retry(job_id, errors_only=request.errors_only, workers=request.workers,
                                          concurrency=request.concurrency, signature=request.signature)
        finally:
            done.set()
        if not again.status.terminal:
            state.background.supervise(job_id)

    state.background.run(f"retrying {job_id}", run,
                         on_error=lambda exc: state.store.jobs.note(job_id, f"retry through the API failed: {exc}"))
    # the answer shows the job running again when the files are re-opened within moments; a retry of many files
    # goes on in the background, and the answer says so
    done.wait(CANCEL_SHOWN_WITHIN)
    shown = current(state, job_id)
    if shown.status.terminal:
        shown.settling = ("the retry re-opens the job's files in the background; the job shows RUNNING once it has "
                          f"(GET /jobs/{job_id})")
    return JSONResponse(shown.model_dump(mode="json"), status_code=202, headers={"Location": f"/jobs/{job_id}"})


@router.post("/{job_id}/close", response_model=JobOut, responses=responses(404, 409, 422, 503))
def close(job_id: str = JobId, state: Api = Depends(api)) -> JobOut:
    """Stop a long-running job taking new files; it ends once the files it has are done."""
    job = state.store.jobs.get(job_id)
    if not job.accepting:
        raise WrongState(f"job {job_id} is not a long-running job taking files; nothing to close", job_id=job_id)
    state.scheduler.close(job_id)
    return current(state, job_id)
