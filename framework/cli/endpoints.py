"""`spotbot endpoints`: the model endpoints."""

from __future__ import annotations

import click

from .app import Context, emit_json, handled, main


@main.group()
def endpoints() -> None:
    """List and delete model endpoints."""


@endpoints.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handled
def endpoints_list(obj: Context, as_json: bool) -> None:
    """Recorded endpoints and whether each answers. Example: spotbot endpoints list"""
    from ..endpoints import EndpointManager

    rows = [{**e.model_dump(mode="json"), "healthy": ok} for e, ok in EndpointManager(obj.settings, obj.store).list()]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']:32} {row['backend']:8} {row['status']:11} {'healthy' if row['healthy'] else 'down':8} {row['url']}")


@endpoints.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete it even while a running job's bot uses it, or when spotbot did "
              "not create it (a SageMaker endpoint without the spotbot:managed=true tag).")
@click.pass_obj
@handled
def endpoints_delete(obj: Context, name: str, force: bool) -> None:
    """Stop an endpoint and forget it; a SageMaker endpoint is deleted with its config and model.

    Refused while a running job uses it, and for a SageMaker endpoint, config or model spotbot did not
    create, unless --force. Example: spotbot endpoints delete doc-ocr
    """
    from ..endpoints import EndpointManager

    EndpointManager(obj.settings, obj.store).delete(name, force=force)
    click.echo(f"deleted endpoint {name}")
