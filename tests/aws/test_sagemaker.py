"""Endpoint backend `sagemaker` against moto's SageMaker and ECR, and a local sagemaker-runtime.

Given/When/Then: a bot's endpoint is missing, created, reused (never recreated), fails with
SageMaker's reason, leaves leftovers, is deleted; invocations are real botocore requests,
signed, over a real connection to a runtime that forwards to a real endpoint process.
"""

from __future__ import annotations

import json

import pytest
from conftest import BOTS, cli_env, register_echo, results, spotbot, submit, upload

from framework.endpoints import EndpointManager
from framework.endpoints.sagemaker import SageMakerEndpoints
from framework.errors import ConfigError, EndpointError, NotOurs, UnsupportedReference
from framework.models import BotConfig, Endpoint, EndpointSpec, EndpointStatus, Job, JobStatus

from .conftest import ecr_image


def spec(aws, name="echo-upper", **extra) -> EndpointSpec:
    return EndpointSpec(name=name, image=ecr_image(aws, f"{name}-image"), instance_type="ml.c5.xlarge", **extra)


def sagemaker_settings(aws_settings, **extra):
    return aws_settings.model_copy(update={"endpoint_backend": "sagemaker", **extra})


def test_a_missing_endpoint_is_created_then_reused_and_never_recreated(aws_settings, store, aws, sagemaker_script):
    # Given no endpoint in SageMaker, and one that takes three looks to come up
    settings = sagemaker_settings(aws_settings, sagemaker_instance_count=2)
    wanted = spec(aws, model_s3_path="s3://models/echo.tar.gz")
    sagemaker_script["echo-upper"] = ["Creating", "Creating", "Creating", "InService"]
    manager = EndpointManager(settings, store)

    # When it is ensured
    endpoint = manager.ensure_one(wanted)

    # Then model, config and endpoint exist as the registration says, and the record is IN_SERVICE
    model = aws.sagemaker.describe_model(ModelName="echo-upper")
    assert model["PrimaryContainer"]["Image"] == wanted.image
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://models/echo.tar.gz"
    assert model["ExecutionRoleArn"] == settings.sagemaker_role_arn
    variant = aws.sagemaker.describe_endpoint_config(EndpointConfigName="echo-upper")["ProductionVariants"][0]
    assert (variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"], variant["VariantName"]) == \
        ("echo-upper", "ml.c5.xlarge", 2, "AllTraffic")
    described = aws.sagemaker.describe_endpoint(EndpointName="echo-upper")
    assert described["EndpointStatus"] == "InService" and endpoint.url == described["EndpointArn"]
    assert store.endpoints.get("echo-upper")[0].status == EndpointStatus.IN_SERVICE
    assert sagemaker_script.created("echo-upper") == 1
    assert sum(1 for _, kind, what in sagemaker_script.calls if what == "echo-upper=Creating") == 3  # it waited

    # When it is ensured again, from the record and (record gone) from SageMaker alone
    again = manager.ensure_one(wanted)
    store.endpoints.delete("echo-upper")
    from_sagemaker = EndpointManager(settings, store).ensure_one(wanted)

    # Then it is the same endpoint: SageMaker was never asked to create another
    assert again.url == from_sagemaker.url == endpoint.url
    assert sagemaker_script.created("echo-upper") == 1
    assert aws.sagemaker.describe_endpoint(EndpointName="echo-upper")["CreationTime"] == described["CreationTime"]


def test_an_endpoint_found_updating_or_creating_is_reused_not_recreated(aws_settings, store, aws, sagemaker_script):
    settings = sagemaker_settings(aws_settings)
    wanted = spec(aws)
    backend = SageMakerEndpoints(settings)
    backend._create(wanted)  # made by someone else (another machine, the console)
    sagemaker_script["echo-upper"] = ["Updating"]
    assert EndpointManager(settings, store).ensure_one(wanted).status == EndpointStatus.IN_SERVICE
    sagemaker_script["echo-upper"] = ["Creating", "InService"]
    store.endpoints.delete("echo-upper")
    assert EndpointManager(settings, store).ensure_one(wanted).status == EndpointStatus.IN_SERVICE
    assert sagemaker_script.created("echo-upper") == 1


def test_a_failed_creation_surfaces_sagemakers_reason_and_the_next_try_starts_clean(
        aws_settings, store, storage, bucket, aws, sagemaker_script):
    # Given an endpoint image whose container never passes the health check
    settings = sagemaker_settings(aws_settings)
    reason = "The primary container for production variant AllTraffic did not pass the ping health check."
    image = ecr_image(aws, "broken-endpoint")
    register_echo(settings, endpoint_ecr_image_path=image)
    upload(storage, bucket, {"in/a.txt": "a"})
    sagemaker_script["echo-upper"] = ["Creating", ("Failed", reason)]

    # When a job is submitted
    code, job, stderr = submit(settings, bucket, env=cli_env(settings))

    # Then submit fails with SageMaker's reason, and so do the job and the endpoint record
    assert code == 7, stderr
    assert reason in stderr and "SageMaker could not create endpoint 'echo-upper' (Failed)" in stderr
    failed = store.jobs.list()[0]
    assert failed.status == JobStatus.FAILED and reason in failed.error
    record = store.endpoints.get("echo-upper")[0]
    assert record.status == EndpointStatus.FAILED and reason in record.error

    # When the image is fixed (here: SageMaker no longer fails it) and the endpoint ensured again
    sagemaker_script.script.pop("echo-upper")
    spec_ = BotConfig.model_validate({**store.bots.get("echo").model_dump(), "bot_image": "python:x"}).endpoints()[0]
    endpoint = EndpointManager(settings, store).ensure_one(spec_)

    # Then the failed endpoint was deleted and created anew, and is in service
    assert sagemaker_script.created("echo-upper") == 2
    assert endpoint.status == EndpointStatus.IN_SERVICE
    assert aws.sagemaker.describe_endpoint(EndpointName="echo-upper")["EndpointStatus"] == "InService"


MANAGED = [{"Key": "spotbot:managed", "Value": "true"}]


def foreign_model_and_config(aws, settings, image: str, tags: list | None = None) -> None:
    """A model and a config named echo-upper, made outside spotbot's endpoint backend (tagged as spotbot's or not)."""
    extra = {"Tags": tags} if tags else {}
    aws.sagemaker.create_model(ModelName="echo-upper", ExecutionRoleArn=settings.sagemaker_role_arn,
                               PrimaryContainer={"Image": image}, **extra)
    aws.sagemaker.create_endpoint_config(EndpointConfigName="echo-upper", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "echo-upper", "InitialInstanceCount": 1,
        "InstanceType": "ml.t2.medium"}], **extra)


