"""A bot's model fingerprint: what its results depend on, besides the input object itself.

An incremental job reuses an earlier result only when the fingerprint it was made with is the
job's own. It covers the task (`bot_image`, `bot_image_cmd`), each endpoint's image and its
model (`model_s3_path` and that object's ETag, so a retrained model uploaded to the same path is
a new fingerprint). A `python:` reference counts by its source: the file's bytes and those of
the other .py files of its folder (a task's helpers), or an importable module's file. A container
image counts by its reference: a digest (`@sha256:...`) or a new tag is a new fingerprint, an
image rebuilt under the same tag is not (spotbot does not pull images to see).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from .models import BotConfig
from .storage import Storage

DIGITS = 24


def fingerprint(bot: BotConfig, storage: Storage) -> str:
    """The fingerprint of a bot as registered now (one HEAD per model object)."""
    parts = {
        "bot_image": source(bot.bot_image),
        "bot_image_cmd": bot.bot_image_cmd,
        "endpoints": [{"name": spec.name, "image": source(spec.image), "model_s3_path": spec.model_s3_path,
                       "model_etag": storage.etag(spec.model_s3_path, field="model_s3_path") if spec.model_s3_path else ""}
                      for spec in bot.endpoints()],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:DIGITS]


def source(reference: str) -> str:
    """A task or endpoint reference as it counts: a python: reference by its source's digest, an image by its name."""
    if not reference.startswith("python:"):
        return reference
    target = reference.removeprefix("python:")
    files = _python_files(target)
    if not files:
        return reference  # not readable here (resolved where the worker runs): its name is all we know
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{reference}#{digest.hexdigest()[:DIGITS]}"


def _python_files(target: str) -> list[Path]:
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            return []
        return sorted(path.parent.glob("*.py"))
    try:
        spec = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    return [Path(spec.origin)]


__all__ = ["fingerprint", "source"]
