"""The `spotbot` command.

Exit codes: 0 success; 1 unexpected error; 2 bad input or configuration; 3 the job ended
COMPLETED_WITH_ERRORS (--wait); 4 the job ended FAILED or CANCELLED (--wait); 5 not found;
6 Elasticsearch or S3 unreachable; 7 an endpoint or worker could not be started.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from . import settings as settings_module
from .bot_config import read_bot_config
from .errors import SpotbotError
from .models import FileStatus, Job, JobStatus, WorkerState, now_ms
from .retry import retrying
from .settings import Settings

EXIT_BY_STATUS = {
    JobStatus.COMPLETED: 0,
    JobStatus.COMPLETED_WITH_ERRORS: 3,
    JobStatus.FAILED: 4,
    JobStatus.CANCELLED: 4,
}


class Context:
    """Built lazily, so `--help` and `local` never need a server."""

    def __init__(self, debug: bool):
        self.debug = debug
        self._settings: Settings | None = None
        self._store = None
        self._storage = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    @property
    def store(self):
        if self._store is None:
            from .store import Store

            self._store = Store.from_settings(self.settings)
        return self._store

    @property
    def storage(self):
        if self._storage is None:
            from .storage import Storage

            self._storage = Storage(self.settings)
        return self._storage

    def scheduler(self):
        from .scheduler import Scheduler

        return Scheduler(self.settings, self.store, self.storage)


def handled(command: Callable) -> Callable:
    """Turn spotbot's errors into one line on stderr and the error's exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Context)
        try:
            return command(*args, **kwargs)
        except SpotbotError as exc:
            if ctx is not None and ctx.debug:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(epilog="Settings (environment variables):\n\n" + settings_module.describe().replace("\n", "\n\n"))
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """spotbot runs ML bots over the files of an S3 prefix, tracking every file in Elasticsearch.

    \b
    Quick start on one machine:
      spotbot local up
      spotbot bots register bots/doc_ocr/bot_config.json
      spotbot submit --bot doc_ocr --input s3://spotbot-demo/docs/ --output s3://spotbot-demo/out/ --wait
      spotbot results <job id>
    """
    ctx.obj = Context(debug)


# --- local ------------------------------------------------------------------------------------


@main.group()
def local() -> None:
    """The embedded stack: an Elasticsearch-API server and an S3 server on 127.0.0.1."""


def _local_stack(ctx: Context):
    from .local import LocalStack

    return LocalStack(ctx.settings.home)


@local.command("up")
@click.option("--json", "as_json", is_flag=True, help="Print the connection details as JSON.")
@click.pass_obj
@handled
def local_up(obj: Context, as_json: bool) -> None:
    """Start the embedded servers (idempotent) and wait until both answer.

    Data lives under $SPOTBOT_HOME (default ./.spotbot). Example: spotbot local up
    """
    stack = _local_stack(obj)
    status = stack.up(progress=lambda message: click.echo(message + " ...", err=True))
    if as_json:
        emit_json(status)
    else:
        click.echo(f"Elasticsearch: {status['es_url']}\nS3:            {status['s3_endpoint_url']} "
                   f"(access key {status['s3_access_key']})")


@local.command("down")
@click.pass_obj
@handled
def local_down(obj: Context) -> None:
    """Stop the embedded servers and the local endpoints; data stays under $SPOTBOT_HOME.

    Example: spotbot local down
    """
    stack = _local_stack(obj)
    status = stack.status()
    if status.get("es_running"):
        from .endpoints import EndpointManager

        try:
            manager = EndpointManager(obj.settings, obj.store)
            for endpoint, _ in manager.list():
                if endpoint.backend == "process":
                    manager.backend("process").stop(endpoint)
        except SpotbotError as exc:
            click.echo(f"warning: could not stop local endpoints: {exc}", err=True)
    stack.down()
    click.echo("stopped")


@local.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON: es_url, s3_endpoint_url, running ...")
@click.pass_obj
@handled
def local_status(obj: Context, as_json: bool) -> None:
    """Whether the embedded servers answer, and where. Example: spotbot local status --json"""
    status = _local_stack(obj).status()
    if as_json:
        emit_json(status)
        return
    if not status["es_url"]:
        click.echo("not running (spotbot local up starts it)")
        return
    click.echo(f"Elasticsearch: {status['es_url']} ({'up' if status['es_running'] else 'down'})")
    click.echo(f"S3:            {status['s3_endpoint_url']} ({'up' if status['s3_running'] else 'down'})")


