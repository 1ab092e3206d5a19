"""Reading a bot_config.json file: the seed's registration format."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError
from .models import BotConfig


def read_bot_config(path: Path) -> BotConfig:
    """Parse a bot_config.json; python: references to files are resolved against the file's folder."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("no such file", file=str(path)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"is not valid JSON: {exc}", file=str(path)) from None
    config = BotConfig.parse(data, source=str(path))
    return resolve_references(config, path.parent, source=str(path))


def resolve_references(config: BotConfig, base: Path, *, source: str | None = None) -> BotConfig:
    """python: references to .py files, made absolute against base (the config file's folder)."""

    def resolve(reference: str, field: str) -> str:
        if not reference.startswith("python:") or not reference.endswith(".py"):
            return reference
        target = Path(reference[len("python:"):])
        if not target.is_absolute():
            target = (base / target).resolve()
        if not target.is_file():
            raise ConfigError(f"{reference!r}: no such file {target}", field=field, file=source)
        return f"python:{target}"

    images = [resolve(image, "endpoint_ecr_image_path") for image in config.endpoint_ecr_image_path.split(",")] \
        if config.endpoint_ecr_image_path else []
    return config.model_copy(update={
        "bot_image": resolve(config.bot_image, "bot_image"),
        "endpoint_ecr_image_path": ",".join(images),
    })
