"""Launcher `batch` against moto's Batch, EC2, IAM, ECR and CloudWatch Logs; the store and S3 are real.

moto records Batch jobs but never runs them (no Docker engine here): a child's run is shown by
running a real worker process with exactly the environment Batch holds for that child, and
Batch's later reports (stuck RUNNABLE, a Spot reclaim) are set on moto's records by the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import cli_env, spotbot, upload
from pydantic import SecretStr

from framework.worker import WorkerEnv
from framework.errors import ConfigError, LaunchError, UnsupportedReference
from framework.launchers import WorkerSpec
from framework.launchers.batch import BatchLauncher
from framework.models import BotConfig, FileStatus, JobStatus, Worker, WorkerState, now_ms
from framework.scheduler import Scheduler
from framework.supervisor import Supervisor

from .conftest import batch_backend, ecr_image, role

TASK = "from framework import bot\n\ndef main_task(name):\n    return {'text': bot.read_input(name).decode()[::-1]}\n"


@pytest.fixture
def batch_settings(aws_settings, aws):
    """Settings for the batch launcher: a VPC, subnet and security group in moto's EC2, roles in its IAM."""
    vpc = aws.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = aws.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = aws.ec2.create_security_group(GroupName="spotbot-workers", Description="egress only", VpcId=vpc)["GroupId"]
    role(aws, "spotbot-instance", "ec2.amazonaws.com")
    profile = aws.iam.create_instance_profile(InstanceProfileName="spotbot-instance")["InstanceProfile"]["Arn"]
    aws.iam.add_role_to_instance_profile(InstanceProfileName="spotbot-instance", RoleName="spotbot-instance")
    return aws_settings.model_copy(update={
        "launcher": "batch", "batch_subnets": subnet, "batch_security_groups": group, "batch_instance_role": profile,
        "batch_service_role": role(aws, "spotbot-batch-service", "batch.amazonaws.com"),
        "batch_job_role_arn": role(aws, "spotbot-worker", "ecs-tasks.amazonaws.com"),
        "batch_vcpus": 2, "batch_memory": 4096, "batch_max_vcpus": 32,
    })


def register(store, aws, name="reverser") -> BotConfig:
    bot = BotConfig(name=name, file_types=".txt", bot_image=ecr_image(aws, f"{name}-task"))
    store.bots.register(bot)
    return bot


def submit(settings, store, storage, bucket, workers=3, files=12):
    upload(storage, bucket, {f"in/{i:02d}.txt": f"text {i}" for i in range(files)})
    scheduler = Scheduler(settings, store, storage)
    job = scheduler.submit("reverser", f"s3://{bucket}/in/", f"s3://{bucket}/out/", workers=workers)
    return scheduler, job


def environment(described: dict) -> dict[str, str]:
    return {pair["name"]: pair["value"] for pair in described["container"]["environment"]}


