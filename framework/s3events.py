"""S3 event notifications read from an SQS queue: how `spotbot watch --sqs-queue-url` hears of new objects.

S3 sends an ObjectCreated notification to the queue (directly, or through an SNS topic) for each new
object. A message is deleted only after the watcher has recorded its objects, so a watcher that dies
in between gets the message again (delivery is at least once, and recording a key is idempotent).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_plus, urlsplit

import boto3
import botocore.config
from pydantic import BaseModel, ValidationError

from .aws import calling
from .errors import ConfigError, QueueError
from .settings import Settings

log = logging.getLogger("spotbot.s3events")

AWS_QUEUE_HOST = re.compile(r"^sqs[.-](?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
MAX_WAIT_SECONDS = 20  # SQS's longest long poll
VISIBILITY_SECONDS = 300  # a received message stays hidden this long: time enough to record its objects


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int = 0


@dataclass
class Message:
    """One queue message: its receipt (to delete it) and the objects it says were created."""

    receipt: str
    objects: list[ObjectCreated] = field(default_factory=list)
    understood: bool = True


# The shape of S3's notification (the fields we read); anything else in it is ignored.
class _Object(BaseModel):
    key: str
    size: int = 0


class _Bucket(BaseModel):
    name: str


class _Entity(BaseModel):
    bucket: _Bucket
    object: _Object


class _Record(BaseModel):
    eventName: str = ""
    s3: _Entity | None = None


class _Notification(BaseModel):
    Records: list[_Record] = []


def parse_body(body: str) -> list[ObjectCreated] | None:
    """The objects an S3 notification (maybe inside an SNS envelope) reports created; None if it is not one.

    Keys arrive URL-encoded (a space as '+'). Test events and other event types report nothing.
    """
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
            data = json.loads(data["Message"])  # delivered through an SNS topic
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("Event") == "s3:TestEvent":
        return []  # S3 sends one when the notification is set up
    if "Records" not in data:
        return None
    try:
        notification = _Notification.model_validate(data)
    except ValidationError:
        return None
    return [ObjectCreated(record.s3.bucket.name, unquote_plus(record.s3.object.key), record.s3.object.size)
            for record in notification.Records if record.s3 and record.eventName.startswith("ObjectCreated:")]


def queue_client(queue_url: str, settings: Settings):
    """An SQS client for the queue: AWS's endpoint for an amazonaws.com URL, the URL's host for any other server."""
    parts = urlsplit(queue_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not parts.path.strip("/"):
        raise ConfigError(f"{queue_url!r} is not a queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/uploads",
                          field="--sqs-queue-url")
    region, endpoint = settings.region, None
    aws = AWS_QUEUE_HOST.match(parts.hostname)
    if aws:
        region = aws.group("region")
    elif parts.hostname != "queue.amazonaws.com":
        endpoint = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    config = botocore.config.Config(retries={"mode": "standard", "max_attempts": 6},
                                    read_timeout=MAX_WAIT_SECONDS + 10)
    return boto3.session.Session().client("sqs", region_name=region, endpoint_url=endpoint, config=config)


class EventQueue:
    """Receive and delete the S3 notifications of one queue."""

    def __init__(self, queue_url: str, settings: Settings):
        self.url = queue_url
        self.client = queue_client(queue_url, settings)

    def _errors(self, what: str):
        return calling("SQS", what, QueueError, where=self.url, url=self.url)

    def check(self) -> None:
        """Fail at start, naming the queue, when it does not exist or cannot be read."""
        with self._errors("checking the queue"):
            self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"])

    def receive(self, wait_seconds: float, max_messages: int = 100) -> list[Message]:
        """What the queue holds: waits up to wait_seconds for the first message, then takes what is there at once."""
        messages: list[Message] = []
        wait = max(0, min(MAX_WAIT_SECONDS, int(wait_seconds)))
        while len(messages) < max_messages:
            with self._errors("receiving messages"):
                answer = self.client.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                                     VisibilityTimeout=VISIBILITY_SECONDS)
            batch = answer.get("Messages", [])
            if not batch:
                break
            for raw in batch:
                objects = parse_body(raw.get("Body", ""))
                if objects is None:
                    log.warning("message %s on %s is not an S3 event notification; deleting it", raw.get("MessageId"), self.url)
                messages.append(Message(raw["ReceiptHandle"], objects or [], understood=objects is not None))
            wait = 0
        return messages

    def delete(self, messages: list[Message]) -> None:
        """Delete handled messages, ten per request (SQS's limit)."""
        for start in range(0, len(messages), 10):
            entries = [{"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(messages[start:start + 10])]
            with self._errors("deleting handled messages"):
                answer = self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)
            for failed in answer.get("Failed", []):
                # the message comes back after its visibility timeout: its objects are known by then, nothing is redone
                log.warning("could not delete message %s from %s: %s", failed.get("Id"), self.url, failed.get("Message"))
