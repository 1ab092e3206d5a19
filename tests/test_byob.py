"""The seed's registration flow: python byob.py [bot_config.json]."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, cli_env, spotbot


def byob_config() -> dict:
    """The shipped byob/bot_config.json, with its python: paths made absolute for use elsewhere."""
    config = json.loads((ROOT / "byob" / "bot_config.json").read_text())
    for field in ("bot_image", "endpoint_ecr_image_path"):
        config[field] = "python:" + str(ROOT / "byob" / config[field].removeprefix("python:"))
    return config


def byob(settings, config_path=None, **env):
    args = [sys.executable, str(ROOT / "byob" / "byob.py")] + ([str(config_path)] if config_path else [])
    return subprocess.run(args, env=cli_env(settings, **env), capture_output=True, text=True, timeout=120)


def test_byob_creates_then_updates_and_prints_what_is_stored(settings, store, tmp_path):
    config = byob_config()
    path = tmp_path / "bot_config.json"
    path.write_text(json.dumps(config))

    created = byob(settings, path)
    assert created.returncode == 0, created.stderr
    assert "created bot foo_bot" in created.stderr
    first = json.loads(created.stdout)
    assert first == store.bots.get("foo_bot").model_dump()
    assert first["file_types"] == [".jpg", ".png"] and first["create_date"] == "2020-07-27 21:39:00"
    shown = spotbot(settings, "bots", "show", "foo_bot", "--json")
    assert json.loads(shown.stdout) == first
    listed = spotbot(settings, "bots", "show", "foo_bot").stdout
    assert "file_types               .jpg,.png" in listed and "bot_image" in listed

    config["file_types"] = ".tif"
    config["endpoint_name"] = "foo-other"
    path.write_text(json.dumps(config))
    updated = byob(settings, path)
    assert updated.returncode == 0, updated.stderr
    assert "updated bot foo_bot" in updated.stderr
    second = json.loads(updated.stdout)
    assert second["file_types"] == [".tif"] and second["endpoint_name"] == "foo-other"
    assert second["create_date"] == first["create_date"] and second["update_date"] != "2020-07-27 22:39:00"
    assert len(store.bots.list()) == 1


def test_byob_defaults_to_the_config_beside_it(settings, store):
    result = byob(settings)
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)
    assert stored["name"] == "foo_bot"
    assert stored["bot_image"] == f"python:{ROOT / 'byob' / 'bot_docker' / 'task.py'}"


def test_byob_honours_es_url_in_the_file(settings, store, tmp_path):
    config = byob_config()
    config["es_url"] = settings.es_url
    path = tmp_path / "bot_config.json"
    path.write_text(json.dumps(config))
    # the environment points nowhere: the file's es_url is the one used
    result = byob(settings, path, SPOTBOT_ES_URL="http://127.0.0.1:1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["es_url"] == settings.es_url
    # and the other way round: a file naming an unreachable server fails, naming it
    config["es_url"] = "127.0.0.1:1"
    path.write_text(json.dumps(config))
    failed = byob(settings, path)
    assert failed.returncode == 6 and "https://127.0.0.1:1" in failed.stderr and "Traceback" not in failed.stderr