def test_environment_queue_and_definition_are_created_once_and_reused(batch_settings, store, storage, bucket, aws):
    # Given no compute environment, queue or job definition in Batch
    register(store, aws)

    # When a job with three workers is submitted
    scheduler, job = submit(batch_settings, store, storage, bucket)

    # Then a managed Spot environment and a queue on it exist, as the settings say
    (environment_,) = aws.batch.describe_compute_environments()["computeEnvironments"]
    resources = environment_["computeResources"]
    assert (environment_["computeEnvironmentName"], environment_["type"]) == ("spotbot-spot", "MANAGED")
    assert (resources["type"], resources["allocationStrategy"]) == ("SPOT", "SPOT_CAPACITY_OPTIMIZED")
    assert (resources["minvCpus"], resources["maxvCpus"]) == (0, 32)
    assert resources["subnets"] == [batch_settings.batch_subnets]
    assert resources["securityGroupIds"] == [batch_settings.batch_security_groups]
    assert resources["instanceRole"] == batch_settings.batch_instance_role
    (queue,) = aws.batch.describe_job_queues()["jobQueues"]
    assert queue["computeEnvironmentOrder"][0]["computeEnvironment"] == environment_["computeEnvironmentArn"]

    # and one job definition for the bot's image: never privileged, its vCPUs and memory, a Spot retry strategy
    (definition,) = aws.batch.describe_job_definitions(jobDefinitionName="spotbot-reverser")["jobDefinitions"]
    container = definition["containerProperties"]
    assert container["image"] == store.bots.get("reverser").bot_image
    assert container["privileged"] is False
    assert {r["type"]: r["value"] for r in container["resourceRequirements"]} == {"VCPU": "2", "MEMORY": "4096"}
    assert container["jobRoleArn"] == batch_settings.batch_job_role_arn
    rules = [{**rule, "action": rule["action"].upper()} for rule in definition["retryStrategy"]["evaluateOnExit"]]
    assert {"onStatusReason": "Host EC2*", "action": "RETRY"} in rules
    assert rules[-1] == {"onReason": "*", "action": "EXIT"}  # anything else ends the attempt
    assert definition["retryStrategy"]["attempts"] > 1

    # and ONE array job of size 3, whose workers are its children, batch ids 0..2
    array_id = next(iter(job.workers)).split(":")[0]
    (array,) = aws.batch.describe_jobs(jobs=[array_id])["jobs"]
    assert array["arrayProperties"]["size"] == 3
    assert array["jobQueue"] == queue["jobQueueArn"]
    assert sorted((w.id, w.batch_id) for w in job.workers.values()) == [(f"{array_id}:{i}", i) for i in range(3)]
    env = environment(array)
    assert env["job_id"] == job.job_id and env["output_s3_bucket"] == bucket and env["output_s3_prefix"] == "out/"
    assert env["es_index"] == store.index("files") and env["SPOTBOT_BOT"] == "reverser"
    assert "batch_id" not in env and "SPOTBOT_WORKER_ID" not in env  # each child takes them from Batch
    assert not {"SPOTBOT_S3_ACCESS_KEY", "SPOTBOT_S3_SECRET_KEY", "SPOTBOT_ES_PASSWORD", "SPOTBOT_HOME"} & set(env)

    # When a second job is submitted
    upload(storage, bucket, {"in2/a.txt": "again"})
    second = scheduler.submit("reverser", f"s3://{bucket}/in2/", f"s3://{bucket}/out2/", workers=2)

    # Then environment, queue and definition are reused: nothing new but the job
    assert len(aws.batch.describe_compute_environments()["computeEnvironments"]) == 1
    assert len(aws.batch.describe_job_queues()["jobQueues"]) == 1
    assert len(aws.batch.describe_job_definitions(jobDefinitionName="spotbot-reverser")["jobDefinitions"]) == 1
    assert len(second.workers) == 2 and second.status == JobStatus.RUNNING

    # and a changed worker size is a new revision of the same definition
    bigger = batch_settings.model_copy(update={"batch_memory": 8192})
    upload(storage, bucket, {"in3/a.txt": "bigger"})
    Scheduler(bigger, store, storage).submit("reverser", f"s3://{bucket}/in3/", f"s3://{bucket}/out3/", workers=1)
    revisions = aws.batch.describe_job_definitions(jobDefinitionName="spotbot-reverser")["jobDefinitions"]
    assert sorted(d["revision"] for d in revisions) == [1, 2]


def test_no_secret_reaches_batch(batch_settings, aws, store):
    # Given settings holding an S3 key pair (workers on AWS use the job role instead)
    settings = batch_settings.model_copy(update={"s3_access_key": SecretStr("AKIA-NEVER-IN-BATCH"),
                                                 "s3_secret_key": SecretStr("s3-secret-never-in-batch")})
    launcher = BatchLauncher(settings)
    bot = register(store, aws)
    specs = [WorkerSpec("job-1", bot, f"w{i}", i, environment={**settings.environment(), "job_id": "job-1",
                                                                "batch_id": str(i), "output_s3_bucket": "out"})
             for i in range(2)]

    workers = launcher.launch_many(specs)

    described = aws.batch.describe_jobs(jobs=[workers[0].id.split(":")[0]])["jobs"][0]
    definition = aws.batch.describe_job_definitions(jobDefinitionName="spotbot-reverser")["jobDefinitions"][0]
    shown = json.dumps([described, definition], default=str)
    assert "AKIA-NEVER-IN-BATCH" not in shown and "s3-secret-never-in-batch" not in shown
    assert "SPOTBOT_S3_SECRET_KEY" not in shown
    # an Elasticsearch password cannot be kept out of a worker that needs it: it is refused instead
    for field, value in (("es_password", SecretStr("pw")), ("es_url", "https://u:pw@search.example.com")):
        with pytest.raises(ConfigError, match=f"SPOTBOT_{field.upper()}.*sigv4"):
            BatchLauncher(batch_settings.model_copy(update={field: value})).check(bot)


