"""AWS control-plane clients (SageMaker, Batch, ECR, CloudWatch Logs) built from Settings.

Credentials always come from the AWS credential chain (a profile, the instance or job role,
environment variables), never from spotbot's settings: the S3 keys in Settings are for S3 only.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

import boto3
import botocore.config
import botocore.exceptions

from .errors import ConfigError, SpotbotError
from .settings import Settings

SERVICES = ("sagemaker", "sagemaker-runtime", "batch", "ecr", "logs")
# <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>[:tag | @digest]
ECR_IMAGE = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
                       r"(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))?$")
THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
             "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalServerException",
             "ServerException", "SlowDown", "InternalError", "RequestTimeout"}


def endpoint_urls(settings: Settings) -> dict[str, str]:
    """SPOTBOT_AWS_ENDPOINT_URLS ("batch=http://127.0.0.1:5000,ecr=...") as a dict; the error names the bad pair."""
    urls: dict[str, str] = {}
    for pair in filter(None, (item.strip() for item in settings.aws_endpoint_urls.split(","))):
        service, sep, url = pair.partition("=")
        service, url = service.strip(), url.strip()
        if not sep or service not in SERVICES or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{pair!r} is not service=http(s)://host:port with a service among {', '.join(SERVICES)}",
                              field="SPOTBOT_AWS_ENDPOINT_URLS")
        urls[service] = url
    return urls


def client(settings: Settings, service: str, *, retries: int = 6, read_timeout: float = 60.0) -> Any:
    """A boto3 client for one service in the settings' region, at its URL override when there is one."""
    return boto3.session.Session().client(
        service,
        region_name=settings.region,
        endpoint_url=endpoint_urls(settings).get(service),
        config=botocore.config.Config(retries={"mode": "standard", "total_max_attempts": retries},
                                      read_timeout=read_timeout, connect_timeout=10),
    )


def code_of(exc: botocore.exceptions.ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def message_of(exc: botocore.exceptions.ClientError) -> str:
    return exc.response.get("Error", {}).get("Message", "") or str(exc)


@contextlib.contextmanager
def calling(service: str, what: str, error: type[SpotbotError], *, where: str = "", hint: str = "",
            **data: Any) -> Iterator[None]:
    """Turn botocore failures into `error`: transient for unreachable, throttled or 5xx; the message says what failed.

    `where` names the service's address in the messages (an S3 endpoint, a queue URL), `hint` follows the
    "cannot reach" message, and `data` goes onto the error (its url, say).
    """
    at = f" at {where}" if where else ""
    try:
        yield
    except botocore.exceptions.NoCredentialsError:
        raise ConfigError(f"no AWS credentials for {service} while {what}: configure a profile, "
                          "environment variables or an instance role") from None
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError) as exc:
        raise error(f"cannot reach {service}{at} while {what}{hint or f': {exc}'}", transient=True, **data) from None
    except botocore.exceptions.ClientError as exc:
        code = code_of(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        raise error(f"{service}{at} refused {what}: {code} {message_of(exc)}".strip(), code=code,
                    transient=code in THROTTLED or status >= 500 or status == 429, **data) from None


def check_ecr_image(settings: Settings, image: str, *, field: str) -> None:
    """Fail early, naming the field, when an ECR image reference names no pushed image.

    Images outside ECR are left to the service that pulls them; an ECR answer other than
    "not found" (no permission to describe images, say) does not block: the pull will tell.
    """
    match = ECR_IMAGE.match(image)
    if not match:
        return
    image_id = {"imageDigest": match["digest"]} if match["digest"] else {"imageTag": match["tag"] or "latest"}
    ecr = client(settings, "ecr", retries=3)
    try:
        ecr.describe_images(registryId=match["account"], repositoryName=match["repository"], imageIds=[image_id])
    except botocore.exceptions.ClientError as exc:
        if code_of(exc) in ("RepositoryNotFoundException", "ImageNotFoundException"):
            raise ConfigError(f"{image} is not in ECR ({code_of(exc)}): build and push it with "
                              f"byob/bot_docker/build_and_push.sh {match['repository']}", field=field) from None
    except (botocore.exceptions.BotoCoreError, ValueError):
        pass
