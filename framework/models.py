"""The domain's records: bots, jobs, chunks, files, endpoints, workers, and their statuses."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SEED_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def now_ms() -> int:
    return int(time.time() * 1000)


def seed_date() -> str:
    """A timestamp in the format of the seed's bot_config.json."""
    return dt.datetime.now().strftime(SEED_DATE_FORMAT)


class JobStatus(str, Enum):
    SCANNING = "SCANNING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.SCANNING, JobStatus.RUNNING)


class FileStatus(str, Enum):
    NOT_STARTED = "NOT_STARTED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    # an incremental job found a COMPLETED result of this very object version and model (reused_from, output_uri):
    # not worked by this job, so not COMPLETED by it; its output is the earlier job's
    SKIPPED = "SKIPPED"

    @property
    def terminal(self) -> bool:
        return self in (FileStatus.COMPLETED, FileStatus.ERROR, FileStatus.CANCELLED, FileStatus.SKIPPED)


class ChunkStatus(str, Enum):
    PENDING = "PENDING"  # recorded, its files still being written: nobody may claim it yet
    OPEN = "OPEN"
    LEASED = "LEASED"
    DONE = "DONE"


class EndpointStatus(str, Enum):
    CREATING = "CREATING"
    IN_SERVICE = "IN_SERVICE"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


class WorkerState(str, Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    EXITED = "EXITED"
    FAILED = "FAILED"
    LOST = "LOST"


def split_list(value: str | list[str] | None) -> list[str]:
    """The seed's comma-separated strings (or real lists) as a list of stripped items."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items]


# Bounds on what a registration may hold: generous for any real bot, small enough that checking and storing one
# costs nothing (one registration of 5 million suffixes once held the API's CPU for minutes and its memory grew 6x)
MAX_FILE_TYPES = 100
MAX_SUFFIX_LENGTH = 32
MAX_ENDPOINTS = 16
SUFFIX_PATTERN = re.compile(r"\.[a-z0-9][a-z0-9._-]{0,%d}" % (MAX_SUFFIX_LENGTH - 2))
MODULE_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
PYTHON_PREFIX = "python:"


def check_python_reference(reference: str) -> str:
    """A python: reference's form, python:<file.py> or python:<dotted.module>; ValueError for anything else.

    Whether the file or module exists, and where it may be, is checked where it is resolved
    (bot_config.resolve_references): the CLI against the file's folder, the API under SPOTBOT_API_BOTS_DIR.
    """
    target = reference[len(PYTHON_PREFIX):]
    if (target.endswith(".py") and len(target) > 3 and "\0" not in target) or MODULE_PATTERN.fullmatch(target):
        return reference
    raise ValueError(f"{reference!r} is neither python:<file.py> nor python:<module.name>")


class BotConfig(BaseModel):
    """A bot registration, in the field names of the seed's bot_config.json."""

    # str_max_length: Elasticsearch refuses a keyword longer than 32766 bytes; a field this long is a mistake anyway
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, str_max_length=4096)

    name: str
    file_types: list[str]
    bot_image: str
    bot_image_cmd: str = ""
    endpoint_name: str = ""
    endpoint_ecr_image_path: str = ""
    instance_type: str = "ml.m5.large"
    model_s3_path: str = ""
    es_url: str = ""
    create_date: str = Field(default_factory=seed_date)
    update_date: str = Field(default_factory=seed_date)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(
                "must start with a letter and hold only letters, digits, '_' or '-' (at most 64 characters)"
            )
        return value

    @field_validator("file_types", mode="before")
    @classmethod
    def _file_types(cls, value: Any) -> list[str]:
        if not isinstance(value, (str, list)):
            raise ValueError('must be a string like ".jpg,.png" or a list of suffixes')
        # counted before anything is split or compared, and duplicates dropped through a dict (ordered, O(1)
        # membership): the check is linear in a body that is itself bounded (SPOTBOT_API_MAX_BODY_BYTES)
        count = len(value) if isinstance(value, list) else value.count(",") + 1
        if count > MAX_FILE_TYPES:
            raise ValueError(f"lists {count} suffixes; at most {MAX_FILE_TYPES} are allowed")
        types: dict[str, None] = {}
        for item in split_list(value):
            if not item:
                continue
            if len(item) > MAX_SUFFIX_LENGTH:
                raise ValueError(f"{item[:MAX_SUFFIX_LENGTH]!r}... is longer than {MAX_SUFFIX_LENGTH} characters")
            suffix = item.lower() if item.startswith(".") else "." + item.lower()
            if not SUFFIX_PATTERN.fullmatch(suffix):
                raise ValueError(f"{item!r} is not a file suffix like .jpg")
            types[suffix] = None
        if not types:
            raise ValueError('must name at least one suffix, like ".jpg,.png"')
        return list(types)

    @field_validator("bot_image")
    @classmethod
    def _bot_image(cls, value: str) -> str:
        if not value:
            raise ValueError("must name a container image or python:<task.py or module>")
        if value.startswith(PYTHON_PREFIX):
            check_python_reference(value)
        return value

    @field_validator("endpoint_ecr_image_path")
    @classmethod
    def _endpoint_images(cls, value: str) -> str:
        for image in split_list(value) if value else []:
            if image.startswith(PYTHON_PREFIX):
                check_python_reference(image)
        return value

    @model_validator(mode="after")
    def _endpoints(self) -> "BotConfig":
        names = split_list(self.endpoint_name) if self.endpoint_name else []
        images = split_list(self.endpoint_ecr_image_path) if self.endpoint_ecr_image_path else []
        models = split_list(self.model_s3_path) if self.model_s3_path else []
        if len(names) > MAX_ENDPOINTS:
            raise ValueError(f"endpoint_name lists {len(names)} endpoints; at most {MAX_ENDPOINTS} are allowed")
        if len(names) != len(images):
            raise ValueError(
                f"endpoint_name lists {len(names)} endpoint(s) but endpoint_ecr_image_path lists "
                f"{len(images)}: give one image per endpoint, comma-separated in the same order"
            )
        if models and len(models) != len(names):
            raise ValueError(
                f"model_s3_path lists {len(models)} path(s) for {len(names)} endpoint(s): give one per "
                "endpoint (empty between commas where an endpoint has none)"
            )
        for name in names:
            if not NAME_PATTERN.match(name):
                raise ValueError(f"endpoint_name {name!r} must start with a letter and hold only letters, digits, '_' or '-'")
        for path in models:
            if path and not path.startswith("s3://"):
                raise ValueError(f"model_s3_path {path!r} must be an s3:// URI of a .tar.gz")
        if any(not image for image in images):
            raise ValueError("endpoint_ecr_image_path has an empty entry")
        return self

    def endpoints(self) -> list["EndpointSpec"]:
        names = split_list(self.endpoint_name) if self.endpoint_name else []
        images = split_list(self.endpoint_ecr_image_path) if self.endpoint_ecr_image_path else []
        models = split_list(self.model_s3_path) if self.model_s3_path else [""] * len(names)
        return [
            EndpointSpec(name=n, image=i, model_s3_path=m, instance_type=self.instance_type)
            for n, i, m in zip(names, images, models)
        ]

    @classmethod
    def parse(cls, data: Any, *, source: str = "bot config") -> "BotConfig":
        """Validate a registration; the error names the file and the field."""
        if not isinstance(data, dict):
            raise ConfigError("must be a JSON object with the bot's fields", file=source)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            message = first["msg"].removeprefix("Value error, ")
            if first["type"] == "extra_forbidden":
                message = "is not a bot_config.json field"
            elif first["type"] == "missing":
                message = "is required"
            raise ConfigError(message, field=field, file=source) from None


