"""No secret in any output, log line or error; configuration printing redacts them."""

from __future__ import annotations

import json

from conftest import cli_env, register_echo, spotbot, submit, upload

from framework.settings import Settings, hide_password

ES_PASSWORD = "pa55-WORD-never-shown"
S3_SECRET = "s3-SECRET-never-shown"


def test_secrets_never_reach_outputs_errors_or_logs(settings, store, storage, bucket):
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "a", "in/b.txt": "RAISE"})
    host = settings.es_url.removeprefix("http://")
    # the embedded server takes any basic-auth pair, so a password can ride along on every request
    env = cli_env(settings, SPOTBOT_ES_URL=f"http://elastic:{ES_PASSWORD}@{host}", SPOTBOT_MAX_ATTEMPTS="1")
    code, job, stderr = submit(settings, bucket, env=env)
    assert code == 3, stderr
    outputs = [stderr]
    for args in (["status", job["job_id"], "--json"], ["results", job["job_id"]], ["admin", "settings"],
                 ["jobs", "list", "--json"], ["endpoints", "list", "--json"], ["local", "status", "--json"]):
        result = spotbot(settings, *args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        outputs += [result.stdout, result.stderr]
    settings_shown = json.loads(spotbot(settings, "admin", "settings", env=env).stdout)
    assert settings_shown["s3_secret_key"] == "***" and settings_shown["s3_access_key"] == "***"
    # an error naming the server names it without its password
    unreachable = spotbot(settings, "bots", "list", env={**env, "SPOTBOT_ES_URL": f"http://elastic:{ES_PASSWORD}@127.0.0.1:9"})
    assert unreachable.returncode == 6 and "http://127.0.0.1:9" in unreachable.stderr
    outputs += [unreachable.stdout, unreachable.stderr]
    outputs += [path.read_text() for path in settings.home.rglob("*.log")]
    assert len(outputs) > 10
    for text in outputs:
        assert ES_PASSWORD not in text
    assert settings_shown["es_url"] == f"http://elastic:***@{host}"


def test_settings_redact_every_secret(settings):
    from pydantic import SecretStr

    shown = settings.model_copy(update={"s3_secret_key": SecretStr(S3_SECRET)}).redacted()
    assert S3_SECRET not in json.dumps(shown, default=str)


API_TOKEN = "api-TOKEN-for-the-server-only"


def test_a_worker_gets_the_settings_it_uses_and_never_the_api_token(settings, store, storage, bucket):
    # Given an environment holding the API's token, a launcher setting and a variable of the user's own
    register_echo(settings)
    upload(storage, bucket, {"in/env.txt": "ENV"})
    env = cli_env(settings, SPOTBOT_API_TOKEN=API_TOKEN, SPOTBOT_API_ALLOW_NO_AUTH="true",
                  SPOTBOT_DOCKER_MOUNTS="/nonexistent:/x", SPOTBOT_WATCH_INTERVAL="7", ECHO_INHERITED="kept")

    # When a job's process worker reports what it was given
    code, job, stderr = submit(settings, bucket, env=env)
    assert code == 0, stderr
    seen = json.loads(storage.read(bucket, "out/in/env.txt.json"))

    # Then it holds its store, S3 and how to work, the user's own variable, and nothing of the API or the launchers
    names = set(seen["spotbot"])
    assert {"SPOTBOT_ES_URL", "SPOTBOT_S3_ENDPOINT_URL", "SPOTBOT_CONCURRENCY", "SPOTBOT_LEASE_SECONDS"} <= names
    assert not {n for n in names if n.startswith("SPOTBOT_API_")}, names
    assert "SPOTBOT_DOCKER_MOUNTS" not in names and "SPOTBOT_WATCH_INTERVAL" not in names
    assert seen["inherited"] == "kept"


def test_sigv4_workers_get_no_elasticsearch_secret():
    on_aws = Settings.from_env({}, es_url="https://search.example.com", es_auth="sigv4", es_password="never-sent",
                               api_token=API_TOKEN)
    names = set(on_aws.worker_environment())
    assert "SPOTBOT_ES_PASSWORD" not in names and "SPOTBOT_API_TOKEN" not in names and "SPOTBOT_ES_URL" in names
    assert API_TOKEN not in json.dumps(on_aws.worker_environment())


def test_credentials_in_an_es_url_are_hidden_whatever_its_form(settings, store):
    for url, shown in [("https://elastic:pa55@es.example.com:443", "https://elastic:***@es.example.com:443"),
                       ("elastic:pa55@search-x.us-east-1.es.amazonaws.com", "elastic:***@search-x.us-east-1.es.amazonaws.com"),
                       ("elastic:pa/5@5@es:9200", "elastic:***@es:9200"),
                       ("https://es.example.com", "https://es.example.com")]:
        assert hide_password(url) == shown
    # a bot registered with the seed's scheme-less form keeps no password in its stored document
    path = register_echo(settings, name="echo-creds", es_url="elastic:pa55-secret@search-x.us-east-1.es.amazonaws.com")
    assert "pa55-secret" in path.read_text()
    listed = spotbot(settings, "bots", "list", "--json")
    assert "pa55-secret" not in listed.stdout and "echo-creds" in listed.stdout
    assert "pa55-secret" not in json.dumps(store.bots.get("echo-creds").model_dump(mode="json"))