def test_a_child_runs_a_worker_from_the_environment_batch_holds_for_it(
        batch_settings, store, storage, bucket, aws, tmp_path):
    # Given a submitted job of three workers, twelve files in chunks of five
    register(store, aws)
    scheduler, job = submit(batch_settings, store, storage, bucket)
    child = sorted(job.workers)[1]
    env = environment(aws.batch.describe_jobs(jobs=[child])["jobs"][0])
    assert env["AWS_BATCH_JOB_ID"] == child

    # When child 1 runs: its environment as Batch holds it, plus what Batch's agent adds (the array
    # index) and the credentials the job role would give (here: the embedded S3's key pair)
    task = tmp_path / "task.py"
    task.write_text(TASK)
    run_env = {"PATH": os.environ["PATH"], **env, "AWS_BATCH_JOB_ARRAY_INDEX": "1",
               "AWS_ACCESS_KEY_ID": "spotbot", "AWS_SECRET_ACCESS_KEY": "spotbot", "HOME": str(tmp_path)}
    worker = subprocess.run([sys.executable, "-m", "framework.bot", str(task)], env=run_env, capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)

    # Then it takes batch 1 and Batch's job id for its own, works the job to its end and records that
    assert worker.returncode == 0, worker.stderr
    assert WorkerEnv.from_environ(run_env).batch_id == 1
    assert WorkerEnv.from_environ({**run_env, "batch_id": "2"}).batch_id == 2  # an explicit batch_id wins
    done = store.jobs.get(job.job_id)
    assert done.status == JobStatus.COMPLETED and done.counts[FileStatus.COMPLETED.value] == 12
    assert done.workers[child].state == WorkerState.EXITED
    first_chunk = min((t for t in store.files.page(job.job_id)), key=lambda t: t.started_at or 0)
    assert first_chunk.batch_id == 1 and first_chunk.worker_id == child  # its own batch first
    assert json.loads(storage.read(bucket, "out/in/03.txt.json")) == {"text": "3 txet"}


def set_child(job_id: str, status: str, reason: str | None = None, exit_code: int | None = None) -> None:
    """What Batch would report for a child job (moto never moves them by itself here)."""
    child = batch_backend()._jobs[job_id]
    child.status = status
    child.job_stopped = status in ("SUCCEEDED", "FAILED")
    child.job_stopped_reason = reason
    child.exit_code = exit_code


def test_the_supervisor_reads_batch_states(batch_settings, store, storage, bucket, aws):
    # Given a job of three workers: one stuck RUNNABLE, one running, one lost to Spot reclaims
    register(store, aws)
    scheduler, job = submit(batch_settings, store, storage, bucket)
    stuck, running, lost = sorted(job.workers)
    capacity = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - Service cannot fulfill the capacity requested"
    set_child(stuck, "RUNNABLE", capacity)
    set_child(running, "RUNNING")
    set_child(lost, "FAILED", "Host EC2 (instance i-0abc123) terminated.")

    # When the supervisor looks (twice)
    supervisor = Supervisor(scheduler)
    supervisor.step(job.job_id)
    after = supervisor.step(job.job_id)

    # Then the stuck worker carries Batch's reason, noted once on the job
    assert after.workers[stuck].reason == f"RUNNABLE: {capacity}"
    assert sum(f"worker {stuck} waits to start: RUNNABLE: {capacity}" in event for event in after.events) == 1
    # and the lost one ended with Batch's reason and was relaunched in its place, as a single job of batch 2
    assert after.workers[lost].state == WorkerState.FAILED
    assert after.workers[lost].reason.endswith("(Host EC2 (instance i-0abc123) terminated.)")
    (replacement,) = [w for w in after.workers.values() if w.id not in (stuck, running, lost)]
    assert replacement.batch_id == 2 and ":" not in replacement.id
    assert environment(aws.batch.describe_jobs(jobs=[replacement.id])["jobs"][0])["batch_id"] == "2"
    assert any(f"relaunched worker {lost} as {replacement.id}" in event for event in after.events)

    # and `spotbot status` shows each worker's state as Batch reports it
    shown = spotbot(batch_settings, "status", job.job_id, "--json", env=cli_env(batch_settings))
    assert shown.returncode == 0, shown.stderr
    states = {w["id"]: w["state"] for w in json.loads(shown.stdout)["workers"]}
    assert (states[stuck], states[running], states[lost]) == ("STARTING", "RUNNING", "FAILED")

    # a job DescribeJobs does not show is starting while it is young (just submitted), lost when old
    ghost = Worker(id="no-such-job", job_id=job.job_id, batch_id=0, backend="batch")
    assert scheduler.launcher.poll(ghost) == (WorkerState.STARTING, None)
    assert scheduler.launcher.status_reason(ghost) == ""
    old = ghost.model_copy(update={"started_at": now_ms() - 3_600_000})
    assert scheduler.launcher.poll(old) == (WorkerState.LOST, None)


