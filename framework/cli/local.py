"""`spotbot local`: the embedded stack on one machine."""

from __future__ import annotations

import click

from ..errors import SpotbotError
from .app import Context, emit_json, handled, main


@main.group()
def local() -> None:
    """The embedded stack: an Elasticsearch-API server and an S3 server on 127.0.0.1."""


def _local_stack(ctx: Context):
    from ..local import LocalStack

    return LocalStack(ctx.settings.home)


@local.command("up")
@click.option("--json", "as_json", is_flag=True, help="Print the connection details as JSON.")
@click.pass_obj
@handled
def local_up(obj: Context, as_json: bool) -> None:
    """Start the embedded servers (idempotent) and wait until both answer.

    Data lives under $SPOTBOT_HOME (default ./.spotbot). Example: spotbot local up
    """
    stack = _local_stack(obj)
    status = stack.up(progress=lambda message: click.echo(message + " ...", err=True))
    if as_json:
        emit_json(status)
    else:
        click.echo(f"Elasticsearch: {status['es_url']}\nS3:            {status['s3_endpoint_url']} "
                   f"(access key {status['s3_access_key']})")


@local.command("down")
@click.pass_obj
@handled
def local_down(obj: Context) -> None:
    """Stop the embedded servers and the local endpoints; data stays under $SPOTBOT_HOME.

    Example: spotbot local down
    """
    stack = _local_stack(obj)
    status = stack.status()
    if status.get("es_running"):
        from ..endpoints import EndpointManager

        try:
            manager = EndpointManager(obj.settings, obj.store)
            for endpoint, _ in manager.list():
                if endpoint.backend in ("process", "docker"):  # the local ones; a SageMaker endpoint stays
                    manager.backend(endpoint.backend).stop(endpoint)
        except SpotbotError as exc:
            click.echo(f"warning: could not stop local endpoints: {exc}", err=True)
    stack.down()
    click.echo("stopped")


@local.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON: es_url, s3_endpoint_url, running ...")
@click.pass_obj
@handled
def local_status(obj: Context, as_json: bool) -> None:
    """Whether the embedded servers answer, and where. Example: spotbot local status --json"""
    status = _local_stack(obj).status()
    if as_json:
        emit_json(status)
        return
    if not status["es_url"]:
        click.echo("not running (spotbot local up starts it)")
        return
    click.echo(f"Elasticsearch: {status['es_url']} ({'up' if status['es_running'] else 'down'})")
    click.echo(f"S3:            {status['s3_endpoint_url']} ({'up' if status['s3_running'] else 'down'})")
