"""The bearer token: every route but /health needs it, the server will not start without one, it is never shown."""

from __future__ import annotations

import re
import subprocess
import uuid

from conftest import SPOTBOT, cli_env

from .conftest import TOKEN, start_server, stop_server


def routes(api) -> list[tuple[str, str]]:
    """Every operation of the API's own schema, with its path parameters filled in."""
    schema = api.get("/openapi.json").json()
    found = []
    for path, operations in schema["paths"].items():
        concrete = re.sub(r"\{image_id\}", str(uuid.uuid4()), path)
        concrete = re.sub(r"\{[a-z_]+\}", "x1", concrete)
        found += [(method.upper(), concrete) for method in operations]
    return found


def test_every_route_but_health_needs_the_token(api):
    operations = routes(api)
    assert len(operations) >= 14 and ("GET", "/health") in operations
    for method, path in operations + [("GET", "/openapi.json")]:
        if path == "/health":
            continue
        for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer "}):
            answer = api.call(method, path, auth=False, headers=headers)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            assert answer.json()["status"] == 401 and TOKEN not in answer.text
    health = api.get("/health", auth=False)
    assert health.status_code == 200 and health.json() == {"status": "ok", "elasticsearch": "ok"}
    assert api.get("/bots").status_code == 200
    assert TOKEN not in api.output()


def test_the_server_refuses_to_start_without_a_token_unless_told_and_on_loopback(settings, store, tmp_path):
    def serve(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([SPOTBOT, "serve", "--port", "1", *args], env=cli_env(settings, **env),
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    no_token = serve()
    assert no_token.returncode == 2 and "SPOTBOT_API_TOKEN: is not set" in no_token.stderr
    short = serve(SPOTBOT_API_TOKEN="abc")
    assert short.returncode == 2 and "at least 16 characters" in short.stderr and "abc" not in short.stderr
    public = serve("--host", "0.0.0.0", SPOTBOT_API_ALLOW_NO_AUTH="true")
    assert public.returncode == 2 and "--host: serving without a token is allowed on a loopback address only" in public.stderr
    bad_network = serve(SPOTBOT_API_TOKEN=TOKEN, SPOTBOT_API_FETCH_ALLOW_NETWORKS="10.0.0.0/8,nonsense")
    assert bad_network.returncode == 2 and "SPOTBOT_API_FETCH_ALLOW_NETWORKS: 'nonsense'" in bad_network.stderr
    for result in (no_token, short, public, bad_network):
        assert "Traceback" not in result.stderr

    # Told, on 127.0.0.1, it serves without a token
    open_server = start_server(settings, tmp_path / "open.log", token=None, SPOTBOT_API_ALLOW_NO_AUTH="true")
    try:
        assert open_server.get("/bots", auth=False).status_code == 200
    finally:
        stop_server(open_server)
