"""The API's images bucket on AWS: no default bucket name (names are global, anyone may own
s3://spotbot-images), and the bucket's owner checked (ExpectedBucketOwner) where the account is known.

The embedded S3 (weed) keeps its default; the owner header is seen on the real request to it.
"""

from __future__ import annotations

import uuid

import pytest
from conftest import cli_env, spotbot

from framework.errors import ConfigError
from framework.settings import Settings

from .conftest import ACCOUNT


@pytest.mark.parametrize("endpoint", ["", "https://s3.eu-west-1.amazonaws.com", "https://s3.cn-north-1.amazonaws.com.cn"])
def test_on_aws_s3_there_is_no_default_images_bucket(endpoint):
    settings = Settings(s3_endpoint_url=endpoint)
    with pytest.raises(ConfigError, match=r"^SPOTBOT_API_IMAGES_URI: no default on AWS S3.*name a bucket of yours") as refused:
        settings.images_uri()
    assert refused.value.field == "SPOTBOT_API_IMAGES_URI"
    named = Settings(s3_endpoint_url=endpoint, api_images_uri="s3://my-images-123/api/")
    assert named.images_uri() == "s3://my-images-123/api/"


def test_a_self_hosted_s3_keeps_the_default(settings):
    assert not settings.s3_is_aws()
    assert settings.images_uri() == "s3://spotbot-images/"
    assert Settings(s3_endpoint_url="http://minio.internal:9000").images_uri() == "s3://spotbot-images/"


def test_serve_on_aws_without_an_images_bucket_stops_naming_the_setting(settings):
    env = cli_env(settings, SPOTBOT_API_ALLOW_NO_AUTH="true", AWS_DEFAULT_REGION="us-east-1")
    env.pop("SPOTBOT_S3_ENDPOINT_URL", None)  # S3 is AWS's
    served = spotbot(settings, "serve", "--port", "1", env=env, timeout=120)
    assert served.returncode == 2, served.stderr
    assert "SPOTBOT_API_IMAGES_URI: no default on AWS S3" in served.stderr and "Traceback" not in served.stderr


def test_the_account_comes_from_a_configured_role():
    assert Settings().aws_account() == ""
    assert Settings(sagemaker_role_arn=f"arn:aws:iam::{ACCOUNT}:role/spotbot-sagemaker").aws_account() == ACCOUNT
    assert Settings(batch_job_role_arn="arn:aws-cn:iam::210987654321:role/w").aws_account() == "210987654321"
    assert Settings(sagemaker_role_arn="not-an-arn").aws_account() == ""


def test_the_bucket_owner_is_sent_with_the_bucket_check_when_the_account_is_known(storage):
    # Given the embedded S3, and every HeadBucket request spotbot sends to it seen on its way out
    sent = []
    storage.client.meta.events.register("before-send.s3.HeadBucket", lambda request, **_: sent.append(
        {k.lower(): v for k, v in request.headers.items()}))
    owned, plain = f"own-{uuid.uuid4().hex[:8]}", f"plain-{uuid.uuid4().hex[:8]}"

    # When buckets are ensured with an account, and without
    storage.ensure_bucket(owned, expected_owner=ACCOUNT, field="SPOTBOT_API_IMAGES_URI")
    storage.ensure_bucket(plain)

    # Then the first request carried the owner, the second did not, and both buckets exist
    assert sent[0].get("x-amz-expected-bucket-owner") == ACCOUNT.encode()
    assert "x-amz-expected-bucket-owner" not in sent[1]
    storage.check_bucket(owned, field="bucket")
    storage.check_bucket(plain, field="bucket")
