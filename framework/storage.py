"""Everything that talks to S3: parse URIs, list prefixes page by page, read and write objects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

import boto3
import botocore.config
import botocore.exceptions

from .aws import calling
from .errors import ConfigError, ObjectChanged, StorageError
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
        self.client = boto3.session.Session().client(
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

    def ensure_bucket(self, bucket: str) -> None:
        with self._errors(f"creating bucket {bucket!r}"):
            try:
                self.client.head_bucket(Bucket=bucket)
            except botocore.exceptions.ClientError:
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
