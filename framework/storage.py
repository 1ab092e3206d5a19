"""Everything that talks to S3: parse URIs, list prefixes page by page, read and write objects.

Reads and writes of objects, a worker's hot path, go through obstore (a Rust S3 client) by
default: per 1 KB object it spends about a tenth of botocore's CPU (benchmarks/S3_CLIENTS.md).
Everything else (listing, buckets, downloads) is boto3. Both take the same credentials: the key
pair of the settings, or else boto3's credential chain (environment, profile, container or
instance role), which obstore asks for through a callback and so refreshes as boto3 does.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

import boto3
import botocore.config
import botocore.exceptions

from .aws import THROTTLED, calling
from .errors import ConfigError, ObjectChanged, SpotbotError, StorageError
from .retry import retrying
from .settings import Settings

BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        """name under this prefix, with exactly one '/' between them."""
        if not self.prefix:
            return name
        return self.prefix.rstrip("/") + "/" + name

    def contains(self, other: "S3Location") -> bool:
        return self.bucket == other.bucket and other.prefix.startswith(self.prefix)


@dataclass(frozen=True)
class S3Object:
    """One listed object: its key, size in bytes, last-modified time (epoch ms, S3's clock), ETag and, in a
    versioned bucket, VersionId."""

    key: str
    size: int
    modified_ms: int
    etag: str = ""
    version_id: str = ""


def parse_uri(uri: str, *, field: str = "uri") -> S3Location:
    """s3://bucket/prefix -> S3Location; the error names the field."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ConfigError(f"{uri!r} is not an S3 URI like s3://bucket/prefix", field=field)
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not BUCKET_PATTERN.match(bucket) or ".." in bucket:
        raise ConfigError(f"{bucket!r} in {uri!r} is not a valid bucket name", field=field)
    return S3Location(bucket, prefix)


def has_suffix(key: str, suffixes: list[str]) -> bool:
    """Whether key ends with one of the suffixes, case-insensitively."""
    lowered = key.lower()
    return any(lowered.endswith(suffix) for suffix in suffixes)


def obstore_safe(key: str) -> bool:
    """Whether obstore's paths name this key exactly: they drop a leading or trailing '/', refuse empty,
    '.' and '..' segments and control characters. Other keys go through boto3, which takes any."""
    return (bool(key) and key.isprintable() and not key.startswith("/") and not key.endswith("/") and "//" not in key
            and "\\" not in key and not any(part in (".", "..") for part in key.split("/")))


class BotoCredentials:
    """obstore's credential callback: boto3's credential chain, refreshed as boto3 refreshes it.

    obstore keeps what this returns until expires_at; temporary credentials (a role's) are handed out
    for 5 minutes at a time, well inside the 15 minutes boto3 refreshes them ahead of their expiry.
    """

    LIFETIME = timedelta(minutes=5)

    def __init__(self, session: boto3.session.Session):
        self.session = session

    def __call__(self) -> dict:
        credentials = self.session.get_credentials()
        if credentials is None:
            raise ConfigError("no AWS credentials for S3: set SPOTBOT_S3_ACCESS_KEY and SPOTBOT_S3_SECRET_KEY, or "
                              "configure a profile, environment variables or an instance role")
        frozen = credentials.get_frozen_credentials()
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key, "token": frozen.token,
                "expires_at": datetime.now(timezone.utc) + self.LIFETIME if frozen.token else None}


S3_CODE = re.compile(r"<Code>([^<]+)</Code>")
S3_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
HTTP_STATUS = re.compile(r"status code: (\d{3})")


