"""Endpoint backend `sagemaker`: real-time SageMaker endpoints from ECR images.

SageMaker holds the truth: a record in the endpoints index only remembers what spotbot did.
An endpoint SageMaker reports as serving (or on its way there) is reused and never
recreated; a missing one is created as model + endpoint config + endpoint, all three named
after it; one that failed, or is out of service, is deleted with its config and model and
created again.

What spotbot creates carries the tag spotbot:managed=true, and spotbot uses and deletes only
what carries it: an endpoint, config or model of the same name that someone else made (in
the console, another tool) is neither reused, replaced nor deleted; `spotbot endpoints delete
--force` deletes one anyway. Names are per account and region, so without this check a bot
named like a production endpoint would send its files there, or delete it.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import botocore.exceptions

from .. import aws
from ..errors import ConfigError, EndpointError, NotOurs, UnsupportedReference
from ..models import Endpoint, EndpointSpec, EndpointStatus
from ..settings import Settings
from .serving import batching_environment

log = logging.getLogger("spotbot.endpoints.sagemaker")

# states in which an endpoint answers invocations (an update keeps the old variant serving)
SERVING = {"InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"}
COMING = {"Creating"}
GONE = {"Failed", "OutOfService"}
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
PROGRESS_SECONDS = 30.0
LONGEST_POLL = 15.0
NEW_ENDPOINT_GRACE = 30.0
# invoke errors worth trying again (SageMaker's and the model's own 5xx / 429 behind ModelError)
# the tag that marks a model, endpoint config or endpoint as spotbot's own (and the operator role's
# IAM policy in deploy/aws/ allows deleting only what carries it)
MANAGED_TAG = "spotbot:managed"
TRANSIENT_INVOKE = {"ServiceUnavailable", "InternalFailure", "ThrottlingException", "ModelNotReadyException",
                    "InternalDependencyException"}


def is_missing(exc: botocore.exceptions.ClientError) -> bool:
    """SageMaker says a model, config or endpoint does not exist with a ValidationException."""
    return aws.code_of(exc) in ("ValidationException", "ValidationError") and "Could not find" in aws.message_of(exc)


def not_ours(kind: str, name: str, arn: str) -> NotOurs:
    return NotOurs(
        f"SageMaker {kind} {name!r} was not created by spotbot (it has no {MANAGED_TAG}=true tag), so spotbot "
        f"neither uses, replaces nor deletes it: name another endpoint in endpoint_name, delete it with "
        f"`spotbot endpoints delete {name} --force`, or, to hand it to spotbot, tag it: aws sagemaker add-tags "
        f"--resource-arn {arn} --tags Key={MANAGED_TAG},Value=true", name=name, arn=arn)


class SageMakerEndpoints:
    name = "sagemaker"
    unpacks_model = False  # SageMaker downloads ModelDataUrl into /opt/ml/model itself
    guards_ownership = True  # stop() takes force=True to delete what spotbot did not create

    def __init__(self, settings: Settings):
        self.settings = settings
        self.start_timeout = settings.sagemaker_start_timeout
        self.sagemaker = aws.client(settings, "sagemaker")
        # our retry.py owns invoke retries, as for every other backend: botocore makes one attempt
        self.runtime = aws.client(settings, "sagemaker-runtime", retries=1, read_timeout=settings.endpoint_timeout)

    # --- the protocol -------------------------------------------------------------------------

    def check(self, image: str) -> None:
        if image.startswith("python:"):
            raise UnsupportedReference(
                f"endpoint backend 'sagemaker' runs container images from Amazon ECR, not {image!r}; build and push "
                "the endpoint image with byob/bot_docker/build_and_push.sh NAME and put its URI in "
                "endpoint_ecr_image_path (or run it locally with SPOTBOT_ENDPOINT_BACKEND=process)",
                field="endpoint_ecr_image_path",
            )
        if not self.settings.sagemaker_role_arn:
            raise ConfigError("SageMaker needs an execution role to create endpoints: set it to the stack's "
                              "SageMakerRoleArn output (deploy/aws/)", field="SPOTBOT_SAGEMAKER_ROLE_ARN")
        aws.check_ecr_image(self.settings, image, field="endpoint_ecr_image_path")

    def start(self, spec: EndpointSpec, model_dir: Path | None = None) -> Endpoint:
        """The endpoint InService: reused when SageMaker serves it, created when missing, waited for."""
        self.check(spec.image)
        if not NAME.match(spec.name):
            raise ConfigError(f"{spec.name!r} is not a SageMaker endpoint name: letters, digits and '-' only, "
                              "at most 63 characters", field="endpoint_name")
        description = self._describe(spec.name)
        self._check_ours("endpoint", spec.name, description.get("EndpointArn"))
        status = description.get("EndpointStatus")
        if status in GONE:
            log.warning("endpoint %s is %s (%s); deleting it to create it again", spec.name, status,
                        self._describe(spec.name).get("FailureReason", "no reason given"))
            self._delete(spec.name)
            status = self._wait_gone(spec.name)
        elif status == "Deleting":
            status = self._wait_gone(spec.name)
        if status is None:
            self._create(spec)
        else:
            log.info("endpoint %s exists in SageMaker (%s): reusing it", spec.name, status)
        description = self._wait_in_service(spec.name)
        return Endpoint(name=spec.name, backend=self.name, image=spec.image, model_s3_path=spec.model_s3_path,
                        status=EndpointStatus.IN_SERVICE, url=description["EndpointArn"])

    def healthy(self, endpoint: Endpoint) -> bool:
        """Whether SageMaker serves it or is bringing it up; a failure to ask raises (transient), never guesses."""
        return self._status(endpoint.name) in SERVING | COMING

    def invoke(self, endpoint: Endpoint, body: bytes, content_type: str, accept: str) -> bytes:
        """One sagemaker-runtime InvokeEndpoint; unreachable, throttled, 5xx and not-ready raise a transient EndpointError."""
        try:
            answer = self.runtime.invoke_endpoint(EndpointName=endpoint.name, Body=body, ContentType=content_type,
                                                  Accept=accept)
            return answer["Body"].read()
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError,
                botocore.exceptions.ConnectTimeoutError) as exc:
            raise EndpointError(f"cannot reach sagemaker-runtime for endpoint {endpoint.name!r}: {exc}",
                                name=endpoint.name, transient=True, unreachable=True) from None
        except botocore.exceptions.ReadTimeoutError:
            raise EndpointError(f"endpoint {endpoint.name!r} did not answer within {self.settings.endpoint_timeout:g}s",
                                name=endpoint.name, transient=True) from None
        except botocore.exceptions.ClientError as exc:
            code = aws.code_of(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code == "ModelError":  # the container answered non-200: judge by its own status
                status = int(exc.response.get("OriginalStatusCode") or 0)
            raise EndpointError(
                f"endpoint {endpoint.name!r} answered {code or status}: {aws.message_of(exc)[:500]}",
                name=endpoint.name, status=status, code=code,
                transient=code in TRANSIENT_INVOKE or status >= 500 or status == 429,
            ) from None

    def stop(self, endpoint: Endpoint, *, force: bool = False) -> None:
        """Delete the endpoint, its endpoint config and its models (what exists of them).

        Refused (NotOurs) for any of them spotbot did not create, unless forced.
        """
        self._delete(endpoint.name, force=force)

    # --- SageMaker calls ----------------------------------------------------------------------

    def _describe(self, name: str) -> dict:
        """describe_endpoint, or {} when there is no such endpoint."""
        try:
            with aws.calling("sagemaker", f"describing endpoint {name!r}", EndpointError):
                try:
                    return self.sagemaker.describe_endpoint(EndpointName=name)
                except botocore.exceptions.ClientError as exc:
                    if is_missing(exc):
                        return {}
                    raise
        except EndpointError as exc:
            exc.name = name
            raise

    def _status(self, name: str) -> str | None:
        return self._describe(name).get("EndpointStatus")

    def _ours(self, arn: str) -> bool:
        """Whether the resource carries spotbot's tag (created by spotbot)."""
        with aws.calling("sagemaker", f"reading the tags of {arn}", EndpointError):
            pages = self.sagemaker.get_paginator("list_tags").paginate(ResourceArn=arn)
            return any(tag["Key"] == MANAGED_TAG and tag["Value"] == "true" for page in pages for tag in page["Tags"])

    def _check_ours(self, kind: str, name: str, arn: str | None, *, force: bool = False) -> None:
        """Raise NotOurs when the resource exists (has an ARN) without spotbot's tag, unless forced."""
        if arn and not force and not self._ours(arn):
            raise not_ours(kind, name, arn)

    def _create(self, spec: EndpointSpec) -> None:
        """Model, endpoint config and endpoint, named after the endpoint; leftovers of an earlier attempt go first.

        A model or config of that name without an endpoint is what a creation that died half-way
        leaves behind; it may describe an older image, so it is replaced rather than trusted.
        """
        name = spec.name
        self._delete_config_and_models(name, name, leftover=True, force=False)
        # spotbot's serving entry point reads these; another image ignores them
        container = {"Image": spec.image, "Environment": batching_environment(self.settings)}
        if spec.model_s3_path:
            container["ModelDataUrl"] = spec.model_s3_path
        tags = [{"Key": MANAGED_TAG, "Value": "true"}, {"Key": "spotbot:endpoint", "Value": name},
                {"Key": "spotbot:index-prefix", "Value": self.settings.index_prefix}]
        what = f"creating endpoint {name!r}"
        with aws.calling("sagemaker", what, EndpointError):
            self.sagemaker.create_model(ModelName=name, PrimaryContainer=container,
                                        ExecutionRoleArn=self.settings.sagemaker_role_arn, Tags=tags)
            self.sagemaker.create_endpoint_config(EndpointConfigName=name, Tags=tags, ProductionVariants=[{
                "VariantName": self.settings.sagemaker_variant, "ModelName": name,
                "InitialInstanceCount": self.settings.sagemaker_instance_count,
                "InstanceType": spec.instance_type, "InitialVariantWeight": 1.0,
            }])
            self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags)
        log.info("creating SageMaker endpoint %s (%s on %d x %s)", name, spec.image,
                 self.settings.sagemaker_instance_count, spec.instance_type)

    def _wait_in_service(self, name: str) -> dict:
        """Poll until InService (or another serving state); Failed raises with SageMaker's FailureReason."""
        started = time.monotonic()
        deadline = started + self.start_timeout
        delay, told = self.settings.poll_seconds, started
        while True:
            description = self._describe(name)
            status = description.get("EndpointStatus")
            if status in SERVING:
                return description
            # a moment after its creation an endpoint may not show yet
            if status is None and time.monotonic() - started > NEW_ENDPOINT_GRACE:
                raise EndpointError(f"endpoint {name!r} disappeared from SageMaker while it was being created",
                                    name=name)
            if status in GONE:
                reason = description.get("FailureReason") or "SageMaker gave no reason"
                raise EndpointError(f"SageMaker could not create endpoint {name!r} ({status}): {reason}",
                                    name=name, reason=reason)
            now = time.monotonic()
            if now + delay > deadline:
                raise EndpointError(
                    f"endpoint {name!r} is still {status} after {self.start_timeout:.0f}s "
                    "(SPOTBOT_SAGEMAKER_START_TIMEOUT); it may yet come up: submit again to reuse it", name=name)
            if now - told >= PROGRESS_SECONDS:
                log.info("endpoint %s is %s (%.0fs so far)", name, status, now - started)
                told = now
            time.sleep(delay)
            delay = min(LONGEST_POLL, delay * 1.5)

    def _wait_gone(self, name: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while self._status(name) is not None:
            if time.monotonic() > deadline:
                raise EndpointError(f"endpoint {name!r} is still being deleted after {self.start_timeout:.0f}s", name=name)
            time.sleep(min(LONGEST_POLL, self.settings.poll_seconds * 5))
        return None

    def _delete(self, name: str, *, force: bool = False) -> None:
        description = self._describe(name)
        config = description.get("EndpointConfigName", name)
        self._check_ours("endpoint", name, description.get("EndpointArn"), force=force)
        if description:
            with aws.calling("sagemaker", f"deleting endpoint {name!r}", EndpointError):
                try:
                    self.sagemaker.delete_endpoint(EndpointName=name)
                except botocore.exceptions.ClientError as exc:
                    if not is_missing(exc):
                        raise
            log.info("deleted SageMaker endpoint %s", name)
        self._delete_config_and_models(name, config, force=force)

    def _delete_config_and_models(self, name: str, config: str, *, leftover: bool = False, force: bool) -> None:
        """Delete an endpoint config and the models its variants name (or the model named `name`).

        Each is checked to be spotbot's before anything is deleted, so a refusal leaves all in place.
        """
        models = {name}
        with aws.calling("sagemaker", f"deleting endpoint config {config!r}", EndpointError):
            try:
                described = self.sagemaker.describe_endpoint_config(EndpointConfigName=config)
            except botocore.exceptions.ClientError as exc:
                if not is_missing(exc):
                    raise
                described = {}
            if described:
                models = {variant["ModelName"] for variant in described["ProductionVariants"]} | (
                    {name} if config == name else set())
            self._check_ours("endpoint config", config, described.get("EndpointConfigArn"), force=force)
            for model in sorted(models):
                try:
                    arn = self.sagemaker.describe_model(ModelName=model)["ModelArn"]
                except botocore.exceptions.ClientError as exc:
                    if not is_missing(exc):
                        raise
                    continue
                self._check_ours("model", model, arn, force=force)
            try:
                self.sagemaker.delete_endpoint_config(EndpointConfigName=config)
                if leftover:
                    log.warning("removed endpoint config %s left by an earlier attempt", config)
            except botocore.exceptions.ClientError as exc:
                if not is_missing(exc):
                    raise
            for model in sorted(models):
                try:
                    self.sagemaker.delete_model(ModelName=model)
                    if leftover:
                        log.warning("removed model %s left by an earlier attempt", model)
                except botocore.exceptions.ClientError as exc:
                    if not is_missing(exc):
                        raise