# --- bots -------------------------------------------------------------------------------------


@main.group()
def bots() -> None:
    """Register, list, show and delete bots."""


@bots.command("register")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_obj
@handled
def bots_register(obj: Context, file: Path) -> None:
    """Create the bot described by FILE (a bot_config.json), or update it if its name exists.

    Example: spotbot bots register bots/doc_ocr/bot_config.json
    """
    config = read_bot_config(file)
    stored, created = obj.store.bots.register(config)
    click.echo(f"{'created' if created else 'updated'} bot {stored.name}", err=True)
    emit_json(stored.model_dump())


@bots.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def bots_list(obj: Context, as_json: bool) -> None:
    """The registered bots. Example: spotbot bots list --json"""
    registered = obj.store.bots.list()
    if as_json:
        emit_json([b.model_dump() for b in registered])
        return
    for bot in registered:
        click.echo(f"{bot.name:24} {','.join(bot.file_types):20} {bot.bot_image}")


@bots.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def bots_show(obj: Context, name: str, as_json: bool) -> None:
    """One bot's stored configuration. Example: spotbot bots show doc_ocr"""
    config = obj.store.bots.get(name).model_dump()
    if as_json:
        emit_json(config)
        return
    for field, value in config.items():
        click.echo(f"{field:24} {','.join(value) if isinstance(value, list) else value}")


@bots.command("delete")
@click.argument("name")
@click.pass_obj
@handled
def bots_delete(obj: Context, name: str) -> None:
    """Remove a bot from the registry (its jobs stay). Example: spotbot bots delete doc_ocr"""
    obj.store.bots.delete(name)
    click.echo(f"deleted bot {name}")


# --- jobs -------------------------------------------------------------------------------------


def progress_line(job: Job) -> dict[str, Any]:
    """The job's state with counts, rate and ETA, as `status` shows it."""
    counts = job.counts
    done = counts.get(FileStatus.COMPLETED.value, 0) + counts.get(FileStatus.ERROR.value, 0) + counts.get(FileStatus.CANCELLED.value, 0)
    end = job.finished_at or now_ms()
    elapsed = max(0.001, (end - (job.running_at or job.created_at)) / 1000)
    rate = done / elapsed if done else 0.0
    remaining = max(0, job.total - done)
    return {
        "job_id": job.job_id,
        "bot": job.bot,
        "status": job.status.value,
        "input": job.input_uri,
        "output": job.output_uri,
        "total": job.total,
        "counts": counts,
        "rate_per_second": round(rate, 2),
        "eta_seconds": round(remaining / rate, 1) if rate and not job.status.terminal else None,
        "elapsed_seconds": round(elapsed, 1),
        "error": job.error or None,
    }


def job_status(obj: Context, job_id: str) -> dict[str, Any]:
    from .launchers import launcher

    job = obj.store.jobs.get(job_id)
    if not job.status.terminal:
        job.counts = obj.store.jobs.counts(job_id)
    line = progress_line(job)
    run = launcher(obj.settings)
    workers = []
    for worker in job.workers.values():
        state = worker.state
        if state in (WorkerState.STARTING, WorkerState.RUNNING):
            state = run.poll(worker)[0]
        workers.append({"id": worker.id, "batch_id": worker.batch_id, "state": state.value, "pid": worker.pid,
                        "exit_code": worker.exit_code, "backend": worker.backend})
    line["workers"] = workers
    return line


