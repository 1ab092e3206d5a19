"""The images the API labels: items of ONE long-running job of the image bot, worked by the same workers as batch jobs.

An image is stored under a random UUID key (<SPOTBOT_API_IMAGES_URI>images/<uuid>.<ext>) and
added to the job with Scheduler.add_files; its state is its file document, read by id (an
mget over the few extensions the key can have, never a search), so it is current the moment
the image was recorded. Seed 000's "NOT_CLASSIFIED" is a file not yet worked.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as StillOpening
from dataclasses import dataclass, field

from ..errors import NotFound, NotReady
from ..models import FileStatus, FileTask, Job
from ..scheduler import Scheduler
from ..settings import Settings
from ..storage import S3Location, Storage, parse_uri
from ..store import Store
from .background import Background
from .fetch import FetchedImage, ImageFetcher
from .formats import FORMATS, STORED_EXTENSIONS

log = logging.getLogger("spotbot.api.labelling")

NOT_CLASSIFIED = "NOT_CLASSIFIED"
CLASSIFIED = "CLASSIFIED"
ERROR = "ERROR"


@dataclass
class ImageState:
    id: str
    status: str  # NOT_CLASSIFIED, CLASSIFIED or ERROR
    labels: list[tuple[str, float | None]] = field(default_factory=list)  # (class name, score), best first
    error: str = ""

    def seed_label(self) -> str:
        """Seed 000's ImageLabel: the top classes' first names joined by ', ' (or the status while there are none)."""
        if self.status != CLASSIFIED:
            return self.status
        return ", ".join(name.split(", ")[0] for name, _ in self.labels)


def labels_of(task: FileTask) -> list[tuple[str, float | None]]:
    """A worked file's labels with their scores: the bot's output keeps both ({"labels": [...], "scores": [...]})."""
    output = task.output if isinstance(task.output, dict) else {}
    names = output.get("labels") or task.labels
    scores = output.get("scores") or []
    pairs: list[tuple[str, float | None]] = []
    for i, entry in enumerate(names):
        if isinstance(entry, dict):  # a bot that returns [{"label": ..., "score": ...}, ...]
            pairs.append((str(entry.get("label", "")), _score(entry.get("score"))))
        else:
            pairs.append((str(entry), _score(scores[i]) if i < len(scores) else None))
    return pairs


def _score(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


class ImageLabelling:
    def __init__(self, settings: Settings, store: Store, storage: Storage, scheduler: Scheduler, background: Background,
                 fetcher: ImageFetcher):
        self.settings, self.store, self.storage = settings, store, storage
        self.scheduler, self.background, self.fetcher = scheduler, background, fetcher
        self.bot = settings.api_image_bot
        self.job_id = settings.api_image_job
        root = parse_uri(settings.images_uri(), field="SPOTBOT_API_IMAGES_URI")
        self.images = S3Location(root.bucket, root.key("images") + "/")
        self.labels = S3Location(root.bucket, root.key("labels") + "/")
        self._lock = threading.Lock()
        self._opening: Future | None = None
        self._opened = False

    def start(self) -> None:
        """Open (or reopen, relaunching its workers) the labelling job in the background when its bot is registered."""
        try:
            self.store.bots.get(self.bot)
        except NotFound:
            log.info("image routes wait for bot %r to be registered", self.bot)
            return
        self._open_in_background()

    # --- the job --------------------------------------------------------------------------------

    def _open_in_background(self) -> Future:
        with self._lock:
            failed = self._opening is not None and self._opening.done() and self._opening.exception() is not None
            if self._opening is None or failed:
                self._opening = self.background.run(f"opening the image job {self.job_id}", self._open)
            return self._opening

    def _open(self) -> Job:
        try:
            self.store.bots.get(self.bot)
        except NotFound:
            raise NotReady(f"the image bot {self.bot!r} is not registered; register it with `spotbot bots register "
                           "bots/image_labeller/bot_config.json` or POST /bots, or name another in "
                           "SPOTBOT_API_IMAGE_BOT", bot=self.bot) from None
        self.storage.ensure_bucket(self.images.bucket, expected_owner=self.settings.aws_account(),
                                   field="SPOTBOT_API_IMAGES_URI")
        job = self.scheduler.open(self.bot, self.images.uri, self.labels.uri, job_id=self.job_id)
        self.background.supervise(job.job_id)
        self._opened = True
        return job

    def job(self) -> str:
        """The labelling job's id, once it takes files; it is opened (idempotently) on first need."""
        if self._opened:
            return self.job_id
        opening = self._open_in_background()
        try:
            existing = self.store.jobs.get(self.job_id)
        except NotFound:
            existing = None
        if existing is not None and existing.accepting and not existing.status.terminal:
            return self.job_id  # from an earlier run of the server: it takes files while its workers come back
        if existing is not None:
            raise NotReady(f"the image labelling job {self.job_id} has ended ({existing.status.value}"
                           f"{', closed' if not existing.accepting else ''}); set SPOTBOT_API_IMAGE_JOB to a new id "
                           "and restart spotbot serve", job_id=self.job_id)
        try:
            opening.result(timeout=self.settings.endpoint_start_timeout + 60)
        except StillOpening:
            raise NotReady(f"the image labelling job {self.job_id} is still starting; try again shortly") from None
        return self.job_id

    # --- images ---------------------------------------------------------------------------------

    def fetch(self, url: str, *, require_extension: bool = False) -> FetchedImage:
        return self.fetcher.fetch(url, require_extension=require_extension)

    def submit(self, image: FetchedImage) -> str:
        """Store the image under a new UUID and record it in the labelling job; returns its id."""
        job_id = self.job()
        image_id = str(uuid.uuid4())
        extension, content_types = FORMATS[image.format]
        key = f"{self.images.prefix}{image_id}.{extension}"
        self.storage.write(self.images.bucket, key, image.data, content_types[0])
        try:
            self.scheduler.add_files(job_id, [(key, len(image.data))])
        except Exception:
            try:  # nothing half-written: an image that is not recorded is not kept either
                self.storage.delete(self.images.bucket, key)
            except Exception as exc:
                log.warning("could not remove unrecorded image s3://%s/%s: %s", self.images.bucket, key, exc)
            raise
        return image_id

    def state(self, image_id: str) -> ImageState:
        """An image's state, from its file document read by id; NotFound for an id the API never gave."""
        keys = [f"{self.images.prefix}{image_id}.{ext}" for ext in STORED_EXTENSIONS]
        found = [t for t in self.store.files.get([FileTask.doc_id(self.job_id, self.images.bucket, k) for k in keys]) if t]
        if not found:
            raise NotFound(f"no image {image_id}; the id comes from /submit-image or POST /images", image_id=image_id)
        task = found[0]
        if task.status == FileStatus.COMPLETED:
            return ImageState(image_id, CLASSIFIED, labels_of(task))
        if task.status.terminal:
            return ImageState(image_id, ERROR, error=task.error or task.status.value)
        return ImageState(image_id, NOT_CLASSIFIED)
