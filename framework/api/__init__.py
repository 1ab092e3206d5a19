"""The HTTP API (`spotbot serve`): bots, jobs, endpoints and seed 000's ImageLabeller routes over JSON."""

from .app import create_app

__all__ = ["create_app"]
