"""Checking an AWS SigV4 signature the way the service would: recompute it with botocore from the known secret.

Used by the local stand-ins that must reject a wrongly signed request (OpenSearch Service, sagemaker-runtime).
"""

from __future__ import annotations

import re

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
                           r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), "
                           r"Signature=(?P<signature>[0-9a-f]{64})")


def signature_ok(method: str, url: str, headers: dict, body: bytes, *, service: str, access_key: str,
                 secret_key: str, region: str) -> bool:
    """Whether the request's signature is the one `secret_key` gives for this service and region (headers lower-cased)."""
    match = AUTHORIZATION.fullmatch(headers.get("authorization", ""))
    if not match or (match["key"], match["region"], match["service"]) != (access_key, region, service):
        return False
    signed = match["signed"].split(";")
    request = AWSRequest(method=method, url=url, data=body, headers={name: headers[name] for name in signed})
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials(access_key, secret_key), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return expected == match["signature"]