class EndpointSpec(BaseModel):
    """One model endpoint a bot calls, as its registration describes it."""

    name: str
    image: str
    model_s3_path: str = ""
    instance_type: str = "ml.m5.large"


class Endpoint(BaseModel):
    """A running (or once running) endpoint, as recorded in the endpoints index."""

    name: str
    backend: str
    image: str
    model_s3_path: str = ""
    status: EndpointStatus
    url: str = ""
    pid: int | None = None
    host: str = ""
    error: str = ""
    created_at: int = Field(default_factory=now_ms)
    updated_at: int = Field(default_factory=now_ms)


class Worker(BaseModel):
    """One launched bot worker, as recorded on its job."""

    id: str
    job_id: str
    batch_id: int
    backend: str
    state: WorkerState = WorkerState.STARTING
    pid: int | None = None
    host: str = ""
    exit_code: int | None = None
    reason: str = ""
    vcpus: float | None = None  # what the back end gives it (None: it shares the machine)
    # it was stopped from outside while its job ran (SIGTERM, a Spot interruption notice), and gave its work back
    interrupted: bool = False
    memory_mb: int | None = None
    started_at: int = Field(default_factory=now_ms)
    ended_at: int | None = None


class Job(BaseModel):
    """One run of one bot over one S3 prefix."""

    job_id: str
    bot: str
    input_uri: str
    output_uri: str
    status: JobStatus = JobStatus.SCANNING
    total: int = 0
    chunks: int = 0
    workers_requested: int = 1
    concurrency: int = 1  # files each worker works at once (SPOTBOT_CONCURRENCY when the job was submitted)
    workers: dict[str, Worker] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    error: str = ""
    events: list[str] = Field(default_factory=list)
    retries: int = 0
    # what its results depend on (framework/fingerprint.py): an incremental job reuses results of the same one
    fingerprint: str = ""
    # files whose object version has a COMPLETED result of this bot and fingerprint are SKIPPED, not worked
    incremental: bool = False
    # a long-running job (watch mode, the image API) takes new files until it is closed
    accepting: bool = False
    # add_files calls under way (token -> expiry, epoch ms): the job cannot end while one may still write
    adding: dict[str, int] = Field(default_factory=dict)
    # a long-running job's own progress, kept across restarts (e.g. the watcher's listing mark)
    cursor: dict[str, Any] = Field(default_factory=dict)
    created_at: int = Field(default_factory=now_ms)
    running_at: int | None = None
    finished_at: int | None = None
    closed_at: int | None = None  # when a long-running job stopped taking files

    def adds_under_way(self, now: int | None = None) -> bool:
        now = now_ms() if now is None else now
        return any(expiry > now for expiry in self.adding.values())

    def note(self, event: str) -> None:
        """Record what happened to the job (a relaunch, a restart) with a UTC timestamp."""
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.events = [*self.events, f"{stamp} {event}"][-200:]


