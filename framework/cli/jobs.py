"""Jobs: submit, status, cancel, retry, supervise, results, jobs list."""

from __future__ import annotations

import csv
import json
import sys
import time
from typing import Any

import click

from ..costs import job_cost, worker_seconds
from ..models import FileStatus, Job, JobStatus, WorkerState, now_ms
from ..retry import retrying
from .app import EXIT_BY_STATUS, Context, emit_json, handled, main


def progress_line(job: Job, in_flight: int = 0, claimed: int = 0) -> dict[str, Any]:
    """The job's state with counts, rate and ETA, as `status` shows it.

    The rate counts files that ran to an end (COMPLETED or ERROR), not those cancelled unrun nor
    those an incremental job SKIPPED (their results are an earlier job's).
    """
    counts = job.counts
    worked = counts.get(FileStatus.COMPLETED.value, 0) + counts.get(FileStatus.ERROR.value, 0)
    done = worked + counts.get(FileStatus.CANCELLED.value, 0) + counts.get(FileStatus.SKIPPED.value, 0)
    end = job.finished_at or now_ms()
    elapsed = max(0.001, (end - (job.running_at or job.created_at)) / 1000)
    rate = worked / elapsed if worked else 0.0
    remaining = max(0, job.total - done)
    return {
        "job_id": job.job_id,
        "bot": job.bot,
        "status": job.status.value,
        "input": job.input_uri,
        "output": job.output_uri,
        "total": job.total,
        "counts": counts,
        "in_flight": in_flight,  # being worked right now (as of the workers' last writes, every few seconds)
        "claimed": claimed,  # held by a worker, not begun yet
        "concurrency": job.concurrency,
        "rate_per_second": round(rate, 2),
        "eta_seconds": round(remaining / rate, 1) if rate and not job.status.terminal else None,
        "elapsed_seconds": round(elapsed, 1),
        "accepting": job.accepting,
        "incremental": job.incremental,
        "fingerprint": job.fingerprint,
        # workers stopped from outside while the job ran (SIGTERM, a Spot interruption notice): they gave their work back
        "interrupted": sum(1 for worker in job.workers.values() if worker.interrupted),
        "error": job.error or None,
    }


def describe_cost(cost: dict) -> str:
    """The cost figures of `status` as one line."""
    parts = [f"worker time {cost['worker_seconds'] / 3600:.2f} h"]
    if cost.get("files_per_worker_hour"):
        parts.append(f"{cost['files_per_worker_hour']:.0f} files per worker-hour")
    if "cost" in cost:
        parts.append(f"cost {cost['cost']:.4f}")
        if cost.get("cost_per_1000_files") is not None:
            parts.append(f"{cost['cost_per_1000_files']:.4f} per 1,000 files")
        if cost.get("cost_at_end") is not None:
            parts.append(f"{cost['cost_at_end']:.4f} at the end")
    return "cost: " + ", ".join(parts)


def job_status(obj: Context, job_id: str) -> dict[str, Any]:
    from ..launchers import launcher

    job = obj.store.jobs.get(job_id)
    in_flight = claimed = 0
    if not job.status.terminal:
        job.counts, in_flight, claimed = obj.store.jobs.progress(job_id)
    line = progress_line(job, in_flight, claimed)
    launchers: dict = {}  # each worker is asked through the launcher that started it
    workers = []
    for worker in job.workers.values():
        state = worker.state
        if state in (WorkerState.STARTING, WorkerState.RUNNING):
            if worker.backend not in launchers:
                launchers[worker.backend] = launcher(obj.settings, worker.backend)
            state = launchers[worker.backend].poll(worker)[0]
        workers.append({"id": worker.id, "batch_id": worker.batch_id, "state": state.value, "pid": worker.pid,
                        "exit_code": worker.exit_code, "backend": worker.backend, "reason": worker.reason or None,
                        "interrupted": worker.interrupted,
                        "seconds": round(worker_seconds(worker), 1), "vcpus": worker.vcpus, "memory_mb": worker.memory_mb})
    line["workers"] = workers
    line["cost"] = job_cost(job, line["counts"], obj.settings)
    return line


@main.command()
@click.option("--bot", "bot_name", required=True, help="Name of a registered bot.")
@click.option("--input", "input_uri", required=True, help="s3://bucket/prefix of the files to process.")
@click.option("--output", "output_uri", required=True, help="s3://bucket/prefix where results go.")
@click.option("--bots", "workers", type=click.IntRange(1, 1024), help="How many bot workers (default: SPOTBOT_WORKERS).")
@click.option("--concurrency", type=click.IntRange(1, 256),
              help="Files each worker works at once (default: SPOTBOT_CONCURRENCY); kept on the job for relaunched workers.")
