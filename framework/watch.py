"""Watch mode (seed 001): a long-running job that records the new objects of an S3 prefix as they appear.

How new objects are found:
- A listing from a high-water mark. S3 lists keys in lexicographic order, so each look asks only
  for the keys after the greatest key seen so far (ListObjectsV2 StartAfter): a look at a quiet
  prefix costs one request, however many objects it holds. The mark is kept in the job's cursor,
  written only after the keys up to it are recorded, so a watcher that stops or dies resumes from
  it and skips nothing.
- Keys that sort below the mark (names that do not grow, a late upload into an old folder) are
  not after it: a sweep lists the whole prefix every `sweep_seconds` and proposes the objects
  modified since the last complete sweep began, less SWEEP_MARGIN_MS (clock skew between S3 and
  us, and a long upload whose LastModified is when it began).
- With an SQS queue of S3 event notifications, the events say at once which objects were created;
  listing then runs at start (to catch up) and in sweeps (for events lost or never sent).
- Nothing is recorded twice: proposed keys are first looked up by id (a file's id derives from
  job, bucket and key), and Scheduler.add_files records only new keys anyway.
- An object overwritten in place keeps its key, so it is the same file, but a new version of it
  (another ETag, or VersionId in a versioned bucket) is worked again: the file is reopened with
  the new version (Scheduler.rework). The listing after the mark does not see it (its key sorts
  below the mark): a sweep does, or an S3 event heard on a queue.
- Outputs never land under the input prefix (the scheduler refuses overlapping prefixes), so a
  watcher never takes its own results for new files.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .errors import ConfigError, WrongState
from .models import Job, now_ms
from .retry import retrying
from .s3events import EventQueue
from .scheduler import Scheduler, overwritten
from .storage import S3Object, has_suffix, parse_uri
from .supervisor import Supervisor

log = logging.getLogger("spotbot.watch")

SWEEP_MARGIN_MS = 3600 * 1000
ADD_BATCH = 1000  # keys per add_files call


@dataclass
class Look:
    """What one look at the prefix (and the queue) found."""

    recorded: list[str] = field(default_factory=list)  # keys recorded by this look (new, or overwritten in place)
    listed: int = 0  # objects listed
    messages: int = 0  # queue messages handled
    swept: bool = False


class Watcher:
    """Records the new objects of a long-running job's input prefix, and supervises the job's workers."""

    def __init__(self, scheduler: Scheduler, job: Job, *, interval: float, sweep_seconds: float,
                 queue: EventQueue | None = None):
        self.scheduler = scheduler
        self.store = scheduler.store
        self.storage = scheduler.storage
        self.settings = scheduler.settings
        self.job_id = job.job_id
        self.interval = interval
        self.sweep_seconds = sweep_seconds
        self.queue = queue
        self.source = parse_uri(job.input_uri, field="input")
        self.file_types = self.store.bots.get(job.bot).file_types
        self.cursor = dict(job.cursor)
        self.supervisor = Supervisor(scheduler)
        self.stop = threading.Event()
        self._caught_up = False

    @classmethod
    def open(cls, scheduler: Scheduler, bot_name: str, input_uri: str, output_uri: str, *, workers: int | None = None,
             job_id: str | None = None, concurrency: int | None = None, interval: float, sweep_seconds: float, queue: EventQueue | None = None,
             skip_existing: bool = False, incremental: bool = False) -> "Watcher":
        """Open (or reopen) the long-running job and a watcher of its prefix (incremental: see Scheduler.submit)."""
        if queue is not None:
            queue.check()
        job = scheduler.open(bot_name, input_uri, output_uri, workers=workers, job_id=job_id, concurrency=concurrency,
                             incremental=incremental)
        if job.status.terminal:
            raise ConfigError(f"job {job.job_id} has ended ({job.status.value}); watch with a new job id", field="job_id")
        if skip_existing and "since" not in job.cursor and not job.cursor.get("mark"):
            # only the first watcher of a job decides: a resumed watcher keeps what the job was started with.
            # S3 keeps LastModified in whole seconds: an object of this very second counts as new, rather than be lost
            since = now_ms() // 1000 * 1000
            job = scheduler.store.jobs.save_cursor(job.job_id, since=since)
        return cls(scheduler, job, interval=interval, sweep_seconds=sweep_seconds, queue=queue)

    # --- one look ----------------------------------------------------------------------------

    def wanted(self, obj: S3Object) -> bool:
        """Whether the bot takes it: under the prefix, of its file types, not left by --skip-existing."""
        key = obj.key
        if key.endswith("/") or not key.startswith(self.source.prefix) or not has_suffix(key, self.file_types):
            return False
        return obj.modified_ms >= self.cursor.get("since", 0)

    def look(self) -> Look:
        """Hear the queue (if any), then list after the mark, or sweep the whole prefix when a sweep is due."""
        look = Look()
        if self.queue is not None:
            self._hear(look)
        if self._sweep_due():
            self._list(look, sweep=True)
        elif self.queue is None or not self._caught_up:
            self._list(look, sweep=False)
        self._caught_up = True
        return look

    def _sweep_due(self) -> bool:
        if self.sweep_seconds <= 0 or "swept_at" not in self.cursor:
            return False  # the first listing (from an empty mark) is a full one and sets swept_at
        return now_ms() - self.cursor["swept_at"] >= self.sweep_seconds * 1000

    def _list(self, look: Look, *, sweep: bool) -> None:
        began = now_ms()
        mark = self.cursor.get("mark", "")
        full = sweep or not mark
        threshold = self.cursor.get("swept_at", 0) - SWEEP_MARGIN_MS if sweep else 0
        for page in self.storage.objects(self.source, start_after="" if full else mark):
            if self.stop.is_set():
                return  # asked to stop in the middle of a long listing: the mark says how far it got
            if not page:
                continue
            look.listed += len(page)
            # the age test is for keys at or below the mark only: one above it was never listed, whatever its age
            look.recorded += self._record([obj for obj in page if (obj.key > mark or obj.modified_ms >= threshold)
                                           and self.wanted(obj)])
            if page[-1].key > self.cursor.get("mark", ""):
                self._save(mark=page[-1].key)  # only once the keys up to it are recorded
        if sweep or (full and "swept_at" not in self.cursor):
            self._save(swept_at=began)  # (an empty prefix is listed in full every look: no need to say so each time)
            look.swept = sweep

    def _hear(self, look: Look) -> None:
        assert self.queue is not None  # noqa: S101 -- narrows the type: _hear runs only for a watcher given a queue
        messages = self.queue.receive(wait_seconds=self.interval)
        if not messages:
            return
        objects = [S3Object(o.key, o.size, now_ms()) for m in messages for o in m.objects if o.bucket == self.source.bucket]
        look.recorded += self._record([obj for obj in objects if self.wanted(obj)])
        self.queue.delete(messages)  # after recording: a watcher dying before this hears them again
        look.messages += len(messages)
        ignored = sum(1 for m in messages if not m.understood)
        if ignored:
            self.store.jobs.note(self.job_id, f"watch: {ignored} queue message(s) were not S3 event notifications")

    def _record(self, objects: list[S3Object]) -> list[str]:
        """Add the objects not yet recorded to the job, and work again those overwritten since they were;
        returns their keys."""
        if not objects:
            return []
        known = self.store.files.by_key(self.job_id, self.source.bucket, [obj.key for obj in objects])
        fresh = list({obj.key: obj for obj in objects if obj.key not in known}.values())
        changed = [obj for obj in objects if obj.key in known and overwritten(known[obj.key], obj)]
        recorded: list[str] = []
        for start in range(0, len(fresh), ADD_BATCH):
            recorded += self.scheduler.add_files(self.job_id, fresh[start:start + ADD_BATCH])
        if changed:
            recorded += self.scheduler.rework(self.job_id, changed)
        return recorded

    def _save(self, **changes) -> None:
        self.cursor.update(changes)
        self.store.jobs.save_cursor(self.job_id, **changes)

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_look: Callable[[Look, Job], None] | None = None) -> Job:
        """Look, supervise, wait; until stop is set, or the job is closed or ends elsewhere. Returns the job."""
        self.stop = stop
        while True:
            started = time.monotonic()
            job = self.store.jobs.get(self.job_id)
            look = Look()
            if job.accepting and not job.status.terminal:
                try:
                    look = retrying(self.look, seconds=self.settings.retry_seconds, what=f"watching {self.source.uri}")
                except WrongState:
                    job = self.store.jobs.get(self.job_id)
                    if job.accepting and not job.status.terminal:
                        raise
                    # closed or ended (`spotbot close` / `cancel`) while this look was recording: nothing to add
            job = retrying(lambda: self.supervisor.step(self.job_id), seconds=self.settings.retry_seconds,
                           what=f"supervising {self.job_id}")
            if on_look:
                on_look(look, job)
            if job.status.terminal or not job.accepting:
                return job
            # what the look took (a queue's long poll waits up to an interval) counts against the interval
            rest = self.interval - (time.monotonic() - started)
            if stop.is_set() or stop.wait(max(0.0, rest)):
                return job

