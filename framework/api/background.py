"""Long work the API started (scans, retries, cancels, opening the image job), and supervision of its jobs.

A request records what it was asked for and answers; the work goes on here, in two lanes of
threads: SCANS (submits, retries, opening the image job: long, a scan of millions of keys takes
minutes) and CONTROL (cancels: the verb a user waits on), so a cancel never queues behind scans.
(A close is quick and runs in the request's own thread, never here.) Jobs the server
started are supervised as `spotbot submit --wait` would (dead workers relaunched, dead
endpoints restarted) until they end. Correctness never depends on this: a scan interrupted
by a restart resumes when the same job id is submitted again, and leases let living
workers finish a dead one's chunk.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Callable, TypeVar

from ..errors import SpotbotError
from ..scheduler import Scheduler
from ..supervisor import Supervisor

log = logging.getLogger("spotbot.api.background")
T = TypeVar("T")
SCANS, CONTROL = "scans", "control"
# threads per lane: scans are few at once and long; a cancel holds its thread while it drains the chunks workers
# still hold (up to a lease period), so its lane has more, and one cancel per job runs at a time (run's key)
LANE_THREADS = {SCANS: 4, CONTROL: 8}


class Background:
    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler
        self.supervisor = Supervisor(scheduler)
        self.poll_seconds = scheduler.settings.poll_seconds
        # daemon threads, not a ThreadPoolExecutor (whose threads the interpreter waits for at exit):
        # stopping the server must not wait for a long scan, which a resubmit of its job id resumes
        self._lanes: dict[str, queue.Queue[tuple[Future, Callable[[], object]]]] = \
            {lane: queue.Queue() for lane in LANE_THREADS}
        self._threads = [threading.Thread(target=self._worker, args=(self._lanes[lane],), daemon=True,
                                          name=f"spotbot-api-{lane}-{i}")
                         for lane, count in LANE_THREADS.items() for i in range(count)]
        self._keyed: dict[str, Future] = {}
        self._jobs: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="spotbot-api-supervisor", daemon=True)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop supervising and taking work; work under way is dropped with the process (every step can be resumed)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def run(self, what: str, call: Callable[[], T], *, on_error: Callable[[Exception], None] | None = None,
            lane: str = SCANS, key: str | None = None) -> Future:
        """Do call() on a thread of the lane; a failure is logged and handed to on_error (e.g. to fail the job).

        With a key, a call of that key still under way is not started twice: its future is returned.
        """
        if key is not None:
            with self._lock:
                running = self._keyed.get(key)
                if running is not None and not running.done():
                    return running

        def work() -> T:
            try:
                return call()
            except Exception as exc:
                level = logging.WARNING if isinstance(exc, SpotbotError) else logging.ERROR
                log.log(level, "%s failed: %s", what, exc, exc_info=not isinstance(exc, SpotbotError))
                if on_error is not None:
                    try:
                        on_error(exc)
                    except Exception as nested:  # recording the failure failed too (the store is away)
                        log.warning("could not record that %s failed: %s", what, nested)
                raise

        future: Future = Future()
        if key is not None:
            with self._lock:
                self._keyed = {k: f for k, f in self._keyed.items() if not f.done()}
                self._keyed[key] = future
        self._lanes[lane].put((future, work))
        return future

    @staticmethod
    def _worker(work: queue.Queue) -> None:
        while True:
            future, call = work.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to whoever waits on the future (work() logged it)
                future.set_exception(exc)

    def supervise(self, job_id: str) -> None:
        with self._lock:
            self._jobs.add(job_id)

    def supervised(self) -> list[str]:
        with self._lock:
            return sorted(self._jobs)

    def _supervise(self) -> None:
        while not self._stopping.wait(self.poll_seconds):
            for job_id in self.supervised():
                try:
                    job = self.supervisor.step(job_id)
                except SpotbotError as exc:  # the store or S3 away for a moment: look again next round
                    log.warning("supervising %s: %s", job_id, exc)
                    continue
                except Exception:
                    log.exception("supervising %s failed", job_id)
                    continue
                if job.status.terminal:
                    with self._lock:
                        self._jobs.discard(job_id)
