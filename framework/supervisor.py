"""Supervision of running jobs: worker exits recorded, dead workers replaced, dead endpoints restarted.

`spotbot submit --wait` supervises its job; `spotbot supervise [JOB]` does the same for jobs
started elsewhere. Correctness never depends on a supervisor (leases let living workers
finish a dead one's chunk, and workers restart an endpoint that stops answering); it
brings a job back when every worker is gone, and records what happened on the job.
"""

from __future__ import annotations

import time
from typing import Iterator

from .errors import ConfigError, LaunchError, SpotbotError, TaskError
from .launchers import Launcher, launcher
from .models import Job, JobStatus, Worker, WorkerState, now_ms
from .retry import retrying
from .scheduler import Scheduler

ENDPOINT_CHECK_SECONDS = 5.0
LIVE = (WorkerState.STARTING, WorkerState.RUNNING)
DONE = (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS)  # every file worked: no worker has anything left
EXIT_GRACE_SECONDS = 2.0
STOP_GRACE_SECONDS = 10.0  # after SIGTERM at a job's end: an idle worker exits at once


class Supervisor:
    def __init__(self, scheduler: Scheduler, *, relaunch_budget: int | None = None):
        self.scheduler = scheduler
        self.store = scheduler.store
        self.settings = scheduler.settings
        self.relaunch_budget = relaunch_budget
        self._budgets: dict[str, int] = {}
        self._endpoints_checked: dict[str, float] = {}
        self._launchers: dict[str, Launcher] = {scheduler.launcher.name: scheduler.launcher}
        # Workers whose end this supervisor has seen through their launcher (which then cleans up
        # after them: a container is removed). A worker records its own end too, so a record that
        # says EXITED does not mean its launcher has been told.
        self._reaped: set[str] = set()

    def launcher_of(self, worker: Worker) -> Launcher:
        """The launcher that started the worker (which may not be the one SPOTBOT_LAUNCHER names now)."""
        if worker.backend not in self._launchers:
            self._launchers[worker.backend] = launcher(self.settings, worker.backend)
        return self._launchers[worker.backend]

    def budget(self, job: Job) -> int:
        """Relaunches left: by default enough for each worker to die twice and a poison file to kill max_attempts more."""
        if job.job_id not in self._budgets:
            default = 2 * job.workers_requested + self.settings.max_attempts + 1
            self._budgets[job.job_id] = self.relaunch_budget if self.relaunch_budget is not None else default
        return self._budgets[job.job_id]

    def step(self, job_id: str) -> Job:
        """One look at a job: act on what changed, return the job as it is now."""
        job = self.store.jobs.get(job_id)
        if job.status == JobStatus.RUNNING:
            job = self._look(job)
        if job.status in DONE:
            job = self._end_workers(job)
        return job

    def _look(self, job: Job) -> Job:
        job_id = job.job_id
        ended = self._ended_workers(job)
        waiting = self._waiting_workers(job)
        if waiting:
            job = self.store.jobs.record_workers(job_id, waiting, note="; ".join(
                f"worker {w.id} waits to start: {w.reason}" for w in waiting))
        if ended:
            job = self.store.jobs.record_workers(job_id, ended)
            bad = [w for w in ended if w.exit_code == TaskError.exit_code]
            if bad:  # a task.py that cannot load fails the same way on every relaunch
                return self.store.jobs.fail(job_id, f"worker {bad[0].id} could not start its task: "
                                                   f"{self.launcher_of(bad[0]).last_words(bad[0])}")
        alive = [w for w in job.workers.values() if w.state in LIVE]
        dead = [w for w in ended if w.state != WorkerState.EXITED]
        if dead or not alive:
            if not job.accepting and self.store.chunks.unfinished(job_id) == 0:
                return self.scheduler.settle(job_id)
            job = self._replace(job, dead or list(job.workers.values())[-1:], alive)
            if job.status.terminal:
                return job
        self._check_endpoints(job)
        return job

    def _ended_workers(self, job: Job) -> list[Worker]:
        ended = []
        for worker in job.workers.values():
            if worker.id in self._reaped:
                continue
            state, code = self.launcher_of(worker).poll(worker)
            if state in LIVE:
                continue
            self._reaped.add(worker.id)
            if worker.state in LIVE:
                ended.append(self._ended(worker, state, code))
        return ended

    def _ended(self, worker: Worker, state: WorkerState, code: int | None, stopped: str = "") -> Worker:
        """The worker's record once it ended, with why: its exit code and its launcher's account of it.

        That is the launcher's own reason where it has one (Batch: "Host EC2 ... terminated"), else
        the worker's last words (an OOM kill, an error).
        """
        if code == 0 and state == WorkerState.EXITED:
            reason = worker.reason or "exited"  # the worker's own account: why it stopped, what it worked
            if stopped:
                reason = f"{reason} ({stopped})"
        else:
            launcher_ = self.launcher_of(worker)
            status_reason = getattr(launcher_, "status_reason", None)
            words = (status_reason(worker) if status_reason else "") or launcher_.last_words(worker)
            reason = f"{f'exit code {code}' if code is not None else 'process gone'} ({words[:300]})"
        return worker.model_copy(update={"state": state, "exit_code": code, "ended_at": now_ms(), "reason": reason})

    def _waiting_workers(self, job: Job) -> list[Worker]:
        """Workers that have not started yet with a new reason from their launcher (a Batch job stuck RUNNABLE)."""
        changed = []
        for worker in job.workers.values():
            if worker.state not in LIVE:
                continue
            launcher_ = self.launcher_of(worker)
            status_reason = getattr(launcher_, "status_reason", None)
            if status_reason is None or launcher_.poll(worker)[0] != WorkerState.STARTING:
                continue
            reason = status_reason(worker)
            if reason and reason != worker.reason:
                changed.append(worker.model_copy(update={"reason": reason}))
        return changed

    def _end_workers(self, job: Job) -> Job:
        """Once a job is done no worker has anything left to do: give them a moment to exit, stop the rest.

        Looking at each worker until it has ended also lets its launcher clean up after it (the
        docker launcher keeps a container's log and exit status, then removes the container).
        A worker's record keeps its own account of why it stopped and what it worked.
        """
        waiting = [w for w in job.workers.values() if w.id not in self._reaped]
        exits: dict[str, tuple[Worker, WorkerState, int | None, str]] = {}
        for grace, stopped in ((EXIT_GRACE_SECONDS, ""), (STOP_GRACE_SECONDS, f"stopped: the job had ended {job.status.value}")):
            deadline = time.monotonic() + grace
            while waiting:
                live = []
                for worker in waiting:
                    state, code = self.launcher_of(worker).poll(worker)
                    if state in LIVE:
                        live.append(worker)
                    else:
                        self._reaped.add(worker.id)
                        if worker.state in LIVE:  # else the worker recorded its own end
                            exits[worker.id] = (worker, state, code, stopped)
                waiting = live
                if not waiting or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
            for worker in waiting if not stopped else []:
                self.launcher_of(worker).stop(worker)  # a worker stops gracefully on SIGTERM and says why
        if not exits and not waiting:
            return job
        fresh = self.store.jobs.get(job.job_id).workers  # with what each worker wrote of itself at its exit
        ended = []
        for worker, state, code, stopped in exits.values():
            record = fresh.get(worker.id, worker)
            ended.append(self._ended(record, state, code, stopped))
        for worker in waiting:  # still running after SIGTERM and its grace: left as it is, said so
            ended.append(worker.model_copy(update={"reason": f"still running after SIGTERM; the job had ended "
                                                             f"{job.status.value}"}))
        return self.store.jobs.record_workers(job.job_id, ended)

    def _replace(self, job: Job, gone: list[Worker], alive: list[Worker]) -> Job:
        bot = self.store.bots.get(job.bot)
        for worker in gone:
            if self.budget(job) <= 0:
                if not alive:
                    return self.store.jobs.fail(job.job_id, "every worker died and the relaunch budget is spent; "
                                                           "see the workers' logs and `spotbot retry`")
                break
            self._budgets[job.job_id] -= 1
            try:
                alive.append(self.scheduler.relaunch(job, bot, worker,
                                                     reason=f"{worker.reason or 'ended'} while work remained"))
            except (LaunchError, ConfigError) as exc:  # tried again at the next look, while the budget lasts
                self.store.jobs.note(job.job_id, f"could not relaunch worker {worker.id}: {exc}")
                if not alive and self.budget(job) <= 0:
                    return self.store.jobs.fail(job.job_id, f"no worker could be started: {exc}")
        return self.store.jobs.get(job.job_id)

    def _check_endpoints(self, job: Job) -> None:
        now = time.monotonic()
        if now - self._endpoints_checked.get(job.job_id, 0.0) < ENDPOINT_CHECK_SECONDS:
            return
        self._endpoints_checked[job.job_id] = now
        for spec in self.store.bots.get(job.bot).endpoints():
            found = self.store.endpoints.get(spec.name)
            try:
                endpoint = self.scheduler.endpoints.ensure_one(spec)  # reuses it when it answers /ping
            except SpotbotError as exc:
                self.store.jobs.note(job.job_id, f"endpoint {spec.name} is down: {exc}")
                continue
            if found is not None and (found[0].url, found[0].pid) != (endpoint.url, endpoint.pid):
                self.store.jobs.note(job.job_id, f"endpoint {spec.name} stopped answering /ping; restarted at {endpoint.url}")

    def watch(self, job_id: str) -> Iterator[Job]:
        """Yield the job after every look until it ends; rides out Elasticsearch or S3 being briefly away."""
        while True:
            job = retrying(lambda: self.step(job_id), seconds=self.settings.retry_seconds, what=f"supervising {job_id}")
            yield job
            if job.status.terminal:
                return
            time.sleep(self.settings.poll_seconds)

    def watch_all(self) -> Iterator[list[Job]]:
        """Supervise every RUNNING job until none is left."""
        while True:
            running = list(self.store.jobs.each(status=JobStatus.RUNNING))
            if not running:
                return
            yield [self.step(job.job_id) for job in running]
            time.sleep(self.settings.poll_seconds)
