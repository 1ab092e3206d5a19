"""`spotbot serve`: the HTTP API."""

from __future__ import annotations

import logging
import os
import threading
import time

import click

from .app import Context, handled, main

log = logging.getLogger("spotbot.api")
# on SIGTERM, how long requests under way may finish; then how long the orderly shutdown may take before the process
# exits whatever its threads are doing (a download, a store call): asyncio.run waits for threads without end
SHUTDOWN_GRACE_SECONDS = 5.0
SHUTDOWN_MARGIN_SECONDS = 5.0


def exit_after(seconds: float) -> None:
    """Exit the process in seconds, whatever it is doing then (a daemon thread: an earlier exit ends it)."""

    def watchdog() -> None:
        time.sleep(seconds)
        log.warning("still busy %.0f s after SIGTERM: exiting now", seconds)
        logging.shutdown()
        os._exit(0)

    threading.Thread(target=watchdog, name="spotbot-stop-watchdog", daemon=True).start()


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

        class Server(uvicorn.Server):
            """uvicorn's server, sure to stop on SIGTERM: requests under way get SHUTDOWN_GRACE_SECONDS, then the
            process exits after SHUTDOWN_MARGIN_SECONDS more whatever its threads are busy with."""

            def handle_exit(self, sig, frame) -> None:
                if not self.should_exit:
                    exit_after(SHUTDOWN_GRACE_SECONDS + SHUTDOWN_MARGIN_SECONDS)
                super().handle_exit(sig, frame)
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
    Server(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False, server_header=False,
                          timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)).run()
