"""The SDK a task.py uses: `from framework import bot`.

A task.py defines `main_task(file_name)` (a plain function or `async def`), or
`main_batch(file_names) -> list` for bots that want several files per call; inside it,
read_input, invoke_endpoint and write_output act on the running job. They are safe to call
from many threads at once: a worker works SPOTBOT_CONCURRENCY files at a time.

`python -m framework.bot path/to/task.py` runs a worker (framework/worker.py) on that task.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from .endpoints import EndpointClient
from .errors import ConfigError
from .storage import Storage


@dataclass
class Context:
    """What the SDK functions act on while a worker runs a task."""

    storage: Storage
    endpoints: EndpointClient
    input_bucket: str
    output_bucket: str
    output_prefix: str
    endpoint_names: list[str]
    # the object version (etag, version_id) the job recorded for each input file in flight, by key: the worker
    # sets a file's entry before its task runs and removes it after, so read_input reads exactly that version
    # from whichever thread the task runs on (a dict's get and set are atomic; a key is in flight once at a time)
    versions: dict[str, tuple[str, str]] = field(default_factory=dict)


_context: Context | None = None  # set by the worker for as long as it runs


def _current() -> Context:
    if _context is None:
        raise RuntimeError("the spotbot SDK is only usable inside a worker (python -m framework.bot task.py)")
    return _context


def read_input(file_name: str) -> bytes:
    """The bytes of an input file (its S3 key) of the running job: of the object version the job recorded.

    If the object was overwritten or deleted since, this raises ObjectChanged and the file ends
    ERROR with that reason (its output would be of another object). Another object of the input
    bucket (not a file being worked) is read as it is now.
    """
    ctx = _current()
    etag, version_id = ctx.versions.get(file_name, ("", ""))
    return ctx.storage.read(ctx.input_bucket, file_name, etag=etag, version_id=version_id)


def invoke_endpoint(body: bytes | str | dict | list, content_type: str = "application/json", endpoint_name: str | None = None,
                    accept: str = "application/json") -> bytes:
    """Call the bot's model endpoint (its first one unless named) and return the response body."""
    ctx = _current()
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    name = endpoint_name or (ctx.endpoint_names[0] if ctx.endpoint_names else None)
    if not name:
        raise ConfigError("this bot has no endpoint (endpoint_name is empty)", field="endpoint_name")
    return ctx.endpoints.invoke(name, body, content_type, accept)


def write_output(name: str, data: bytes | str, content_type: str = "application/octet-stream") -> str:
    """Write an extra output object under the job's output prefix; returns its s3:// URI."""
    ctx = _current()
    if isinstance(data, str):
        data = data.encode()
    key = f"{ctx.output_prefix.rstrip('/')}/{name}" if ctx.output_prefix else name
    return ctx.storage.write(ctx.output_bucket, key, data, content_type)


if __name__ == "__main__":
    # the worker sets the context on the importable module framework.bot, which a task's
    # `from framework import bot` imports: not on this __main__ copy
    from framework.worker import main

    sys.exit(main())
