"""Model endpoints: make sure a bot's endpoints exist (reuse, never recreate) and invoke them."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from ..errors import ConfigError, EndpointError, InUse, NotFound, SpotbotError
from ..models import BotConfig, Endpoint, EndpointSpec, EndpointStatus, JobStatus, now_ms
from ..retry import retrying
from ..settings import Settings
from ..storage import Storage
from ..store import Store
from .model_archive import unpack

log = logging.getLogger("spotbot.endpoints")


class EndpointBackend(Protocol):
    """What a way of running endpoints provides; one file per backend.

    Optional attributes: `unpacks_model` (False when the service fetches model_s3_path itself:
    start() then gets no model_dir), `start_timeout` (seconds start() may take, when not
    SPOTBOT_ENDPOINT_START_TIMEOUT) and `guards_ownership` (True when stop() refuses what the
    backend did not create and takes `force=True` to delete it anyway).
    """

    name: str

    def check(self, image: str) -> None: ...
    def start(self, spec: EndpointSpec, model_dir: Path) -> Endpoint: ...
    def healthy(self, endpoint: Endpoint) -> bool: ...
    def invoke(self, endpoint: Endpoint, body: bytes, content_type: str, accept: str) -> bytes: ...
    def stop(self, endpoint: Endpoint) -> None: ...


def backend(name: str, settings: Settings) -> EndpointBackend:
    if name == "process":
        from .process import ProcessEndpoints

        return ProcessEndpoints(settings)
    if name == "docker":
        from .docker import DockerEndpoints

        return DockerEndpoints(settings)
    if name == "sagemaker":
        from .sagemaker import SageMakerEndpoints

        return SageMakerEndpoints(settings)
    raise ConfigError(f"unknown endpoint backend {name!r}; this version has: process, docker, sagemaker",
                      field="SPOTBOT_ENDPOINT_BACKEND")


class EndpointManager:
    def __init__(self, settings: Settings, store: Store, storage: Storage | None = None):
        self.settings = settings
        self.store = store
        self.storage = storage
        self._backends: dict[str, EndpointBackend] = {}

    def backend(self, name: str | None = None) -> EndpointBackend:
        name = name or self.settings.endpoint_backend
        if name not in self._backends:
            self._backends[name] = backend(name, self.settings)
        return self._backends[name]

    def check(self, bot: BotConfig) -> None:
        """Fail early, naming the image, when the configured backend cannot run the bot's endpoints."""
        for spec in bot.endpoints():
            self.backend().check(spec.image)

    def ensure(self, bot: BotConfig) -> list[Endpoint]:
        """Every endpoint of the bot, answering: reused when healthy, created when missing, all at once.

        Every creation runs to its end before the first failure is raised, so none is left half-made.
        """
        specs = bot.endpoints()
        if len(specs) < 2:
            return [self.ensure_one(spec) for spec in specs]
        self.backend()  # built once, before the threads share it
        with ThreadPoolExecutor(max_workers=len(specs), thread_name_prefix="endpoint") as pool:
            futures = [pool.submit(self.ensure_one, spec) for spec in specs]
        for future in futures:
            future.result()  # raises the first failure, in the bot's order
        return [future.result() for future in futures]

    def ensure_one(self, spec: EndpointSpec) -> Endpoint:
        deadline = time.monotonic() + self.settings.endpoint_start_timeout + 30
        while time.monotonic() < deadline:
            found = self.store.endpoints.get(spec.name)
            if found is None:
                reserved = self.store.endpoints.reserve(self._creating(spec))
                if reserved is None:
                    continue  # someone else reserved it just now
                return self._start(spec, *reserved)
            endpoint, seq_no, primary_term = found
            owner = self.backend(endpoint.backend)
            if endpoint.status == EndpointStatus.CREATING and now_ms() - endpoint.updated_at < self._creating_grace_ms():
                time.sleep(0.5)  # another process is creating it: wait for its result
                continue
            healthy = owner.healthy(endpoint)
            if endpoint.status == EndpointStatus.IN_SERVICE and healthy:
                return endpoint
            # recorded but gone (a stopped local process, a failed creation): start it again in its place.
            # What still answers is left alone (a SageMaker endpoint that came up after a timed-out wait):
            # start() then finds and reuses it, so an endpoint that exists is never recreated.
            if not healthy:
                owner.stop(endpoint)
            replaced = self.store.endpoints.replace(self._creating(spec), seq_no, primary_term)
            if replaced is None:
                continue
            return self._start(spec, *replaced)
        raise EndpointError(f"endpoint {spec.name!r} was still being created by another process; try again", name=spec.name)

    def _creating_grace_ms(self) -> int:
        start_timeout = getattr(self.backend(), "start_timeout", self.settings.endpoint_start_timeout)
        return int((start_timeout + 30) * 1000)

    def _creating(self, spec: EndpointSpec) -> Endpoint:
        return Endpoint(name=spec.name, backend=self.settings.endpoint_backend, image=spec.image,
                        model_s3_path=spec.model_s3_path, status=EndpointStatus.CREATING)

    def _start(self, spec: EndpointSpec, seq_no: int, primary_term: int) -> Endpoint:
        backend = self.backend()
        try:
            model_dir = self._model_dir(spec) if getattr(backend, "unpacks_model", True) else None
            endpoint = backend.start(spec, model_dir)
        except Exception as exc:
            failed = self._creating(spec)
            failed.status, failed.error = EndpointStatus.FAILED, str(exc)[:4000]
            self.store.endpoints.replace(failed, seq_no, primary_term)
            raise
        if self.store.endpoints.replace(endpoint, seq_no, primary_term) is None:
            raise EndpointError(f"endpoint {spec.name!r} record changed while it was starting", name=spec.name)
        return endpoint

    def _model_dir(self, spec: EndpointSpec) -> Path:
        """The unpacked model_s3_path (a tar.gz), or an empty folder when there is none.

        Each start unpacks into a new folder of a random name, SPOTBOT_HOME/models/<endpoint>/model-XXXXXXXX
        (the endpoint's earlier ones go): no python: reference can name it before it exists, and a name with a
        '-' in it is no importable package. The archive is removed once unpacked.
        """
        root = (self.settings.home / "models" / spec.name).resolve()
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        model_dir = Path(tempfile.mkdtemp(prefix="model-", dir=root))
        if spec.model_s3_path:
            if self.storage is None:
                raise EndpointError("no S3 storage to download the model from", name=spec.name)
            archive = root / "model.tar.gz"
            try:
                self.storage.download(spec.model_s3_path, str(archive))
                unpack(archive, model_dir, source=spec.model_s3_path, max_bytes=self.settings.model_max_bytes,
                       max_files=self.settings.model_max_files)
            except EndpointError as exc:
                exc.name = spec.name
                raise
            finally:
                archive.unlink(missing_ok=True)  # the unpacked files are what is used: the archive would double the disk
        readable_by_all(model_dir)
        return model_dir

    def list(self) -> list[tuple[Endpoint, bool]]:
        """Recorded endpoints with whether each answers now."""
        out = []
        for endpoint in self.store.endpoints.list():
            healthy = endpoint.status == EndpointStatus.IN_SERVICE and self.backend(endpoint.backend).healthy(endpoint)
            out.append((endpoint, healthy))
        return out

    def delete(self, name: str, *, force: bool = False) -> None:
        """Stop (for SageMaker: delete endpoint, config and model) and forget an endpoint.

        Refused while a job that is not over runs a bot calling it, unless forced: its workers
        would fail every file they have left. A backend that guards ownership (SageMaker) also
        refuses, unless forced, to delete what spotbot did not create.
        """
        found = self.store.endpoints.get(name)
        if found is None:
            raise NotFound(f"no endpoint named {name!r}; `spotbot endpoints list` shows them", name=name)
        users = self.users(name)
        if users and not force:
            raise InUse(f"endpoint {name!r} is used by job(s) {', '.join(users)} that are still running: cancel them "
                        "first (`spotbot cancel JOB`) or pass --force", name=name, jobs=users)
        owner = self.backend(found[0].backend)
        if force and getattr(owner, "guards_ownership", False):
            owner.stop(found[0], force=True)
        else:
            owner.stop(found[0])
        self.store.endpoints.delete(name)

    def users(self, name: str) -> list[str]:
        """Ids of the jobs not yet over whose bot calls the endpoint."""
        bots: dict[str, bool] = {}
        users = []
        for job in self.store.jobs.list():
            if job.status not in (JobStatus.SCANNING, JobStatus.RUNNING):
                continue
            if job.bot not in bots:
                try:
                    bots[job.bot] = any(spec.name == name for spec in self.store.bots.get(job.bot).endpoints())
                except NotFound:
                    bots[job.bot] = False
            if bots[job.bot]:
                users.append(job.job_id)
        return users