@main.command()
@click.option("--bot", "bot_name", required=True, help="Name of a registered bot.")
@click.option("--input", "input_uri", required=True, help="s3://bucket/prefix of the files to process.")
@click.option("--output", "output_uri", required=True, help="s3://bucket/prefix where results go.")
@click.option("--bots", "workers", type=click.IntRange(1, 1024), help="How many bot workers (default: SPOTBOT_WORKERS).")
@click.option("--job-id", help="Choose the job id; submitting an existing id resumes that job, never duplicating a file.")
@click.option("--wait", is_flag=True, help="Block with a progress bar until the job ends; exit 0/3/4 by its outcome.")
@click.option("--json", "as_json", is_flag=True, help='Print {"job_id": ..., "status": ...}.')
@click.pass_obj
@handled
def submit(obj: Context, bot_name: str, input_uri: str, output_uri: str, workers: int | None, job_id: str | None,
           wait: bool, as_json: bool) -> None:
    """Run a bot over every matching file under an S3 prefix.

    \b
    Example:
      spotbot submit --bot doc_ocr --input s3://spotbot-demo/docs/ --output s3://spotbot-demo/out/ --bots 2 --wait
    """
    scheduler = obj.scheduler()
    quiet = as_json

    def scanned(total: int) -> None:
        if not quiet:
            click.echo(f"\rrecorded {total} file(s)", err=True, nl=False)

    job = scheduler.submit(bot_name, input_uri, output_uri, workers=workers, job_id=job_id, on_scan=scanned)
    if not quiet:
        click.echo(f"\njob {job.job_id}: {job.total} file(s), {job.status.value}", err=True)
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
        from .supervisor import Supervisor

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
            click.echo(f"{line['job_id']} {line['status']} total={line['total']} {counts} "
                       f"rate={line['rate_per_second']}/s{eta}")
            if line["error"]:
                click.echo(f"error: {line['error']}")
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
@click.option("--errors-only", is_flag=True, help="Re-run ERROR files only (default: ERROR and CANCELLED).")
@click.option("--bots", "workers", type=click.IntRange(1, 1024), help="How many workers (default: as the job had).")
@click.option("--wait", is_flag=True, help="Block until the job ends again; exit 0/3/4 by its outcome.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def retry(obj: Context, job_id: str, errors_only: bool, workers: int | None, wait: bool, as_json: bool) -> None:
    """Run an ended job's failed (and cancelled) files again, in the same job.

    Example: spotbot retry JOB --errors-only --wait
    """
    scheduler = obj.scheduler()
    job = scheduler.retry(job_id, errors_only=errors_only, workers=workers)
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
    from .supervisor import Supervisor

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


RESULT_FIELDS = ["file_key", "status", "output_uri", "labels", "error", "attempts"]


@main.command()
@click.argument("job_id")
@click.option("--status", "status_filter", type=click.Choice([s.value for s in FileStatus]), help="Only files in this status.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.pass_obj
@handled
def results(obj: Context, job_id: str, status_filter: str | None, fmt: str) -> None:
    """One row per file: file_key, status, output_uri, labels, error, attempts.

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
    for job in found:
        click.echo(f"{job.job_id:40} {job.bot:16} {job.status.value:22} {job.total:>8}  {job.input_uri}")


# --- endpoints and admin ----------------------------------------------------------------------


@main.group()
def endpoints() -> None:
    """List and delete model endpoints."""


@endpoints.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def endpoints_list(obj: Context, as_json: bool) -> None:
    """Recorded endpoints and whether each answers. Example: spotbot endpoints list"""
    from .endpoints import EndpointManager

    rows = [{**e.model_dump(mode="json"), "healthy": ok} for e, ok in EndpointManager(obj.settings, obj.store).list()]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']:32} {row['backend']:8} {row['status']:11} {'healthy' if row['healthy'] else 'down':8} {row['url']}")


@endpoints.command("delete")
@click.argument("name")
@click.pass_obj
@handled
def endpoints_delete(obj: Context, name: str) -> None:
    """Stop an endpoint and forget it. Example: spotbot endpoints delete doc-ocr"""
    from .endpoints import EndpointManager

    EndpointManager(obj.settings, obj.store).delete(name)
    click.echo(f"deleted endpoint {name}")


@main.group()
def admin() -> None:
    """Administration of the Elasticsearch indices."""


@admin.command("init")
@click.pass_obj
@handled
def admin_init(obj: Context) -> None:
    """Create the indices with their mappings (also done on first use). Example: spotbot admin init"""
    created = obj.store.init()
    click.echo("created: " + (", ".join(created) if created else "nothing, all indices exist"))


@admin.command("settings")
@click.pass_obj
@handled
def admin_settings(obj: Context) -> None:
    """Print the effective settings, secrets redacted. Example: spotbot admin settings"""
    emit_json(obj.settings.redacted())
