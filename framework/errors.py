"""Every failure a user can see is one of these; the CLI maps each to a line and an exit code."""

from __future__ import annotations


class SpotbotError(Exception):
    """Something went wrong in spotbot.

    The data an error may carry is declared here, named in the domain's words (the field
    `input`, not the CLI's flag `--input`): the CLI and the API each present it their own way.
    """

    exit_code = 1
    transient = False  # true when trying again later may succeed (see retry.py)

    field: str | None = None  # the input field at fault (a bot_config.json field, `input`, `job_id`, SPOTBOT_...)
    file: str | None = None  # the file at fault
    url: str | None = None  # the server that failed or refused
    status: int | None = None  # the HTTP status a server answered
    code: str | None = None  # a service's own error code (S3's NoSuchBucket)
    name: str | None = None  # the bot or endpoint concerned
    job_id: str | None = None  # the job concerned
    index: str | None = None  # the Elasticsearch index concerned
    image_id: str | None = None  # an image the API labels

    def __init__(self, message: str | None = None, **data):
        super().__init__(message or (self.__doc__ or "").strip())
        for key, value in data.items():
            if not hasattr(type(self), key):
                raise TypeError(f"{type(self).__name__} carries no {key!r}; declare it on the class")
            setattr(self, key, value)


class ConfigError(SpotbotError):
    """A configuration value is missing or invalid."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None, file: str | None = None):
        where = " ".join(part for part in (f"in {file}:" if file else "", f"{field}:" if field else "") if part)
        super().__init__(f"{where} {message}" if where else message, field=field, file=file)


class NotFound(SpotbotError):
    """The thing asked for does not exist."""

    exit_code = 5


class StoreUnavailable(SpotbotError):
    """Elasticsearch cannot be reached."""

    exit_code = 6
    transient = True


class StoreError(SpotbotError):
    """Elasticsearch refused a request."""

    exit_code = 6


class Conflict(SpotbotError):
    """Someone else changed the document first (HTTP 409): handled where it happens, never shown."""


class Contention(SpotbotError):
    """A document kept changing under us, however often we read it again; trying later may succeed."""

    exit_code = 6
    transient = True


class StorageError(SpotbotError):
    """S3 refused or failed a request."""

    exit_code = 6


class ObjectChanged(StorageError):
    """An input object is no longer the version the job recorded (overwritten or deleted since the scan)."""

    exit_code = 6


class QueueError(SpotbotError):
    """An SQS queue (S3 event notifications for `spotbot watch`) could not be read."""

    exit_code = 6


class EndpointError(SpotbotError):
    """A model endpoint could not be created, reached or invoked."""

    exit_code = 7
    unreachable: bool = False  # nothing answered at its address (it may have stopped)
    reason: str | None = None  # the backend's own account (SageMaker's FailureReason)


class InUse(SpotbotError):
    """The thing is in use by a running job; the message says how to free it."""

    exit_code = 2
    jobs: list[str] | None = None  # the jobs using it


class LaunchError(SpotbotError):
    """A bot worker could not be launched."""

    exit_code = 7
    worker: str | None = None  # the worker concerned


class UnsupportedReference(ConfigError):
    """A backend was given an image reference it cannot run."""


class TaskError(SpotbotError):
    """The user's task.py cannot be loaded or used."""

    exit_code = 2


class WrongState(SpotbotError):
    """The thing exists, but its state does not allow this (retrying a job that is still running)."""

    exit_code = 2


class NotOurs(WrongState):
    """The thing exists but spotbot did not make it (a SageMaker endpoint without spotbot's tag): it is left alone."""

    arn: str | None = None  # the resource concerned


class NotReady(SpotbotError):
    """A part of spotbot this needs is not set up; the message says how to set it up."""

    exit_code = 2
    bot: str | None = None  # the bot that is missing


class ImageRefused(ConfigError):
    """An image the API will not take: a URL it may not or could not fetch, or bytes that are no image it labels.

    `status` is the HTTP status the API answers with (413 too large, 415 not an image type, 422 otherwise).
    """

    def __init__(self, message: str, *, field: str = "url", url: str | None = None, status: int = 422):
        super().__init__(message, field=field)
        self.url, self.status = url, status
