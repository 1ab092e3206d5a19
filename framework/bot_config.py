"""Reading a bot_config.json file (the seed's registration format) and resolving its python: references."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path, PurePosixPath

from .errors import ConfigError
from .models import PYTHON_PREFIX, BotConfig, split_list


def read_bot_config(path: Path) -> BotConfig:
    """Parse a bot_config.json; python: references to files are resolved against the file's folder."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("no such file", file=str(path)) from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"is not valid JSON: {exc}", file=str(path)) from None
    config = BotConfig.parse(data, source=str(path))
    return resolve_references(config, path.parent, source=str(path))


def resolve_references(config: BotConfig, base: Path, *, source: str | None = None, confined: bool = False,
                       forbidden: tuple[Path, ...] = ()) -> BotConfig:
    """python: references checked at once, files made absolute against base (the config file's folder).

    confined (registrations through the HTTP API, whose caller does not own the machine): only
    relative .py paths, without '..', whose file (every symbolic link followed) lies under base
    (SPOTBOT_API_BOTS_DIR) and under none of the forbidden folders (SPOTBOT_HOME, where model
    tarballs are unpacked: data, never code). No module names: one resolves through the server's
    whole import path. Unconfined (the CLI and byob.py), a module name must be importable here.
    """
    root = base.resolve()
    refused = [folder.resolve() for folder in forbidden]

    def resolve(reference: str, field: str) -> str:
        if not reference.startswith(PYTHON_PREFIX):
            return reference
        target = reference[len(PYTHON_PREFIX):]
        if not target.endswith(".py"):
            if confined:
                raise ConfigError(f"{reference!r}: the API takes python: references to .py files under "
                                  "SPOTBOT_API_BOTS_DIR only, not module names", field=field, file=source)
            if importlib.util.find_spec(target.partition(".")[0]) is None:
                raise ConfigError(f"{reference!r}: no module {target.partition('.')[0]!r} can be imported here",
                                  field=field, file=source)
            return reference
        path = Path(target)
        if confined and (path.is_absolute() or ".." in PurePosixPath(target).parts or "\\" in target):
            raise ConfigError(f"{reference!r}: the API takes only paths relative to SPOTBOT_API_BOTS_DIR, without "
                              "'..'", field=field, file=source)
        resolved = (path if path.is_absolute() else root / path).resolve()
        if confined and not resolved.is_relative_to(root):
            raise ConfigError(f"{reference!r} leads outside SPOTBOT_API_BOTS_DIR (through a symbolic link)",
                              field=field, file=source)
        if any(resolved.is_relative_to(folder) for folder in refused):
            raise ConfigError(f"{reference!r} lies in spotbot's own data (SPOTBOT_HOME: state, logs, unpacked "
                              "models), which holds no bot code", field=field, file=source)
        if not resolved.is_file():
            raise ConfigError(f"{reference!r}: no such file {resolved}", field=field, file=source)
        return f"{PYTHON_PREFIX}{resolved}"

    # stripped as BotConfig.endpoints() strips them: " python:x.py" is a python: reference there, so here too
    images = [resolve(image, "endpoint_ecr_image_path") for image in split_list(config.endpoint_ecr_image_path)] \
        if config.endpoint_ecr_image_path else []
    return config.model_copy(update={
        "bot_image": resolve(config.bot_image, "bot_image"),
        "endpoint_ecr_image_path": ",".join(images),
    })
