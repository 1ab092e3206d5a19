"""The S3 data path (Storage.read / write) through obstore against the real embedded S3: the same
objects, keys, content types, errors and credentials as through boto3, from many threads at once."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import SecretStr

from framework.errors import ConfigError, StorageError
from framework.storage import ObjectData, Storage

KEYS = ["plain/a.txt", "sp ace/ü.txt", "q?x=1&y#z", "+plus%41", "*star:colon;semi,comma@at=eq", "per%2Fcent",
        "~tilde!bang'q\"(p)", "日本/語.txt"]
# keys obstore's paths cannot name exactly: these go through boto3 (keys with "." or ".." segments and a trailing
# "/" too, which the embedded S3 refuses or takes for folders whoever sends them)
ODD_KEYS = ["a//b", "tab\there", "back\\slash"]


@pytest.fixture
def both(settings):
    """Storage through obstore (the default) and through boto3, on the same server and keys."""
    fast = Storage(settings)
    assert isinstance(fast.data, ObjectData)
    plain = Storage(settings.model_copy(update={"s3_data_client": "boto3"}))
    assert plain.data is None
    return fast, plain


def test_what_one_client_writes_the_other_reads_byte_for_byte(both, bucket):
    fast, plain = both
    for key in KEYS + ODD_KEYS:
        data = f"content of {key}".encode() + bytes(range(256))
        assert fast.write(bucket, f"fast/{key}", data, "text/x-test") == f"s3://{bucket}/fast/{key}"
        plain.write(bucket, f"plain/{key}", data, "text/x-test")
        assert plain.read(bucket, f"fast/{key}") == data, key
        assert fast.read(bucket, f"plain/{key}") == data, key
        head = plain.client.head_object(Bucket=bucket, Key=f"fast/{key}")
        assert head["ContentType"] == "text/x-test" and head["ContentLength"] == len(data)
    big = bytes(range(256)) * 8192  # 2 MB
    fast.write(bucket, "big.bin", big)
    assert plain.read(bucket, "big.bin") == big and fast.read(bucket, "big.bin") == big


def test_many_threads_each_read_back_their_own_object(both, bucket):
    fast, _ = both

    def round_trip(i: int) -> bool:
        data = uuid.uuid4().bytes * (i + 1)
        fast.write(bucket, f"threads/{i:03d}", data)
        return fast.read(bucket, f"threads/{i:03d}") == data

    with ThreadPoolExecutor(32) as pool:
        assert all(pool.map(round_trip, range(200)))


def test_errors_are_the_storage_errors_boto3_gives(both, bucket, settings):
    for storage in both:
        missing = f"no/such/{uuid.uuid4().hex}"
        with pytest.raises(StorageError) as caught:
            storage.read(bucket, missing)
        assert caught.value.code == "NoSuchKey" and not caught.value.transient
        assert f"refused reading s3://{bucket}/{missing}: NoSuchKey" in str(caught.value)
    for client in ("obstore", "boto3"):
        away = Storage(settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9", "retry_seconds": 0,
                                                   "s3_data_client": client}))
        with pytest.raises(StorageError) as caught:
            away.read(bucket, "x")
        assert caught.value.transient and "cannot reach S3 at http://127.0.0.1:9 while reading" in str(caught.value)
    wrong = Storage(settings.model_copy(update={"s3_access_key": SecretStr("not-the-key"), "retry_seconds": 0}))
    with pytest.raises(StorageError) as caught:
        wrong.write(bucket, "x", b"1")
    assert caught.value.code == "InvalidAccessKeyId" and not caught.value.transient
    assert "not-the-key" not in str(caught.value) and settings.s3_secret_key.get_secret_value() not in str(caught.value)


CHAIN_SCRIPT = """
import json, sys
from framework.errors import ConfigError
from framework.settings import Settings
from framework.storage import Storage
settings = Settings(s3_endpoint_url=sys.argv[1], retry_seconds=0)  # no key pair: the AWS credential chain
try:
    print(json.dumps({"read": Storage(settings).read(sys.argv[2], "chain.txt").decode()}))
except ConfigError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def test_without_a_key_pair_the_aws_credential_chain_signs(settings, storage, bucket, tmp_path):
    storage.write(bucket, "chain.txt", b"signed by the chain")
    isolated = {"PATH": "/usr/bin:/bin", "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "HOME": str(tmp_path)}

    def run(**env):
        out = subprocess.run([sys.executable, "-c", CHAIN_SCRIPT, settings.s3_endpoint_url, bucket],
                             env={**isolated, **env}, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    keys = {"AWS_ACCESS_KEY_ID": settings.s3_access_key.get_secret_value(),
            "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key.get_secret_value()}
    assert run(**keys) == {"read": "signed by the chain"}
    # a profile in a credentials file, as boto3 finds it
    (tmp_path / "credentials").write_text("[bench]\naws_access_key_id = {AWS_ACCESS_KEY_ID}\n"
                                          "aws_secret_access_key = {AWS_SECRET_ACCESS_KEY}\n".format(**keys))
    assert run(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"), AWS_PROFILE="bench") == {"read": "signed by the chain"}
    assert "no AWS credentials for S3" in run()["error"]


def test_a_bad_data_client_setting_is_refused_naming_it(settings):
    from framework.settings import Settings

    with pytest.raises(ConfigError, match="SPOTBOT_S3_DATA_CLIENT"):
        Settings.from_env({"SPOTBOT_S3_DATA_CLIENT": "curl"})
