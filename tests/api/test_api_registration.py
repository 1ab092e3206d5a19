"""Code by registration (issue 14, items 5 and 6): python: references registered through the API name only .py files
under SPOTBOT_API_BOTS_DIR, given relative to it, never absolute, never with '..', never through a link that leads
out, never a module name, never spotbot's own data (SPOTBOT_HOME, where model tarballs are unpacked); and the CLI
checks every reference at registration, not at the first submit."""

from __future__ import annotations

import json
import shutil

from conftest import BOTS, ROOT, cli_env, spotbot

from .conftest import TOKEN, bot_config, start_server, stop_server

ECHO = {"name": "echo", "file_types": ".txt", "endpoint_name": "echo-upper"}


def test_python_references_through_the_api_resolve_only_under_the_bots_dir(settings, store, tmp_path):
    # Given a bots folder holding the echo bot, a file outside it, a link out of it, and spotbot's home inside it
    bots = tmp_path / "bots"
    shutil.copytree(BOTS / "echo", bots / "echo")
    (tmp_path / "outside.py").write_text("import os\nos.system('touch /tmp/spotbot-was-here')\n")
    (bots / "echo" / "leak.py").symlink_to(tmp_path / "outside.py")
    home = bots / "home"
    (home / "models" / "x" / "model-abc").mkdir(parents=True)
    (home / "models" / "x" / "model-abc" / "evil.py").write_text("predict_fn = print\n")
    server = start_server(settings, tmp_path / "serve.log", SPOTBOT_API_BOTS_DIR=str(bots), SPOTBOT_HOME=str(home))
    try:
        def register(**refs):
            return server.post("/bots", json={**ECHO, "bot_image": "python:echo/task.py",
                                              "endpoint_ecr_image_path": "python:echo/endpoint.py", **refs})

        # When references that reach outside the folder are registered, each is refused, naming its field
        refused = [
            (dict(bot_image=f"python:{tmp_path / 'outside.py'}"), "bot_image", "relative to SPOTBOT_API_BOTS_DIR"),
            (dict(bot_image="python:../outside.py"), "bot_image", "without '..'"),
            (dict(bot_image="python:echo/../../outside.py"), "bot_image", "without '..'"),
            (dict(endpoint_ecr_image_path="python:/etc/passwd"), "endpoint_ecr_image_path",
             "is neither python:<file.py> nor python:<module.name>"),
            (dict(endpoint_name="echo-upper,second", endpoint_ecr_image_path="python:echo/endpoint.py, python:/etc/x.py"),
             "endpoint_ecr_image_path", "without '..'"),
            (dict(bot_image="python:../../etc/hosts"), "bot_image", "is neither python:<file.py>"),
            (dict(bot_image="python:echo/leak.py"), "bot_image", "leads outside SPOTBOT_API_BOTS_DIR"),
            (dict(bot_image="python:os"), "bot_image", "not module names"),
            (dict(endpoint_ecr_image_path="python:home/models/x/model-abc/evil.py"), "endpoint_ecr_image_path",
             "spotbot's own data"),
            (dict(bot_image="python:echo/missing.py"), "bot_image", "no such file"),
        ]
        for refs, field, message in refused:
            answer = register(**refs)
            assert answer.status_code == 422, (refs, answer.text)
            assert answer.json()["field"] == field and message in answer.json()["message"], (refs, answer.json())
        assert store.bots.list() == []

        # Then a reference under the folder is taken, resolved to its file there
        taken = register()
        assert taken.status_code == 201, taken.text
        assert taken.json()["bot_image"] == f"python:{(bots / 'echo' / 'task.py').resolve()}"
        # and container images are no code of the server's: taken as they are
        image = server.post("/bots", json={**ECHO, "name": "boxed", "bot_image": "registry.example/bot:1",
                                           "endpoint_ecr_image_path": "registry.example/endpoint:1"})
        assert image.status_code == 201, image.text
    finally:
        stop_server(server)


def test_without_a_bots_dir_the_api_takes_no_python_reference(settings, store, tmp_path):
    server = start_server(settings, tmp_path / "serve.log", SPOTBOT_API_BOTS_DIR="")
    try:
        echo = bot_config("echo")
        answer = server.post("/bots", json={**echo, "bot_image": f"python:{ROOT / echo['bot_image'][7:]}"})
        assert answer.status_code == 422 and answer.json()["field"] == "bot_image", answer.text
        assert "SPOTBOT_API_BOTS_DIR" in answer.json()["message"]
        assert store.bots.list() == []
    finally:
        stop_server(server)
    # and a bots folder that does not exist stops the server at start, naming the setting
    missing = spotbot(settings, "serve", "--port", "1", timeout=60, env=cli_env(
        settings, SPOTBOT_API_TOKEN=TOKEN, SPOTBOT_API_BOTS_DIR=str(tmp_path / "nowhere")))
    assert missing.returncode == 2 and "SPOTBOT_API_BOTS_DIR: " in missing.stderr and "is not a folder" in missing.stderr


def test_the_cli_checks_references_and_bounds_at_registration(settings, store, tmp_path):
    config = json.loads((BOTS / "echo" / "bot_config.json").read_text())
    for key in ("bot_image", "endpoint_ecr_image_path"):  # absolute: as the CLI resolves them against the file's folder
        config[key] = f"python:{BOTS / 'echo' / config[key].removeprefix('python:')}"
    path = tmp_path / "bot.json"
    cases = [
        ({"bot_image": "python:/etc/passwd"}, "bot_image: 'python:/etc/passwd' is neither python:<file.py>"),
        ({"bot_image": "python:../../etc/hosts"}, "bot_image: 'python:../../etc/hosts' is neither python:<file.py>"),
        ({"endpoint_ecr_image_path": "python:/etc/hosts"}, "endpoint_ecr_image_path: 'python:/etc/hosts' is neither"),
        ({"bot_image": "python:no_such_module_anywhere"}, "no module 'no_such_module_anywhere' can be imported"),
        ({"bot_image": "python:missing.py"}, "bot_image: 'python:missing.py': no such file"),
        ({"file_types": [f".t{i}" for i in range(20_000)]}, "file_types: lists 20000 suffixes; at most 100"),
        ({"file_types": ",".join(f".t{i}" for i in range(101))}, "file_types: lists 101 suffixes; at most 100"),
        ({"file_types": ".a" + "b" * 40}, "is longer than 32 characters"),
        ({"endpoint_name": ",".join(f"e{i}" for i in range(17)),
          "endpoint_ecr_image_path": ",".join(["img"] * 17)}, "lists 17 endpoints; at most 16"),
    ]
    for change, message in cases:
        path.write_text(json.dumps({**config, **change}))
        result = spotbot(settings, "bots", "register", str(path))
        assert result.returncode == 2, (change, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (change, result.stderr)
    assert store.bots.list() == []
    # and a registration within the bounds, with duplicates, is taken with each suffix once
    path.write_text(json.dumps({**config, "file_types": [".txt", "TXT", ".json"] * 33}))
    taken = spotbot(settings, "bots", "register", str(path))
    assert taken.returncode == 0, taken.stderr
    assert store.bots.get("echo").file_types == [".txt", ".json"]
