"""The `spotbot` command: one module per group of subcommands, registered on `main` when imported."""

from . import admin, bots, dashboard, endpoints, errors, jobs, local, logs, serve, stats, watch  # noqa: F401  (each registers its commands)
from .app import main

__all__ = ["main"]
