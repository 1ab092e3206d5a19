"""The `spotbot` command: one module per group of subcommands, registered on `main` when imported."""

from . import admin, bots, endpoints, jobs, local  # noqa: F401  (each registers its commands)
from . import watch  # noqa: F401
from . import stats  # noqa: F401
from .app import main

__all__ = ["main"]
