"""`spotbot local`: the embedded stack on one machine."""

from __future__ import annotations

import time

import click

from ..errors import SpotbotError
from .app import Context, emit_json, handled, main


@main.group()
def local() -> None:
    """The embedded stack: an Elasticsearch-API server and an S3 server on 127.0.0.1."""


def _local_stack(ctx: Context):
    from ..local import LocalStack

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
    """Stop the embedded servers, and the workers and endpoints their jobs started here; data stays under $SPOTBOT_HOME.

    Workers are stopped first (they give their chunks back while Elasticsearch still answers), so
    `spotbot local up` and `spotbot submit --job-id JOB` (or `spotbot retry JOB`) later take the
    jobs up where they were. Example: spotbot local down
    """
    stack = _local_stack(obj)
    status = stack.status()
    if status.get("es_running"):
        try:
            stopped = stop_local_work(obj)
            if stopped:
                click.echo("stopped " + ", ".join(stopped), err=True)
        except SpotbotError as exc:
            click.echo(f"warning: could not stop the local workers and endpoints: {exc}; `ps` shows them "
                       "(python -m framework.bot, framework.endpoints.serving)", err=True)
    stack.down()
    click.echo("stopped")


def stop_local_work(obj: Context, wait_seconds: float = 20.0) -> list[str]:
    """Stop the live workers (process and docker launchers) of every job, then the local endpoints; says what it stopped."""
    from ..endpoints import EndpointManager
    from ..launchers import launcher
    from ..models import WorkerState

    live = (WorkerState.STARTING, WorkerState.RUNNING)
    launchers: dict = {}
    stopping = []
    for job in obj.store.jobs.each():
        for worker in job.workers.values():
            if worker.state not in live or worker.backend not in ("process", "docker"):
                continue  # ended, or an AWS Batch worker: not this machine's to stop
            if worker.backend not in launchers:
                launchers[worker.backend] = launcher(obj.settings, worker.backend)
            if launchers[worker.backend].poll(worker)[0] in live:
                launchers[worker.backend].stop(worker)
                stopping.append(worker)
    # a stopped worker lets its files in flight finish; asked again, it gives them back at once (uncharged)
    # and releases its chunks, while Elasticsearch still answers
    for patience in (2.0, wait_seconds):
        deadline = time.monotonic() + patience
        while any(launchers[w.backend].poll(w)[0] in live for w in stopping) and time.monotonic() < deadline:
            time.sleep(0.2)
        for worker in stopping:
            if launchers[worker.backend].poll(worker)[0] in live:
                launchers[worker.backend].stop(worker)
    left = [w.id for w in stopping if launchers[w.backend].poll(w)[0] in live]
    if left:
        click.echo(f"warning: worker(s) {', '.join(left)} still running; they stop on their own once they lose "
                   "Elasticsearch", err=True)
    manager = EndpointManager(obj.settings, obj.store)
    endpoints = 0
    for endpoint, _ in manager.list():
        if endpoint.backend in ("process", "docker"):  # the local ones; a SageMaker endpoint stays
            manager.backend(endpoint.backend).stop(endpoint)
            endpoints += 1
    jobs = sorted({w.job_id for w in stopping})
    said = [f"{len(stopping)} worker(s) of job(s) {', '.join(jobs)}"] if stopping else []
    return said + ([f"{endpoints} endpoint(s)"] if endpoints else [])


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