def test_worker_logs_come_from_cloudwatch_logs(batch_settings, store, storage, bucket, aws):
    register(store, aws)
    scheduler, job = submit(batch_settings, store, storage, bucket, workers=2)
    first, second = (job.workers[w] for w in sorted(job.workers))
    stream = aws.batch.describe_jobs(jobs=[first.id])["jobs"][0]["container"]["logStreamName"]
    aws.logs.create_log_group(logGroupName="/aws/batch/job")
    aws.logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName=stream)
    lines = ["2026-01-01 00:00:00 INFO spotbot.worker: claimed a chunk",
             "2026-01-01 00:00:01 ERROR spotbot.worker: in task.py: defines no main_task(file_name) function"]
    aws.logs.put_log_events(logGroupName="/aws/batch/job", logStreamName=stream,
                            logEvents=[{"timestamp": int(time.time() * 1000) + i, "message": line} for i, line in enumerate(lines)])
    launcher = scheduler.launcher

    assert list(launcher.logs(first)) == lines
    assert launcher.last_words(first) == "in task.py: defines no main_task(file_name) function"
    set_child(second.id, "RUNNABLE")
    batch_backend()._jobs[second.id].log_stream_name = None  # never started: no attempt, no stream
    batch_backend()._jobs[second.id].attempts = []
    with pytest.raises(LaunchError, match="no log yet.*RUNNABLE.*/aws/batch/job"):
        list(launcher.logs(second))


def test_a_configured_queue_is_used_and_nothing_is_created(batch_settings, store, storage, bucket, aws):
    # Given a team's own compute environment and queue, and settings that name only the queue
    settings = batch_settings
    created = aws.batch.create_compute_environment(
        computeEnvironmentName="team-ce", type="MANAGED", state="ENABLED", serviceRole=settings.batch_service_role,
        computeResources={"type": "EC2", "minvCpus": 0, "maxvCpus": 4, "instanceTypes": ["optimal"],
                          "subnets": [settings.batch_subnets], "securityGroupIds": [settings.batch_security_groups],
                          "instanceRole": settings.batch_instance_role})
    aws.batch.create_job_queue(jobQueueName="team-queue", state="ENABLED", priority=1, computeEnvironmentOrder=[
        {"order": 1, "computeEnvironment": created["computeEnvironmentArn"]}])
    own = settings.model_copy(update={"batch_job_queue": "team-queue", "batch_subnets": "",
                                      "batch_security_groups": "", "batch_instance_role": ""})
    register(store, aws)

    scheduler, job = submit(own, store, storage, bucket, workers=2)

    array = aws.batch.describe_jobs(jobs=[next(iter(job.workers)).split(":")[0]])["jobs"][0]
    assert array["jobQueue"].endswith(":job-queue/team-queue")
    assert [ce["computeEnvironmentName"] for ce in aws.batch.describe_compute_environments()["computeEnvironments"]] \
        == ["team-ce"]
    # a queue that does not exist is named in the error, and no job is recorded
    missing = spotbot(own, "submit", "--bot", "reverser", "--input", f"s3://{bucket}/in/", "--output",
                      f"s3://{bucket}/other/", env=cli_env(own, SPOTBOT_BATCH_JOB_QUEUE="no-such-queue"))
    assert missing.returncode == 2 and "SPOTBOT_BATCH_JOB_QUEUE" in missing.stderr
    assert "no-such-queue" in missing.stderr and "Traceback" not in missing.stderr


def test_what_batch_cannot_run_is_refused_before_anything_is_recorded(batch_settings, store, storage, bucket, aws):
    bot = register(store, aws)
    with pytest.raises(UnsupportedReference, match="bot_image.*build_and_push.sh"):
        BatchLauncher(batch_settings).check(bot.model_copy(update={"bot_image": "python:task.py"}))
    with pytest.raises(ConfigError, match="SPOTBOT_BATCH_SUBNETS"):
        BatchLauncher(batch_settings.model_copy(update={"batch_subnets": ""})).check(bot)
    with pytest.raises(ConfigError, match="SPOTBOT_AWS_ENDPOINT_URLS.*'batch:nowhere'"):
        BatchLauncher(batch_settings.model_copy(update={"aws_endpoint_urls": "batch:nowhere"}))
    real_aws = batch_settings.model_copy(update={"aws_endpoint_urls": ""})
    with pytest.raises(ConfigError, match="SPOTBOT_ES_URL.*cannot reach"):
        BatchLauncher(real_aws).check(bot)

    upload(storage, bucket, {"in/a.txt": "a"})
    result = spotbot(batch_settings, "submit", "--bot", "reverser", "--input", f"s3://{bucket}/in/", "--output",
                     f"s3://{bucket}/out/", env=cli_env(batch_settings, SPOTBOT_BATCH_SECURITY_GROUPS=""))
    # an empty variable means "unset": the CLI names the missing setting and stops there
    assert result.returncode == 2 and "SPOTBOT_BATCH_SECURITY_GROUPS" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert store.jobs.list() == [] and aws.batch.describe_compute_environments()["computeEnvironments"] == []
