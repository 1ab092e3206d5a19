"""No secret in any output, log line or error; configuration printing redacts them."""

from __future__ import annotations

import json

from conftest import cli_env, register_echo, spotbot, submit, upload

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