@click.option("--job-id", help="Choose the job id; submitting an existing id resumes that job, never duplicating a file.")
@click.option("--incremental", is_flag=True,
              help="Skip the files whose object (ETag or version) has a COMPLETED result of this bot with the same model "
                   "fingerprint: they end SKIPPED, pointing at that result; changed, new and failed files are worked.")
@click.option("--wait", is_flag=True, help="Block with a progress bar until the job ends; exit 0/3/4 by its outcome.")
@click.option("--json", "as_json", is_flag=True, help='Print {"job_id": ..., "status": ...}.')
@click.pass_obj
@handled
def submit(obj: Context, bot_name: str, input_uri: str, output_uri: str, workers: int | None, concurrency: int | None,
           job_id: str | None, incremental: bool, wait: bool, as_json: bool) -> None:
    """Run a bot over every matching file under an S3 prefix.

    \b
    Examples:
      spotbot submit --bot doc_ocr --input s3://spotbot-demo/docs/ --output s3://spotbot-demo/out/ --bots 2 --wait
      spotbot submit --bot doc_ocr --input s3://spotbot-demo/docs/ --output s3://spotbot-demo/out/ --incremental --wait
    """
    scheduler = obj.scheduler()
    quiet = as_json

    def scanned(total: int) -> None:
        if not quiet:
            click.echo(f"\rrecorded {total} file(s)", err=True, nl=False)

    job = scheduler.submit(bot_name, input_uri, output_uri, workers=workers, job_id=job_id, concurrency=concurrency,
                           incremental=incremental, on_scan=scanned)
    if not quiet:
        skipped = obj.store.jobs.counts(job.job_id).get(FileStatus.SKIPPED.value, 0) if job.incremental else 0
        reused = f" ({skipped} SKIPPED: unchanged since an earlier result)" if job.incremental else ""
        click.echo(f"\njob {job.job_id}: {job.total} file(s){reused}, {job.status.value}", err=True)
    if wait and not job.status.terminal:
        job = _wait(obj, scheduler, job, show=not quiet)
    if as_json:
        emit_json({"job_id": job.job_id, "status": job.status.value, "total": job.total})
    elif not wait:
        click.echo(job.job_id)
    if wait:
        if not quiet:
            click.echo(f"job {job.job_id} ended {job.status.value}: {json.dumps(job.counts)}", err=True)
        sys.exit(EXIT_BY_STATUS[job.status])


def _wait(obj: Context, scheduler, job: Job, show: bool) -> Job:
    last = job
    with click.progressbar(length=max(job.total, 1), label=f"{job.bot} {job.job_id}", file=sys.stderr,
                           show_pos=True, show_eta=True) as bar:
        shown = 0
        from ..supervisor import Supervisor

        for last in Supervisor(scheduler).watch(job.job_id):
            counts = last.counts if last.status.terminal else retrying(
                lambda: obj.store.jobs.counts(job.job_id), seconds=obj.settings.retry_seconds, what="counting files")
            done = sum(counts.get(s.value, 0) for s in FileStatus if s.terminal)
            if show and done > shown:
                bar.update(done - shown)
                shown = done
    return last


@main.command()
@click.argument("job_id")
@click.option("--watch", is_flag=True, help="Refresh every second until the job ends.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON, with the workers.")
@click.pass_obj
@handled
def status(obj: Context, job_id: str, watch: bool, as_json: bool) -> None:
    """A job's state, file counts per status, rate and ETA. Example: spotbot status doc_ocr-20261121-1200-ab12"""
    while True:
        line = job_status(obj, job_id)
        if as_json:
            emit_json(line)
        else:
            counts = " ".join(f"{k}={v}" for k, v in line["counts"].items())
            eta = f" eta {line['eta_seconds']}s" if line["eta_seconds"] is not None else ""
            working = f" in_flight={line['in_flight']} claimed={line['claimed']}" if not JobStatus(line["status"]).terminal else ""
            interrupted = f" interrupted={line['interrupted']}" if line["interrupted"] else ""
            click.echo(f"{line['job_id']} {line['status']} total={line['total']} {counts}{working}{interrupted} "
                       f"rate={line['rate_per_second']}/s{eta}")
            if line["error"]:
                click.echo(f"error: {line['error']}")
            click.echo(describe_cost(line["cost"]))
        if not watch or JobStatus(line["status"]).terminal:
            return
        time.sleep(obj.settings.poll_seconds)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def cancel(obj: Context, job_id: str, as_json: bool) -> None:
    """Stop a job: no new work is claimed, open files end CANCELLED, the job ends CANCELLED.

    Waits for the workers to let go of their chunks (at most a lease period). Example: spotbot cancel JOB
    """
    job = obj.scheduler().cancel(job_id)
    if as_json:
        emit_json({"job_id": job.job_id, "status": job.status.value, "counts": job.counts})
    else:
        click.echo(f"job {job.job_id} {job.status.value}: {json.dumps(job.counts)}")


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def close(obj: Context, job_id: str, as_json: bool) -> None:
    """Stop a long-running job (watch, the image API) taking new files; it ends once the files it has are done.

    Example: spotbot close images-20261201-120000-ab12
    """
    job = obj.scheduler().close(job_id)
    if as_json:
        emit_json({"job_id": job.job_id, "status": job.status.value, "accepting": job.accepting})
    else:
        click.echo(f"job {job.job_id} {job.status.value}, takes no more files")


