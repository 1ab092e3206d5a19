"""`spotbot logs`: what a job's workers printed, read through the launcher that ran each one."""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import click

from ..errors import NotFound, SpotbotError
from ..models import Worker
from .app import Context, handled, main

_END = object()


@main.command()
@click.argument("job_id")
@click.option("--worker", "worker_id", help="Only this worker (the ids are in `spotbot status JOB --json`).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the workers end.")
@click.pass_obj
@handled
def logs(obj: Context, job_id: str, worker_id: str | None, follow: bool) -> None:
    """Print the output of a job's workers, oldest worker first.

    With several workers, each line starts with its worker's id. Works for every launcher: a
    process worker's log file, a container's log (kept under $SPOTBOT_HOME/logs once the
    container is removed).

    \b
    Examples:
      spotbot logs doc_ocr-20261121-120000-ab12
      spotbot logs doc_ocr-20261121-120000-ab12 --worker w0-3f2a1c --follow
    """
    job = obj.store.jobs.get(job_id)
    workers = sorted(job.workers.values(), key=lambda w: (w.started_at, w.id))
    if worker_id:
        workers = [w for w in workers if w.id == worker_id]
        if not workers:
            known = ", ".join(sorted(job.workers)) or "none yet"
            raise NotFound(f"job {job_id} has no worker {worker_id!r}; its workers: {known}", name=worker_id)
    if not workers:
        if job.status.terminal and job.error:
            # it failed before any worker started (an endpoint that did not start): its reason holds that log's end
            click.echo(f"job {job_id} ended {job.status.value} before any worker started:\n{job.error}")
        else:
            click.echo(f"job {job_id} has no workers yet", err=True)
        return
    if len(workers) == 1:
        for line in _lines(obj, workers[0], follow):
            click.echo(line)
        return
    if not follow:
        for worker in workers:
            _show(worker, _lines(obj, worker, False))
        return
    _follow_all(obj, workers)


def _lines(obj: Context, worker: Worker, follow: bool) -> Iterator[str]:
    from ..launchers import launcher

    return launcher(obj.settings, worker.backend).logs(worker, follow=follow)


def _show(worker: Worker, lines: Iterator[str]) -> None:
    try:
        for line in lines:
            click.echo(f"[{worker.id}] {line}")
    except SpotbotError as exc:  # one worker's missing log does not hide the others'
        click.echo(f"[{worker.id}] {exc}", err=True)


def _follow_all(obj: Context, workers: list[Worker]) -> None:
    """Follow several workers at once: one reader per worker, lines printed as they arrive."""
    arrived: queue.Queue = queue.Queue()

    def read(worker: Worker) -> None:
        try:
            for line in _lines(obj, worker, True):
                arrived.put((worker, line, None))
        except SpotbotError as exc:
            arrived.put((worker, None, exc))
        finally:
            arrived.put((worker, _END, None))

    for worker in workers:
        threading.Thread(target=read, args=(worker,), daemon=True).start()
    running = len(workers)
    while running:
        worker, line, error = arrived.get()
        if line is _END:
            running -= 1
        elif error is not None:
            click.echo(f"[{worker.id}] {error}", err=True)
        else:
            click.echo(f"[{worker.id}] {line}")