class ObjectData:
    """Reads and writes whole objects through obstore, one S3Store per bucket; safe from many threads."""

    def __init__(self, settings: Settings, session: boto3.session.Session):
        import obstore  # imported here: only what reads or writes objects needs it

        self.obstore = obstore
        self.endpoint_url = settings.s3_endpoint_url or None
        self.where = self.endpoint_url or "AWS S3"
        self.config: dict = {"region": settings.region}
        if self.endpoint_url:
            self.config.update(endpoint=self.endpoint_url.rstrip("/"), virtual_hosted_style_request=False)
        self.credentials = None
        if settings.s3_access_key is not None and settings.s3_secret_key is not None:
            self.config.update(access_key_id=settings.s3_access_key.get_secret_value(),
                               secret_access_key=settings.s3_secret_key.get_secret_value())
        else:
            self.credentials = BotoCredentials(session)
        self.client_options = {"allow_http": bool(self.endpoint_url and self.endpoint_url.startswith("http://")),
                               "connect_timeout": "10s", "timeout": "300s"}
        # a few quick retries inside; Storage's own retrying (SPOTBOT_RETRY_SECONDS) does the rest
        self.retry_config = {"max_retries": 3, "retry_timeout": timedelta(seconds=30), "backoff": {
            "init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2), "base": 2}}
        self._stores: dict[str, object] = {}
        self._lock = threading.Lock()

    def _store(self, bucket: str):
        store = self._stores.get(bucket)
        if store is None:
            from obstore.store import S3Store

            with self._lock:
                store = self._stores.get(bucket)
                if store is None:
                    if self.credentials is not None:
                        self.credentials()  # no credentials at all: say so plainly, not inside obstore's error
                    # on AWS, virtual-hosted addressing as boto3 uses, except for names with dots (TLS certificates)
                    style = {} if self.endpoint_url else {"virtual_hosted_style_request": "." not in bucket}
                    store = S3Store(bucket, config={**self.config, **style}, client_options=self.client_options,
                                    retry_config=self.retry_config, credential_provider=self.credentials)
                    self._stores[bucket] = store
        return store

    def get(self, bucket: str, key: str, what: str, *, etag: str = "", version_id: str = "") -> bytes:
        options = {"version": version_id} if version_id else ({"if_match": etag} if etag else None)
        try:
            return self.obstore.get(self._store(bucket), key, options=options).bytes().to_bytes()
        except Exception as exc:
            raise self.translated(exc, what) from None

    def put(self, bucket: str, key: str, data: bytes, content_type: str, what: str) -> None:
        try:
            self.obstore.put(self._store(bucket), key, data, attributes={"Content-Type": content_type})
        except Exception as exc:
            raise self.translated(exc, what) from None

    def translated(self, exc: Exception, what: str) -> SpotbotError:
        """obstore's error as the StorageError boto3's would have been (the same codes, transient or not)."""
        if isinstance(exc, SpotbotError):  # the credential callback's own
            return exc
        text = str(exc)
        code = (S3_CODE.findall(text) or [""])[0]
        status = int((HTTP_STATUS.findall(text) or [0])[0])
        if not status and ("error sending request" in text or "timed out" in text.lower() or "connection" in text.lower()):
            return StorageError(f"cannot reach S3 at {self.where} while {what}; is it running? "
                                "(`spotbot local up` starts the embedded one)", transient=True, url=self.where)
        if isinstance(exc, FileNotFoundError) and not code:
            code = "NoSuchKey"
        message = (S3_MESSAGE.findall(text) or [text.split("\n", 1)[0]])[0]
        return StorageError(f"S3 at {self.where} refused {what}: {code} {message}".strip(), code=code or str(status),
                            transient=code in THROTTLED or status >= 500 or status == 429, url=self.where)


class Storage:
    """An S3 client for one endpoint and one set of credentials."""

    def __init__(self, settings: Settings):
        self.endpoint_url = settings.s3_endpoint_url or None
        self._versioning: dict[str, bool] = {}  # bucket -> versioning on (see versioned)
        self.retry_seconds = settings.retry_seconds
        credentials = {}
        if settings.s3_access_key is not None and settings.s3_secret_key is not None:
            credentials = {
                "aws_access_key_id": settings.s3_access_key.get_secret_value(),
                "aws_secret_access_key": settings.s3_secret_key.get_secret_value(),
            }
        session = boto3.session.Session()
        self.data = ObjectData(settings, session) if settings.s3_data_client == "obstore" else None
        self.client = session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=settings.region,
            config=botocore.config.Config(
                signature_version="s3v4",
                retries={"mode": "standard", "max_attempts": 6},
                s3={"addressing_style": "path"} if self.endpoint_url else {},
                # a worker reads and writes as many files at once as its concurrency, each in a thread of its own
                max_pool_connections=max(32, 2 * settings.concurrency),
            ),
            **credentials,
        )

    def _errors(self, what: str):
        where = self.endpoint_url or "AWS S3"
        return calling("S3", what, StorageError, where=where, url=where,
                       hint="; is it running? (`spotbot local up` starts the embedded one)")

    def check_bucket(self, bucket: str, *, field: str) -> None:
        """Fail with a clear message when the bucket does not exist or cannot be reached."""
        try:
            with self._errors(f"checking bucket {bucket!r}"):
                self.client.head_bucket(Bucket=bucket)
        except StorageError as exc:
            if getattr(exc, "code", "") in ("404", "NoSuchBucket", "NotFound"):
                raise ConfigError(f"bucket {bucket!r} does not exist", field=field) from None
            raise

    def ensure_bucket(self, bucket: str, *, expected_owner: str = "", field: str | None = None) -> None:
        """Create the bucket when missing. With expected_owner (an AWS account id), S3 refuses (403) a bucket
        of that name owned by another account, and so does this, naming the field: spotbot never writes
        into a bucket someone else owns because its name was free in our head and taken in S3."""
        owner = {"ExpectedBucketOwner": expected_owner} if expected_owner else {}
        with self._errors(f"creating bucket {bucket!r}"):
            try:
                self.client.head_bucket(Bucket=bucket, **owner)
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
                    if expected_owner:
                        raise ConfigError(f"bucket {bucket!r} is not account {expected_owner}'s (S3 answered "
                                          f"{exc.response.get('Error', {}).get('Code')}): name a bucket of yours",
                                          field=field) from None
                    raise
                self.client.create_bucket(Bucket=bucket)

    def pages(self, location: S3Location) -> Iterator[list[tuple[str, int]]]:
        """The objects under a prefix, one listing page (up to 1,000 keys) at a time."""
        for page in self.objects(location):
            yield [(obj.key, obj.size) for obj in page]

    def objects(self, location: S3Location, *, start_after: str = "") -> Iterator[list[S3Object]]:
        """The objects under a prefix whose keys sort after start_after, in key order, one listing page at a time.

        In a bucket with versioning on, the latest version of each object (ListObjectVersions), so
        each carries its VersionId; elsewhere ListObjectsV2, whose ETags say the same for a read.
        """
        if self.versioned(location.bucket):
            yield from self._versions(location, start_after)
            return
        paginator = self.client.get_paginator("list_objects_v2")
        extra = {"StartAfter": start_after} if start_after else {}
        with self._errors(f"listing {location.uri}"):
            for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix, **extra):
                yield [S3Object(obj["Key"], obj.get("Size", 0), int(obj["LastModified"].timestamp() * 1000),
                                obj.get("ETag", "")) for obj in page.get("Contents", [])]

    def _versions(self, location: S3Location, start_after: str) -> Iterator[list[S3Object]]:
        paginator = self.client.get_paginator("list_object_versions")
        extra = {"KeyMarker": start_after} if start_after else {}
        with self._errors(f"listing the versions of {location.uri}"):
            for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix, **extra):
                # an object whose latest entry is a delete marker is gone: none of its versions is latest
                yield [S3Object(obj["Key"], obj.get("Size", 0), int(obj["LastModified"].timestamp() * 1000),
                                obj.get("ETag", ""), obj.get("VersionId") or "")
                       for obj in page.get("Versions", []) if obj.get("IsLatest")]

    def versioned(self, bucket: str) -> bool:
        """Whether the bucket keeps versions (asked once per bucket; no permission to ask counts as no)."""
        if bucket not in self._versioning:
            try:
                with self._errors(f"reading the versioning of bucket {bucket!r}"):
                    status = self.client.get_bucket_versioning(Bucket=bucket).get("Status", "")
            except StorageError as exc:
                if exc.transient:
                    raise
                status = ""
            self._versioning[bucket] = status == "Enabled"
        return self._versioning[bucket]

    def read(self, bucket: str, key: str, *, etag: str = "", version_id: str = "") -> bytes:
        """An object's bytes (exactly that version, when given); transient failures are retried for up to
        SPOTBOT_RETRY_SECONDS. ObjectChanged when the object is no longer that version."""
        what = f"reading s3://{bucket}/{key}"
        exact = {"VersionId": version_id} if version_id else ({"IfMatch": etag} if etag else {})

        def get() -> bytes:
            if self.data is not None and obstore_safe(key):
                return self.data.get(bucket, key, what, etag=etag, version_id=version_id)
            with self._errors(what):
                return self.client.get_object(Bucket=bucket, Key=key, **exact)["Body"].read()

        try:
            return retrying(get, seconds=self.retry_seconds, what=what)
        except StorageError as exc:
            if exact and exc.code in ("PreconditionFailed", "NoSuchKey", "NoSuchVersion", "404", "412"):
                recorded = f"version {version_id}" if version_id else f"ETag {etag}"
                raise ObjectChanged(f"s3://{bucket}/{key} changed after the job recorded it ({recorded}; S3 answered "
                                    f"{exc.code}): its output would be of another object. Submit a new job to work "
                                    "the object as it is now", file=f"s3://{bucket}/{key}", code=exc.code) from None
            raise

    def version(self, bucket: str, key: str) -> S3Object | None:
        """The object as it is now (a HEAD): size, ETag and VersionId; None when there is none."""
        try:
            with self._errors(f"reading s3://{bucket}/{key}"):
                head = self.client.head_object(Bucket=bucket, Key=key)
        except StorageError as exc:
            if exc.code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return S3Object(key, head.get("ContentLength", 0), int(head["LastModified"].timestamp() * 1000),
                        head.get("ETag", ""), head.get("VersionId") or "")

    def etag(self, uri: str, *, field: str) -> str:
        """The ETag of the object at an s3:// URI (a HEAD); ConfigError naming the field when there is none."""
        location = parse_uri(uri, field=field)
        try:
            with self._errors(f"reading {uri}"):
                return self.client.head_object(Bucket=location.bucket, Key=location.prefix).get("ETag", "")
        except StorageError as exc:
            if exc.code in ("404", "NoSuchKey", "NotFound"):
                raise ConfigError(f"{uri} does not exist", field=field) from None
            raise

    def write(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Put an object (a retry rewrites the same key: still one object); returns its s3:// URI."""
        what = f"writing s3://{bucket}/{key}"

        def put() -> None:
            if self.data is not None and obstore_safe(key):
                return self.data.put(bucket, key, data, content_type, what)
            with self._errors(what):
                self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

        retrying(put, seconds=self.retry_seconds, what=what)
        return f"s3://{bucket}/{key}"

    def delete(self, bucket: str, key: str) -> None:
        """Remove an object (a missing one is no error: S3 deletes are idempotent)."""
        with self._errors(f"deleting s3://{bucket}/{key}"):
            self.client.delete_object(Bucket=bucket, Key=key)

    def download(self, uri: str, path: str) -> None:
        location = parse_uri(uri, field="model_s3_path")
        with self._errors(f"downloading {uri}"):
            self.client.download_file(location.bucket, location.prefix, path)