@main.command()
@click.argument("job_id")
@click.option("--errors-only", is_flag=True, help="Re-run ERROR files only (default: every file that is not COMPLETED).")
@click.option("--signature", help="Re-run only the ERROR files of this error group (as `spotbot errors JOB` shows it).")
@click.option("--bots", "workers", type=click.IntRange(1, 1024), help="How many workers (default: as the job had).")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Files each worker works at once (default: as the job had).")
@click.option("--wait", is_flag=True, help="Block until the job ends again; exit 0/3/4 by its outcome.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def retry(obj: Context, job_id: str, errors_only: bool, signature: str | None, workers: int | None,
          concurrency: int | None, wait: bool, as_json: bool) -> None:
    """Run an ended job's files again, in the same job: every file not COMPLETED (ERROR, CANCELLED, and those a
    FAILED job never worked), or with --errors-only its ERROR files.

    \b
    Examples:
      spotbot retry JOB --errors-only --wait
      spotbot retry JOB --signature 'ValueError: cannot decode <path>'
    """
    scheduler = obj.scheduler()
    job = scheduler.retry(job_id, errors_only=errors_only, workers=workers, concurrency=concurrency,
                          signature=signature)
    if wait and not job.status.terminal:
        job = _wait(obj, scheduler, job, show=not as_json)
    if as_json:
        emit_json({"job_id": job.job_id, "status": job.status.value, "total": job.total})
    else:
        click.echo(f"job {job.job_id} {job.status.value}")
    if wait:
        sys.exit(EXIT_BY_STATUS.get(job.status, 0))


@main.command()
@click.argument("job_id", required=False)
@click.pass_obj
@handled
def supervise(obj: Context, job_id: str | None) -> None:
    """Watch running jobs until they end: relaunch dead workers, restart endpoints that stop answering.

    Without JOB, every RUNNING job. Example: spotbot supervise
    """
    from ..supervisor import Supervisor

    supervisor = Supervisor(obj.scheduler())
    if job_id:
        for job in supervisor.watch(job_id):
            pass
        click.echo(f"job {job.job_id} ended {job.status.value}")
        return
    for jobs in supervisor.watch_all():
        for job in jobs:
            if job.status.terminal:
                click.echo(f"job {job.job_id} ended {job.status.value}")
    click.echo("no running job left")


RESULT_FIELDS = ["file_key", "status", "output_uri", "labels", "error", "attempts", "reused_from"]


@main.command()
@click.argument("job_id")
@click.option("--status", "status_filter", type=click.Choice([s.value for s in FileStatus]), help="Only files in this status.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.pass_obj
@handled
def results(obj: Context, job_id: str, status_filter: str | None, fmt: str) -> None:
    """One row per file: file_key, status, output_uri, labels, error, attempts, reused_from.

    A SKIPPED file (an incremental job) names the job whose result it reuses (reused_from) and that result's output_uri.

    Example: spotbot results doc_ocr-20261121-1200-ab12 --status ERROR --format csv
    """
    obj.store.jobs.get(job_id)
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=RESULT_FIELDS)
        writer.writeheader()
    for task in obj.store.files.page(job_id, status=status_filter):
        row = {name: getattr(task, name) for name in RESULT_FIELDS}
        row["status"] = task.status.value
        if writer:
            row["labels"] = ";".join(task.labels)
            writer.writerow(row)
        else:
            click.echo(json.dumps(row, ensure_ascii=False))


@main.group()
def jobs() -> None:
    """List jobs."""


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def jobs_list(obj: Context, as_json: bool) -> None:
    """Every job, newest first. Example: spotbot jobs list"""
    found = obj.store.jobs.list()
    if as_json:
        emit_json([{"job_id": j.job_id, "bot": j.bot, "status": j.status.value, "total": j.total,
                    "input": j.input_uri, "output": j.output_uri, "created_at": j.created_at} for j in found])
        return
    click.echo(f"{'JOB':40} {'BOT':16} {'STATUS':22} {'FILES':>8}  INPUT")
    for job in found:
        click.echo(f"{job.job_id:40} {job.bot:16} {job.status.value:22} {job.total:>8}  {job.input_uri}")