class Chunk(BaseModel):
    """A run of up to chunk_size files: the unit of work, of leases and of counting.

    `counts` holds how many of the chunk's own files are in each status (a file listed by two
    chunks, as after a re-scan, belongs to the one its document names). Only the chunk's
    lease holder changes its files, and it writes their new states and these counts in the
    same bulk request, so a job's counts are a sum over its chunks, never an aggregation over
    its files (see store/chunks.py for why they cannot drift).
    """

    chunk_id: str
    job_id: str
    seq: int
    batch_id: int
    file_ids: list[str]
    status: ChunkStatus = ChunkStatus.PENDING
    lease_owner: str = ""
    lease_expires_at: int = 0
    claims: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    in_flight: int = 0  # files its lease holder was working at its last write
    # its last holder lost the lease with work under way (it died, or lost Elasticsearch): work its files carefully
    suspect: bool = False
    # claimed while PENDING (its writer was slower than the grace): files may be written to it after it is done
    adopted: bool = False
    created_at: int = Field(default_factory=now_ms)
    done_at: int | None = None


class FileTask(BaseModel):
    """One file of one job: the unit of status."""

    job_id: str
    bot: str
    bucket: str
    file_key: str
    chunk_id: str
    batch_id: int
    status: FileStatus = FileStatus.NOT_STARTED
    attempts: int = 0
    in_flight: bool = False
    worker_id: str = ""
    workers: list[str] = Field(default_factory=list)
    output_uri: str = ""
    labels: list[str] = Field(default_factory=list)
    # how sure the model was of its first label, as the task reports it: queryable, like seed 001's ConfidenceScore
    confidence: float | None = None
    # each label with its own score ({"label", "score"}), where the task gave one: `stats --by label` averages these
    label_scores: list[dict[str, Any]] = Field(default_factory=list)
    output: Any = None
    error: str = ""
    # the error's cause with its variable parts masked (framework/signatures.py): `spotbot errors` groups by it
    error_signature: str = ""
    # how many times the file ended ERROR, never reset by a retry: spotbot_bot_files_failed_total stays a counter
    failures: int = 0
    # completed_at - started_at of the attempt that completed it: the processing-time histogram of /metrics
    duration_ms: int | None = None
    size: int = 0
    # the object version the scan recorded: the worker reads exactly it (IfMatch on the ETag, or the VersionId)
    etag: str = ""
    version_id: str = ""
    modified_at: int | None = None  # its LastModified, epoch ms (S3's clock)
    fingerprint: str = ""  # the job's fingerprint when this file was COMPLETED (what its output depends on)
    reused_from: str = ""  # SKIPPED: the job whose result (output_uri) this file reuses
    created_at: int = Field(default_factory=now_ms)
    started_at: int | None = None
    completed_at: int | None = None

    @staticmethod
    def doc_id(job_id: str, bucket: str, key: str) -> str:
        """Deterministic, so recording the same prefix twice never duplicates a file."""
        return hashlib.sha256(f"{job_id}\0{bucket}\0{key}".encode()).hexdigest()[:40]


class LatestResult(BaseModel):
    """The latest COMPLETED result of one bot for one object (bot, bucket, key): what an incremental job reuses.

    Written in the same bulk request as the file's completion (FileStore.flush), read by id
    (`doc_id`), never searched: an incremental scan costs at most one mget per chunk.
    """

    bot: str
    bucket: str
    file_key: str
    job_id: str
    etag: str = ""
    version_id: str = ""
    size: int = 0
    fingerprint: str
    output_uri: str
    completed_at: int | None = None

    @staticmethod
    def doc_id(bot: str, bucket: str, key: str) -> str:
        return hashlib.sha256(f"{bot}\0{bucket}\0{key}".encode()).hexdigest()[:40]

    def matches(self, *, etag: str, version_id: str, size: int, fingerprint: str) -> bool:
        """Whether this result is of that very object version (VersionId, else ETag and size), by the same model."""
        if not fingerprint or self.fingerprint != fingerprint:
            return False
        if version_id and self.version_id:
            return version_id == self.version_id
        return bool(etag) and etag == self.etag and size == self.size
