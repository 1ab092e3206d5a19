"""`spotbot dashboard`: the API with its web dashboard on a loopback address, for one person at this machine."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import click
from pydantic import SecretStr

from ..errors import ConfigError
from .app import Context, handled, main

TOKEN_FILE = "dashboard-token"  # noqa: S105 -- a file name, not a password


def dashboard_token(home: Path) -> Path:
    """A token of this machine's own, kept readable by its owner only, made on first use."""
    path = home / TOKEN_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    return path


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@click.pass_obj
@handled
def dashboard(obj: Context, port: int) -> None:
    """Serve the web dashboard (and the API) on 127.0.0.1 and print its URL.

    The login asks for SPOTBOT_API_TOKEN; without one, a token is made once and kept in
    $SPOTBOT_HOME/dashboard-token (readable by you only). It is never printed.

    \b
    Example:
      spotbot dashboard --port 8081
      # then open http://127.0.0.1:8081/dashboard and log in with: cat .spotbot/dashboard-token
    """
    try:
        import uvicorn

        from ..api import create_app
    except ModuleNotFoundError as exc:
        raise ConfigError(f"the dashboard needs {exc.name}: pip install -e '.[api]' (make install does)") from None
    from ..endpoints.process import free_port

    settings = obj.settings
    where = "SPOTBOT_API_TOKEN"
    if settings.api_token is None:
        path = dashboard_token(settings.home)
        settings = settings.model_copy(update={"api_token": SecretStr(path.read_text().strip())})
        where = f"the token in {path.resolve()}"
    os.environ.pop("SPOTBOT_API_TOKEN", None)  # workers the server starts inherit its environment
    port = port or free_port()
    app = create_app(settings, host="127.0.0.1")
    click.echo(f"http://127.0.0.1:{port}/dashboard")
    click.echo(f"spotbot dashboard: log in with {where}; Ctrl-C stops it", err=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("elastic_transport", "opensearch", "botocore", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, server_header=False)
