"""`spotbot bots`: the bot registry."""

from __future__ import annotations

from pathlib import Path

import click

from ..bot_config import read_bot_config
from .app import Context, emit_json, handled, main


@main.group()
def bots() -> None:
    """Register, list, show and delete bots."""


@bots.command("register")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_obj
@handled
def bots_register(obj: Context, file: Path) -> None:
    """Create the bot described by FILE (a bot_config.json), or update it if its name exists.

    Example: spotbot bots register bots/doc_ocr/bot_config.json
    """
    config = read_bot_config(file)
    stored, created = obj.store.bots.register(config)
    click.echo(f"{'created' if created else 'updated'} bot {stored.name}", err=True)
    emit_json(stored.model_dump())


@bots.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def bots_list(obj: Context, as_json: bool) -> None:
    """The registered bots. Example: spotbot bots list --json"""
    registered = obj.store.bots.list()
    if as_json:
        emit_json([b.model_dump() for b in registered])
        return
    for bot in registered:
        click.echo(f"{bot.name:24} {','.join(bot.file_types):20} {bot.bot_image}")


@bots.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def bots_show(obj: Context, name: str, as_json: bool) -> None:
    """One bot's stored configuration. Example: spotbot bots show doc_ocr"""
    config = obj.store.bots.get(name).model_dump()
    if as_json:
        emit_json(config)
        return
    for field, value in config.items():
        click.echo(f"{field:24} {','.join(value) if isinstance(value, list) else value}")


@bots.command("delete")
@click.argument("name")
@click.pass_obj
@handled
def bots_delete(obj: Context, name: str) -> None:
    """Remove a bot from the registry (its jobs stay). Example: spotbot bots delete doc_ocr"""
    obj.store.bots.delete(name)
    click.echo(f"deleted bot {name}")
