"""Everything that talks to Elasticsearch / OpenSearch: bots, jobs, chunks, files and endpoints.

File documents may be spread over several indices (`<prefix>files-00` ... `-15`), a document's
index chosen by its id: the embedded server (noida-db) rewrites a whole index's structures on
every update of a document, so an update costs in proportion to its index's size, and a job of
100,000 files slowed down six-fold in one index. Sixteen small indices keep updates as cheap as
in a small job. Real nodes keep one index, `<prefix>files` (SPOTBOT_FILE_INDICES decides; the
layout a prefix was created with is kept, read back from its indices).
"""

from __future__ import annotations

from ..errors import StoreError
from ..models import Chunk, ChunkStatus, FileTask
from ..settings import Settings
from .bots import BotRegistry
from .chunks import ChunkStore, counts_of, new_chunk
from .endpoints import EndpointStore
from .engines import Connection, Engine, connect, without_credentials
from .files import Claim, FileStore
from .indices import MAPPING_VERSION, MAPPINGS, index_settings, mapping
from .jobs import JobStore
from .reports import Reports
from .results import ResultStore


EMBEDDED_FILE_INDICES = 16


class Store:
    """The indices under one prefix, and a verb-named store for each kind of document."""

    def __init__(self, engine: Engine, *, prefix: str = "spotbot-", retry_seconds: float = 120.0, file_indices: int = 0,
                 replicas: int | None = None, record_results: bool = True):
        self.engine = engine
        self.prefix = prefix
        self.retry_seconds = retry_seconds  # how long a bulk write keeps trying items refused for now (429, 5xx)
        self._file_indices_wanted = file_indices  # 0: 16 on the embedded server, 1 on a real node
        self._file_indices: int | None = None
        self.replicas = replicas  # of the indices init() creates; None: the engine's default
        self.record_results = record_results  # a completed file is written as its bot's latest result (results.py)
        self.bots = BotRegistry(self)
        self.jobs = JobStore(self)
        self.chunks = ChunkStore(self)
        self.files = FileStore(self)
        self.endpoints = EndpointStore(self)
        self.reports = Reports(self)
        self.results = ResultStore(self)

    @classmethod
    def from_settings(cls, settings: Settings, *, init: bool = True) -> "Store":
        """Connect; with init, create missing indices first (workers skip it: their scheduler did it)."""
        store = cls(connect(Connection.from_settings(settings)), prefix=settings.index_prefix, retry_seconds=settings.retry_seconds,
                    file_indices=settings.file_indices, replicas=settings.es_replicas,
                    record_results=settings.record_results)
        if init:
            store.init()
        return store

    def index(self, kind: str) -> str:
        """The index of a kind of document by name (for files: their logical name, the seed's `es_index`)."""
        return f"{self.prefix}{kind}"

    def target(self, kind: str) -> str:
        """What searches, counts and refreshes of a kind address: for files, every file index."""
        if kind == "files" and self.file_indices > 1:
            return f"{self.prefix}files-*"
        return self.index(kind)

    def names(self, kind: str) -> list[str]:
        """The indices that hold a kind of document."""
        if kind == "files" and self.file_indices > 1:
            return [f"{self.prefix}files-{n:02d}" for n in range(self.file_indices)]
        return [self.index(kind)]

    def file_index(self, doc_id: str) -> str:
        """The index a file document lives in (its id is a hex digest, so ids spread evenly)."""
        if self.file_indices == 1:
            return self.index("files")
        return f"{self.prefix}files-{int(doc_id[:8], 16) % self.file_indices:02d}"

    @property
    def file_indices(self) -> int:
        """How many indices hold file documents: as the prefix's indices were created (read once)."""
        if self._file_indices is None:
            found = self._file_layout()
            if found is None:
                raise StoreError(f"no file index under the prefix {self.prefix!r}: the scheduler creates them "
                                 "(`spotbot admin init`)", index=self.index("files"))
            self._file_indices = found
        return self._file_indices

    def _file_layout(self) -> int | None:
        if self.engine.index_exists(self.index("files")):
            return 1
        first = f"{self.prefix}files-00"
        if self.engine.index_exists(first):
            return int((self.engine.mapping(first).get("_meta") or {}).get("file_indices", 1))
        return None

    def init(self) -> list[str]:
        """Create missing indices and bring older mappings up to this version; returns what it changed."""
        if self._file_indices is None:
            found = self._file_layout()
            if found is None:
                found = self._file_indices_wanted or (
                    EMBEDDED_FILE_INDICES if self.engine.info().get("name") == "noida-db" else 1)
            self._file_indices = found
        changed = []
        for kind, name in ((kind, name) for kind in MAPPINGS for name in self.names(kind)):
            wanted = mapping(kind)
            if kind == "files":
                wanted["_meta"]["file_indices"] = self.file_indices  # the layout, read back by _file_layout
            if not self.engine.index_exists(name):
                try:
                    self.engine.create_index(name, wanted, index_settings(self.replicas))
                    changed.append(name)
                except StoreError as exc:
                    if "already_exists" not in str(exc):
                        raise
                continue
            current = self.engine.mapping(name)
            version = int((current.get("_meta") or {}).get("spotbot_mapping_version", 0))
            if version > MAPPING_VERSION:
                raise StoreError(f"index {name} has mapping version {version}, newer than this spotbot's "
                                 f"{MAPPING_VERSION}: upgrade spotbot", index=name)
            if version < MAPPING_VERSION:
                # mappings only grow: new fields are added in place; a change of a field's type would need a reindex
                self.engine.put_mapping(name, wanted["properties"], wanted["_meta"])
                changed.append(f"{name} (mapping {version} -> {MAPPING_VERSION})")
        return changed

    def record(self, pending: list[tuple[Chunk, list[FileTask]]]) -> list[str]:
        """Record chunks and their files so that no chunk is claimable before its files exist; returns new file ids.

        The chunks are written PENDING, then the files, then the chunks are opened (with their own
        files per status). A chunk recorded before (a resumed scan, a racing submitter) is opened
        here too if it is still PENDING: its files are written now. A chunk with nothing left to
        work (an incremental job's SKIPPED files) is opened DONE.
        """
        if not pending:
            return []
        new = self.chunks.record(chunk for chunk, _ in pending)
        created = set(self.files.record(task for _, files in pending for task in files))
        earlier = self.chunks.get([chunk.chunk_id for chunk, _ in pending if new.get(chunk.chunk_id) is None])
        opened = []
        for chunk, files in pending:
            written = new.get(chunk.chunk_id)
            if written is None:
                found = earlier.get(chunk.chunk_id)
                if found is None or found[0].status != ChunkStatus.PENDING:
                    continue
                chunk, written = found[0], found[1:]
            if all(file_id in created for file_id in chunk.file_ids):
                counts = counts_of(task.status for task in files)
            else:  # some existed: those of another chunk are not its own, and its own are as they were recorded
                counts = counts_of(claim.task.status for claim in self.files.of_chunk(chunk)[0])
            opened.append((chunk, written, counts))
        self.chunks.open(opened)
        return list(created)

    def move(self, job_id: str, claims: list[Claim], *, workers: int, tag: str, reopen: bool,
             seq: int | None = None) -> int:
        """Move files into a new chunk of the job, recorded as the scan records; returns how many moved.

        reopen (spotbot retry) starts them afresh; otherwise (the final check's repair) they keep
        their attempts. The chunks they leave count them no more. seq: the chunk's number, when the
        caller reserved it (else one is reserved here).
        """
        if not claims:
            return 0
        seq = self.jobs.reserve_chunks(job_id, 1) if seq is None else seq
        chunk = new_chunk(job_id, [claim.id for claim in claims], seq, workers, tag=tag)
        written = self.chunks.record([chunk])[chunk.chunk_id]
        left = {claim.id: (claim.task.chunk_id, claim.task.status.value) for claim in claims}
        moved = (self.files.reopen if reopen else self.files.repair)(claims, chunk)
        deltas: dict[str, dict[str, int]] = {}
        for claim in moved:
            chunk_id, status = left[claim.id]
            deltas.setdefault(chunk_id, {}).setdefault(status, 0)
            deltas[chunk_id][status] += 1
        self.chunks.move_out(deltas)
        if written is not None:
            self.chunks.open([(chunk, written, counts_of(claim.task.status for claim in moved))])
        return len(moved)

    def refresh(self, *kinds: str) -> None:
        """Make recent writes visible to search; used before a decision that counts, never as a wait."""
        self.engine.refresh([self.target(k) for k in kinds])

    def count(self, kind: str, query: dict) -> int:
        return self.engine.count(self.target(kind), query)

    def drop(self) -> None:
        """Delete every index under the prefix (tests)."""
        if self._file_indices is None:
            self._file_indices = self._file_layout() or 1
        for kind in MAPPINGS:
            for name in self.names(kind):
                self.engine.delete_index(name)


__all__ = ["Store", "Connection", "MAPPING_VERSION", "without_credentials"]
