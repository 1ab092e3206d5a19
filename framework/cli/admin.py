"""`spotbot admin`: the Elasticsearch indices and the effective settings."""

from __future__ import annotations

import click

from .app import Context, emit_json, handled, main


@main.group()
def admin() -> None:
    """Administration of the Elasticsearch indices."""


@admin.command("init")
@click.pass_obj
@handled
def admin_init(obj: Context) -> None:
    """Create the indices with their mappings (also done on first use). Example: spotbot admin init"""
    created = obj.store.init()
    click.echo("created: " + (", ".join(created) if created else "nothing, all indices exist"))


@admin.command("settings")
@click.pass_obj
@handled
def admin_settings(obj: Context) -> None:
    """Print the effective settings, secrets redacted. Example: spotbot admin settings"""
    emit_json(obj.settings.redacted())
