"""Launchers start bot workers; one small protocol (base.py), one file per back end.

A back end is imported when it is first asked for, by name: the CLI does not pay for the Docker
SDK or boto3's Batch client when it runs workers as processes. Back ends import base.py, never
this package, so nothing here is held together by an import cycle.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from ..settings import Settings
from .base import Launcher, WorkerSpec

BACKENDS = {
    "process": ("framework.launchers.process", "ProcessLauncher"),
    "docker": ("framework.launchers.docker", "DockerLauncher"),
    "batch": ("framework.launchers.batch", "BatchLauncher"),
}


def launcher(settings: Settings, name: str | None = None) -> Launcher:
    """The launcher SPOTBOT_LAUNCHER names, or the one called `name` (the backend a worker was started with)."""
    name = name or settings.launcher
    if name not in BACKENDS:
        raise ConfigError(f"unknown launcher {name!r}; this version has: {', '.join(BACKENDS)}", field="SPOTBOT_LAUNCHER")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)(settings)


__all__ = ["Launcher", "WorkerSpec", "launcher", "BACKENDS"]
