"""Bad input: a clear message naming the field or file, a non-zero exit, nothing stored."""

from __future__ import annotations

import json

import pytest
from conftest import BOTS, cli_env, register_echo, spotbot, upload

GOOD = {
    "name": "good_bot",
    "file_types": ".txt",
    "bot_image": f"python:{BOTS / 'echo' / 'task.py'}",
    "endpoint_name": "e1",
    "endpoint_ecr_image_path": f"python:{BOTS / 'echo' / 'endpoint.py'}",
}

CASES = [
    # (id, file content, text the message must contain)
    ("not json", "{name: oops", "is not valid JSON"),
    ("not an object", "[1, 2]", "must be a JSON object"),
    ("missing name", json.dumps({k: v for k, v in GOOD.items() if k != "name"}), "name: is required"),
    ("missing bot_image", json.dumps({k: v for k, v in GOOD.items() if k != "bot_image"}), "bot_image: is required"),
    ("wrong type", json.dumps({**GOOD, "file_types": 7}), "file_types:"),
    ("name with script", json.dumps({**GOOD, "name": "x'; ctx._source.clear(); '"}), "name: must start with a letter"),
    ("name with query", json.dumps({**GOOD, "name": "a OR b:*"}), "name: must start with a letter"),
    ("empty file_types", json.dumps({**GOOD, "file_types": " , "}), "file_types: must name at least one suffix"),
    ("bad suffix", json.dumps({**GOOD, "file_types": ".j pg"}), "file_types:"),
    ("unequal endpoints", json.dumps({**GOOD, "endpoint_name": "e1,e2"}), "endpoint_name lists 2 endpoint(s)"),
    ("unequal models", json.dumps({**GOOD, "model_s3_path": "s3://m/a.tar.gz,s3://m/b.tar.gz"}), "model_s3_path lists 2"),
    ("unknown field", json.dumps({**GOOD, "colour": "red"}), "colour: is not a bot_config.json field"),
    ("missing task file", json.dumps({**GOOD, "bot_image": "python:no_such_task.py"}), "bot_image:"),
]


@pytest.mark.parametrize("content,expected", [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_bot_config_is_rejected_and_nothing_is_stored(settings, store, tmp_path, content, expected):
    path = tmp_path / "bot_config.json"
    path.write_text(content)
    result = spotbot(settings, "bots", "register", str(path))
    assert result.returncode == 2
    assert expected in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr
    assert store.bots.list() == []


def test_bad_submissions_name_what_is_wrong(settings, store, storage, bucket):
    register_echo(settings)
    upload(storage, bucket, {"in/a.txt": "a"})
    good_in, good_out = f"s3://{bucket}/in/", f"s3://{bucket}/out/"
    cases = [
        (["--bot", "nobody", "--input", good_in, "--output", good_out], 5, "no bot named 'nobody'"),
        (["--bot", "echo", "--input", "bucket/in", "--output", good_out], 2, "--input: 'bucket/in' is not an S3 URI"),
        (["--bot", "echo", "--input", "s3://UPPER_case/x", "--output", good_out], 2, "--input: 'UPPER_case'"),
        (["--bot", "echo", "--input", "s3://no-such-bucket-here/in/", "--output", good_out], 2,
         "--input: bucket 'no-such-bucket-here' does not exist"),
        (["--bot", "echo", "--input", good_in, "--output", good_in], 2, "--output: s3://"),
        (["--bot", "echo", "--input", good_in, "--output", good_out, "--job-id", "../etc"], 2, "--job-id"),
    ]
    for args, code, expected in cases:
        result = spotbot(settings, "submit", *args)
        assert result.returncode == code, (args, result.stderr)
        assert expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert json.loads(spotbot(settings, "jobs", "list", "--json").stdout) == []


def test_container_images_are_refused_by_the_process_backends(settings, store, storage, bucket):
    register_echo(settings, bot_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/foo-bot:latest")
    result = spotbot(settings, "submit", "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output", f"s3://{bucket}/out/")
    assert result.returncode == 2
    assert "launcher 'process'" in result.stderr and "foo-bot:latest" in result.stderr
    register_echo(settings, endpoint_ecr_image_path="foo-endpoint:1")
    result = spotbot(settings, "submit", "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output", f"s3://{bucket}/out/")
    assert result.returncode == 2
    assert "endpoint backend 'process'" in result.stderr and "foo-endpoint:1" in result.stderr
    assert json.loads(spotbot(settings, "jobs", "list", "--json").stdout) == []


def test_unreachable_servers_are_named(settings, store, storage, bucket):
    register_echo(settings)
    result = spotbot(settings, "bots", "list", env=cli_env(settings, SPOTBOT_ES_URL="http://127.0.0.1:9"))
    assert result.returncode == 6 and "http://127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr
    result = spotbot(settings, "submit", "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output", f"s3://{bucket}/out/",
                     env=cli_env(settings, SPOTBOT_S3_ENDPOINT_URL="http://127.0.0.1:9"))
    assert result.returncode == 6 and "cannot reach S3 at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(spotbot(settings, "jobs", "list", "--json").stdout) == []


def test_an_endpoint_that_cannot_start_fails_the_job_with_its_log(settings, store, storage, bucket, tmp_path):
    broken = tmp_path / "broken_endpoint.py"
    broken.write_text("def model_fn(model_dir):\n    raise RuntimeError('weights missing')\n\ndef predict_fn(d, m):\n    return d\n")
    register_echo(settings, endpoint_ecr_image_path=f"python:{broken}")
    upload(storage, bucket, {"in/a.txt": "a"})
    result = spotbot(settings, "submit", "--bot", "echo", "--input", f"s3://{bucket}/in/", "--output",
                     f"s3://{bucket}/out/", "--json")
    assert result.returncode == 7
    assert "weights missing" in result.stderr and "echo-upper" in result.stderr
    jobs = json.loads(spotbot(settings, "jobs", "list", "--json").stdout)
    assert [j["status"] for j in jobs] == ["FAILED"]
