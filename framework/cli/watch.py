"""`spotbot watch`: process the new objects of an S3 prefix as they appear (seed 001's event-driven labelling)."""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
import threading

import click

from ..errors import NotFound
from ..models import Job
from .app import Context, handled, main


@main.command()
@click.option("--bot", "bot_name", help="Name of a registered bot (with --job-id of an existing job: taken from it).")
@click.option("--input", "input_uri", help="s3://bucket/prefix to watch for new objects.")
@click.option("--output", "output_uri", help="s3://bucket/prefix where results go (not inside --input).")
@click.option("--bots", "workers", type=click.IntRange(1, 1024), help="How many bot workers (default: SPOTBOT_WORKERS).")
@click.option("--concurrency", type=click.IntRange(1, 256),
              help="Files each worker works at once (default: SPOTBOT_CONCURRENCY).")
@click.option("--job-id", help="Choose the job id; an existing watch job's id resumes it from its stored mark.")
@click.option("--interval", type=click.FloatRange(0.1, 300), help="Seconds between looks (default: SPOTBOT_WATCH_INTERVAL).")
@click.option("--sweep", "sweep_seconds", type=click.FloatRange(0, 86400),
              help="Re-list the whole prefix this often, for new keys sorting below the mark; 0: never "
                   "(default: SPOTBOT_WATCH_SWEEP_SECONDS).")
@click.option("--sqs-queue-url", help="Hear of new objects from S3 event notifications on this SQS queue (AWS).")
@click.option("--skip-existing", is_flag=True, help="Leave alone the objects already there when the job starts.")
@click.option("--incremental", is_flag=True,
              help="Skip the objects whose version has a COMPLETED result of this bot with the same model fingerprint "
                   "(an earlier job's): they end SKIPPED, pointing at that result.")
@click.option("--close-on-exit", is_flag=True, help="On Ctrl-C/SIGTERM close the job: it ends once its files are done.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per look that changed something, and one at the end.")
@click.pass_obj
@handled
def watch(obj: Context, bot_name: str | None, input_uri: str | None, output_uri: str | None, workers: int | None,
          concurrency: int | None, job_id: str | None, interval: float | None, sweep_seconds: float | None, sqs_queue_url: str | None,
          skip_existing: bool, incremental: bool, close_on_exit: bool, as_json: bool) -> None:
    """Record and process new objects of an S3 prefix as they appear, until Ctrl-C or SIGTERM.

    A long-running job: each look lists the keys after the job's high-water mark (kept on the job,
    so a restarted watcher resumes), a sweep re-lists the prefix for keys that sort below it, and
    no object is ever recorded twice; an object overwritten in place (a new ETag or version) is worked
    again once a sweep (or an S3 event) sees it. The watcher also relaunches dead workers and endpoints.
    On Ctrl-C the job stays open (its workers finish what was recorded): resume it with
    `spotbot watch --job-id JOB`, end it with `spotbot close JOB`, or pass --close-on-exit.

    \b
    Examples:
      spotbot watch --bot image_labeller --input s3://camera/uploads/ --output s3://camera/labels/ --bots 2
      spotbot watch --job-id image_labeller-20261201-120000-ab12          # resume after a stop
      spotbot watch --bot image_labeller --input s3://camera/uploads/ --output s3://camera/labels/ --incremental
      spotbot watch --bot image_labeller --input s3://camera/uploads/ --output s3://camera/labels/ \\
          --sqs-queue-url https://sqs.eu-west-1.amazonaws.com/123456789012/camera-uploads
    """
    from ..s3events import EventQueue
    from ..watch import Watcher

    settings = obj.settings
    if job_id and not (bot_name and input_uri and output_uri):
        try:
            known = obj.store.jobs.get(job_id)
        except NotFound:
            raise click.UsageError(f"no job {job_id!r} to resume: give --bot, --input and --output to start it") from None
        bot_name, input_uri, output_uri = bot_name or known.bot, input_uri or known.input_uri, output_uri or known.output_uri
    missing = [name for name, value in (("--bot", bot_name), ("--input", input_uri), ("--output", output_uri)) if not value]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or --job-id of a watch job to resume)")
    queue = EventQueue(sqs_queue_url, settings) if sqs_queue_url else None
    scheduler = obj.scheduler()
    watcher = Watcher.open(scheduler, bot_name, input_uri, output_uri, workers=workers, job_id=job_id,
                           concurrency=concurrency,
                           interval=interval or settings.watch_interval,
                           sweep_seconds=settings.watch_sweep_seconds if sweep_seconds is None else sweep_seconds,
                           queue=queue, skip_existing=skip_existing, incremental=incremental)
    stop = _stop_on_signals()
    say = (lambda text: None) if as_json else (lambda text: click.echo(text, err=True))
    say(f"watching {input_uri} for bot {bot_name}: job {watcher.job_id}"
        f"{' (events from ' + sqs_queue_url + ')' if queue else ''}; Ctrl-C stops")
    shown: dict = {"busy": True}  # a resumed job may have files in the works: count them at the first look

    def report(look, job: Job) -> None:
        counts = scheduler.store.jobs.counts(job.job_id) if look.recorded or shown.get("busy") else shown.get("counts", {})
        done = sum(counts.get(s, 0) for s in ("COMPLETED", "ERROR", "CANCELLED", "SKIPPED"))
        shown["busy"] = done < sum(counts.values())  # keep counting while files are in the works
        if not look.recorded and counts == shown.get("counts"):
            return
        shown["counts"] = counts
        if as_json:
            emit_line({"job_id": job.job_id, "recorded": len(look.recorded), "total": job.total, "counts": counts,
                       "mark": watcher.cursor.get("mark", ""), "swept": look.swept})
            return
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        tally = " ".join(f"{k}={v}" for k, v in counts.items() if v)
        new = f"+{len(look.recorded)} new, " if look.recorded else ""
        say(f"[{stamp}] {new}{job.total} recorded: {tally or 'nothing yet'}")

    job = watcher.run(stop, on_look=report)
    if job.status.terminal or not job.accepting:
        outcome = f"job {job.job_id} was {'closed' if not job.accepting else 'ended'} ({job.status.value}); stopped watching"
    elif close_on_exit:
        job = scheduler.close(job.job_id)
        outcome = f"stopped watching; job {job.job_id} closed: it ends once its {job.total} file(s) are done"
    else:
        outcome = (f"stopped watching; job {job.job_id} stays open with {job.total} file(s), its workers finish them. "
                   f"Resume: spotbot watch --job-id {job.job_id}; end it: spotbot close {job.job_id}")
    if as_json:
        emit_line({"job_id": job.job_id, "status": job.status.value, "accepting": job.accepting, "total": job.total,
                   "stopped": True})
    click.echo(outcome, err=True)


def emit_line(data: dict) -> None:
    click.echo(json.dumps(data, default=str))
    sys.stdout.flush()


def _stop_on_signals() -> threading.Event:
    """The first Ctrl-C or SIGTERM asks the watcher to stop after its current look; a second one stops at once."""
    stop = threading.Event()

    def asked(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("stopping after this look (again to stop at once)", err=True)

    signal.signal(signal.SIGINT, asked)
    signal.signal(signal.SIGTERM, asked)
    return stop
