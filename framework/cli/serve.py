"""`spotbot serve`: the HTTP API."""

from __future__ import annotations

import logging
import os

import click

from .app import Context, handled, main


@main.command()
@click.option("--host", help="Address to bind (default: SPOTBOT_API_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: SPOTBOT_API_PORT, 8080).")
@click.pass_obj
@handled
def serve(obj: Context, host: str | None, port: int | None) -> None:
    """Serve the HTTP API: bots, jobs, endpoints and the ImageLabeller routes, with the OpenAPI schema at /openapi.json.

    Every route but /health needs `Authorization: Bearer $SPOTBOT_API_TOKEN`.

    \b
    Example:
      export SPOTBOT_API_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')
      spotbot serve --port 8080 &
      curl -H "Authorization: Bearer $SPOTBOT_API_TOKEN" http://127.0.0.1:8080/jobs
    """
    try:
        import uvicorn

        from ..api import create_app
    except ModuleNotFoundError as exc:
        from ..errors import ConfigError

        raise ConfigError(f"the API needs {exc.name}: pip install -e '.[api]' (make install does)") from None
    settings = obj.settings
    # workers and endpoints this server starts inherit its environment: the token is not theirs to see
    os.environ.pop("SPOTBOT_API_TOKEN", None)
    host = host or settings.api_host
    port = port or settings.api_port
    app = create_app(settings, host=host)
    auth = "no token (loopback only)" if settings.api_token is None else "bearer token from SPOTBOT_API_TOKEN"
    click.echo(f"spotbot API on http://{host}:{port} ({auth}); OpenAPI schema at /openapi.json", err=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("elastic_transport", "opensearch", "botocore", "urllib3"):  # a line per store request drowns ours
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # uvicorn's own access log prints query strings, which may carry a presigned URL's signature: ours does not
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, server_header=False)