def test_leftovers_of_an_earlier_attempt_are_replaced_not_crashed_on(aws_settings, store, aws):
    # Given a model and a config spotbot made for an older image (tagged as its own), but no endpoint
    settings = sagemaker_settings(aws_settings)
    foreign_model_and_config(aws, settings, ecr_image(aws, "echo-old"), tags=MANAGED)
    wanted = spec(aws)

    # When the endpoint is ensured
    endpoint = EndpointManager(settings, store).ensure_one(wanted)

    # Then it exists, from the registration's image and instance type, not the leftovers'
    assert endpoint.status == EndpointStatus.IN_SERVICE
    assert aws.sagemaker.describe_model(ModelName="echo-upper")["PrimaryContainer"]["Image"] == wanted.image
    variant = aws.sagemaker.describe_endpoint_config(EndpointConfigName="echo-upper")["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.c5.xlarge"


def test_what_spotbot_creates_is_tagged_as_its_own(aws_settings, store, aws):
    settings = sagemaker_settings(aws_settings)
    endpoint = EndpointManager(settings, store).ensure_one(spec(aws))
    arns = [endpoint.url, aws.sagemaker.describe_endpoint_config(EndpointConfigName="echo-upper")["EndpointConfigArn"],
            aws.sagemaker.describe_model(ModelName="echo-upper")["ModelArn"]]
    for arn in arns:
        tags = {tag["Key"]: tag["Value"] for tag in aws.sagemaker.list_tags(ResourceArn=arn)["Tags"]}
        assert tags["spotbot:managed"] == "true" and tags["spotbot:endpoint"] == "echo-upper", arn
        assert tags["spotbot:index-prefix"] == settings.index_prefix


def test_an_endpoint_spotbot_did_not_create_is_neither_used_replaced_nor_deleted_unless_forced(
        aws_settings, store, aws, sagemaker_script):
    # Given an endpoint of the bot's endpoint name, made by someone else (no spotbot:managed tag)
    settings = sagemaker_settings(aws_settings)
    theirs = ecr_image(aws, "their-model")
    foreign_model_and_config(aws, settings, theirs)
    arn = aws.sagemaker.create_endpoint(EndpointName="echo-upper", EndpointConfigName="echo-upper")["EndpointArn"]
    manager, wanted = EndpointManager(settings, store), spec(aws)

    # When spotbot is asked to ensure it, whether it serves or has failed
    for state in ("InService", ("Failed", "their container broke")):
        sagemaker_script["echo-upper"] = [state]
        with pytest.raises(NotOurs, match=r"not created by spotbot.*spotbot:managed=true.*--force") as refused:
            manager.ensure_one(wanted)

        # Then it is refused, naming the endpoint and how to go on, and nothing of theirs is touched
        assert refused.value.name == "echo-upper" and refused.value.arn == arn
        assert sagemaker_script.created("echo-upper") == 1  # theirs, above
        assert aws.sagemaker.describe_model(ModelName="echo-upper")["PrimaryContainer"]["Image"] == theirs
        store.endpoints.delete("echo-upper")

    # Given it recorded (by a spotbot of before the tag)
    sagemaker_script["echo-upper"] = ["InService"]
    store.endpoints.reserve(Endpoint(name="echo-upper", backend="sagemaker", image=theirs, url=arn,
                                     status=EndpointStatus.IN_SERVICE))

    # When the CLI deletes it without --force, then with it
    refused = spotbot(settings, "endpoints", "delete", "echo-upper")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "was not created by spotbot" in refused.stderr and "--force" in refused.stderr
    assert aws.sagemaker.describe_endpoint(EndpointName="echo-upper")["EndpointStatus"] == "InService"
    assert store.endpoints.get("echo-upper") is not None
    forced = spotbot(settings, "endpoints", "delete", "echo-upper", "--force")
    assert forced.returncode == 0, forced.stderr
    assert aws.sagemaker.list_endpoints()["Endpoints"] == []
    assert aws.sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert aws.sagemaker.list_models()["Models"] == []


def test_leftover_model_and_config_spotbot_did_not_create_are_left_alone(aws_settings, store, aws, sagemaker_script):
    settings = sagemaker_settings(aws_settings)
    foreign_model_and_config(aws, settings, ecr_image(aws, "their-model"))
    with pytest.raises(NotOurs, match="endpoint config 'echo-upper' was not created by spotbot"):
        EndpointManager(settings, store).ensure_one(spec(aws))
    assert sagemaker_script.created("echo-upper") == 0
    assert [m["ModelName"] for m in aws.sagemaker.list_models()["Models"]] == ["echo-upper"]
    assert store.endpoints.get("echo-upper")[0].status == EndpointStatus.FAILED


def test_a_multi_endpoint_bot_creates_its_endpoints_in_parallel(aws_settings, store, aws, sagemaker_script):
    settings = sagemaker_settings(aws_settings)
    images = [ecr_image(aws, "ocr-detect"), ecr_image(aws, "ocr-recognize")]
    bot = BotConfig(name="ocr", file_types=".png", bot_image=ecr_image(aws, "ocr-task"),
                    endpoint_name="ocr-detect,ocr-recognize", endpoint_ecr_image_path=",".join(images))
    for name in ("ocr-detect", "ocr-recognize"):
        sagemaker_script[name] = ["Creating"] * 4 + ["InService"]

    endpoints = EndpointManager(settings, store).ensure(bot)

    assert [e.name for e in endpoints] == ["ocr-detect", "ocr-recognize"]
    assert all(e.status == EndpointStatus.IN_SERVICE for e in endpoints)
    # both were created before either was in service: the waits overlapped
    created = max(t for t, kind, what in sagemaker_script.calls if kind == "create")
    first_up = min(t for t, kind, what in sagemaker_script.calls if what.endswith("=InService"))
    assert created < first_up


def test_delete_refuses_while_a_running_job_uses_it_then_removes_endpoint_config_and_model(
        aws_settings, store, aws):
    settings = sagemaker_settings(aws_settings)
    register_echo(settings, endpoint_ecr_image_path=ecr_image(aws, "echo-image"))
    EndpointManager(settings, store).ensure(store.bots.get("echo"))
    store.jobs.create(Job(job_id="running-1", bot="echo", input_uri="s3://b/in/", output_uri="s3://b/out/",
                          status=JobStatus.RUNNING))

    refused = spotbot(settings, "endpoints", "delete", "echo-upper")
    assert refused.returncode == 2
    assert "used by job(s) running-1" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert aws.sagemaker.describe_endpoint(EndpointName="echo-upper")["EndpointStatus"] == "InService"

    forced = spotbot(settings, "endpoints", "delete", "echo-upper", "--force")
    assert forced.returncode == 0, forced.stderr
    assert aws.sagemaker.list_endpoints()["Endpoints"] == []
    assert aws.sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert aws.sagemaker.list_models()["Models"] == []
    assert store.endpoints.get("echo-upper") is None


def test_images_sagemaker_cannot_run_are_refused_before_anything_is_recorded(aws_settings, store, storage, bucket, aws):
    settings = sagemaker_settings(aws_settings)
    backend = SageMakerEndpoints(settings)
    with pytest.raises(UnsupportedReference, match="endpoint_ecr_image_path.*build_and_push.sh"):
        backend.check("python:endpoint.py")
    with pytest.raises(ConfigError, match="SPOTBOT_SAGEMAKER_ROLE_ARN"):
        SageMakerEndpoints(settings.model_copy(update={"sagemaker_role_arn": ""})).check(ecr_image(aws, "role-less"))
    with pytest.raises(ConfigError, match="endpoint_name"):
        backend.start(EndpointSpec(name="under_score", image=ecr_image(aws, "bad-name")))

    # an ECR image that was never pushed: submit says so, naming the field, and records no job
    register_echo(settings, endpoint_ecr_image_path="123456789012.dkr.ecr.us-east-1.amazonaws.com/nope:v1")
    upload(storage, bucket, {"in/a.txt": "a"})
    code, job, stderr = submit(settings, bucket)
    assert code == 2 and job is None
    assert "endpoint_ecr_image_path" in stderr and "is not in ECR" in stderr and "build_and_push.sh nope" in stderr
    assert "Traceback" not in stderr
    assert store.jobs.list() == []


def invoking_settings(aws_settings, runtime):
    urls = aws_settings.aws_endpoint_urls + f",sagemaker-runtime={runtime.url}"
    return sagemaker_settings(aws_settings, aws_endpoint_urls=urls, retry_seconds=20)


def test_a_job_invokes_its_sagemaker_endpoint_through_signed_runtime_calls(
        aws_settings, store, storage, bucket, aws, runtime):
    # Given the echo bot with a SageMaker endpoint, served by a real endpoint process behind the runtime
    settings = invoking_settings(aws_settings, runtime)
    local = EndpointManager(aws_settings, store).backend("process").start(
        EndpointSpec(name="echo-upper-local", image=f"python:{BOTS / 'echo' / 'endpoint.py'}"),
        settings.home / "model")
    try:
        runtime.targets["echo-upper"] = local.url
        runtime.fail_next = [(503, "ServiceUnavailable", {})]  # the first call meets a SageMaker hiccup
        register_echo(settings, endpoint_ecr_image_path=ecr_image(aws, "echo-image"))
        upload(storage, bucket, {"in/a.txt": "hello", "in/b.txt": "a longer text"})

        # When a job runs (workers as local processes, the endpoint in "SageMaker")
        code, job, stderr = submit(settings, bucket)

        # Then every file went through sagemaker-runtime, signed, and the hiccup cost no attempt
        assert code == 0, stderr
        rows = {row["file_key"]: row for row in results(settings, job["job_id"])}
        assert rows["in/a.txt"]["status"] == "COMPLETED" and rows["in/b.txt"]["status"] == "COMPLETED"
        assert json.loads(storage.read(bucket, "out/in/a.txt.json"))["upper"] == "HELLO"
        assert all(row["attempts"] == 1 for row in rows.values())
        assert runtime.ok == 3 and runtime.rejected == 0
    finally:
        EndpointManager(aws_settings, store).backend("process").stop(local)


def test_invoke_errors_follow_the_transient_rules(aws_settings, store, aws, runtime, monkeypatch):
    settings = invoking_settings(aws_settings, runtime)
    backend = SageMakerEndpoints(settings)
    endpoint = backend.start(spec(aws))
    cases = [
        ((503, "ServiceUnavailable", {}), True),
        ((429, "ThrottlingException", {}), True),
        ((424, "ModelError", {"OriginalStatusCode": 500}), True),  # the model's own 5xx
        ((424, "ModelError", {"OriginalStatusCode": 400}), False),  # the model refused the input
        ((400, "ValidationError", {}), False),
    ]
    for fault, transient in cases:
        runtime.fail_next = [fault]
        with pytest.raises(EndpointError) as raised:
            backend.invoke(endpoint, b"{}", "application/json", "application/json")
        assert raised.value.transient is transient, (fault, runtime.ok, str(raised.value))
    # a wrong secret never reaches the model: the runtime rejects the signature
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-wrong-secret")
    with pytest.raises(EndpointError, match="InvalidSignatureException"):
        SageMakerEndpoints(settings).invoke(endpoint, b"{}", "application/json", "application/json")
    assert runtime.rejected == 1