def readable_by_all(root: Path) -> None:
    """Let any user read the unpacked model: a container endpoint runs as uid 1000 and mounts it read-only,
    and an archive packed from files of mode 0600 would otherwise be unreadable there."""
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))


class EndpointClient:
    """How a worker calls endpoints by name: looks each up once, then invokes it.

    Transient failures (unreachable, timeouts, 429, 5xx) are retried with backoff for up to
    SPOTBOT_RETRY_SECONDS, looking the endpoint up again in between, since a restarted
    endpoint may answer at a new address; an endpoint of the bot (specs) that stopped
    answering is started again, as the supervisor would. Only a failure that persists
    reaches the task.
    """

    def __init__(self, settings: Settings, store: Store, specs: list[EndpointSpec] | None = None):
        self.manager = EndpointManager(settings, store)
        self.retry_seconds = settings.retry_seconds
        self.specs = {spec.name: spec for spec in specs or []}
        self._known: dict[str, Endpoint] = {}

    def invoke(self, name: str, body: bytes, content_type: str, accept: str) -> bytes:
        def once() -> bytes:
            endpoint = self._known.get(name) or self._lookup(name)
            return self.manager.backend(endpoint.backend).invoke(endpoint, body, content_type, accept)

        def heal() -> None:
            self._known.pop(name, None)
            if name in self.specs:
                try:
                    self.manager.ensure_one(self.specs[name])  # reuses it when it answers /ping
                except SpotbotError as exc:
                    log.warning("could not restart endpoint %s: %s", name, exc)

        return retrying(once, seconds=self.retry_seconds, what=f"invoking endpoint {name!r}", before_retry=heal)

    def _lookup(self, name: str) -> Endpoint:
        found = self.manager.store.endpoints.get(name)
        if found is None:
            raise EndpointError(f"endpoint {name!r} is not recorded; the scheduler starts a bot's endpoints at submit", name=name)
        if found[0].status != EndpointStatus.IN_SERVICE:
            # CREATING (being restarted) may turn IN_SERVICE: worth waiting for; FAILED or STOPPED is not
            raise EndpointError(f"endpoint {name!r} is {found[0].status.value}", name=name,
                                transient=found[0].status == EndpointStatus.CREATING)
        self._known[name] = found[0]
        return found[0]
