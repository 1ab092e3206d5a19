"""Launcher `batch`: bot workers as one AWS Batch array job on Spot capacity.

A job's N workers are one array job of size N: child i gets AWS_BATCH_JOB_ARRAY_INDEX=i,
which the worker takes for its batch_id, and AWS_BATCH_JOB_ID ("<array id>:i"), which it
takes for its worker id, so the worker records on the job are Batch's own job ids. A Spot
reclaim ("Host EC2 ... terminated") is retried by Batch itself; any other end is final and
left to the supervisor, which relaunches within its budget.

No secret reaches Batch: workers reach Amazon OpenSearch Service with SigV4 and S3 and
SageMaker with the job role, so the environment carries no password or key (anyone allowed
to describe a job or job definition can read its environment).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import shlex
import time
from typing import Iterator
from urllib.parse import urlsplit

import botocore.exceptions
from pydantic import SecretStr

from .. import aws
from ..errors import ConfigError, LaunchError, UnsupportedReference
from ..models import BotConfig, Worker, WorkerState, now_ms
from ..settings import Settings, env_name
from .base import WorkerSpec

log = logging.getLogger("spotbot.launchers.batch")

LOG_GROUP = "/aws/batch/job"
SPOT_ATTEMPTS = 5  # a job survives this many attempts, all but the last lost to Spot reclaims
RETRY_STRATEGY = {
    "attempts": SPOT_ATTEMPTS,
    "evaluateOnExit": [
        {"onStatusReason": "Host EC2*", "action": "RETRY"},  # the Spot instance was taken back
        {"onReason": "*", "action": "EXIT"},  # the task itself failed: the supervisor decides
    ],
}
# these differ per job or per worker: passed at submission, so one job definition serves every job of a bot
PER_JOB = ("job_id", "output_s3_bucket", "output_s3_prefix")
PER_WORKER = ("batch_id", "SPOTBOT_WORKER_ID")
LOCAL_ONLY = ("SPOTBOT_HOME",)  # a path on the submitting machine
LAUNCHER_ONLY = "SPOTBOT_BATCH_"  # how to launch workers: nothing a worker uses
STATES = {
    "SUBMITTED": WorkerState.STARTING, "PENDING": WorkerState.STARTING, "RUNNABLE": WorkerState.STARTING,
    "STARTING": WorkerState.STARTING, "RUNNING": WorkerState.RUNNING,
    "SUCCEEDED": WorkerState.EXITED, "FAILED": WorkerState.FAILED,
}
STUCK_SECONDS = 600.0
UNKNOWN_GRACE_SECONDS = 120.0
WAIT_SECONDS = 300.0
JOB_NAME = re.compile(r"[^A-Za-z0-9_-]")


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def as_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def same_retries(strategy: dict | None) -> bool:
    """Whether a definition's retry strategy is ours (Batch answers actions in lower case)."""
    def norm(rules):
        return [{**rule, "action": rule.get("action", "").upper()} for rule in rules]

    strategy = strategy or {}
    return (strategy.get("attempts") == RETRY_STRATEGY["attempts"]
            and norm(strategy.get("evaluateOnExit", [])) == norm(RETRY_STRATEGY["evaluateOnExit"]))


def pairs(env: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": env[name]} for name in sorted(env)]


class BatchLauncher:
    name = "batch"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.batch = aws.client(settings, "batch")
        self._logs = None
        self._queue = ""
        self._described: dict[str, dict] = {}
        self._described_at = 0.0
        self._watched: set[str] = set()

    # --- the protocol -------------------------------------------------------------------------

    def check(self, bot: BotConfig) -> None:
        if bot.bot_image.startswith("python:"):
            raise UnsupportedReference(
                f"launcher 'batch' runs container images, not {bot.bot_image!r}; build and push the worker image with "
                "byob/bot_docker/build_and_push.sh NAME and put its URI in bot_image (or run workers locally with "
                "SPOTBOT_LAUNCHER=process)", field="bot_image",
            )
        settings = self.settings
        for name in ("es_password", "es_api_key", "es_url"):
            value = getattr(settings, name)
            if (name == "es_url" and urlsplit(value).password) or (name != "es_url" and value is not None):
                raise ConfigError("workers on AWS Batch get no passwords or keys (a job's environment is readable by "
                                  "anyone who may describe it): use Amazon OpenSearch Service with SPOTBOT_ES_AUTH=sigv4 "
                                  "and the job role (SPOTBOT_BATCH_JOB_ROLE_ARN)", field=env_name(name))
        if "batch" not in aws.endpoint_urls(settings):  # real AWS: its containers cannot reach this machine
            for name in ("es_url", "s3_endpoint_url"):
                if is_loopback(getattr(settings, name) or ""):
                    raise ConfigError(f"{getattr(settings, name)} is on this machine, which workers on AWS Batch cannot "
                                      "reach: point it at the stack's OpenSearch domain (or leave S3 unset)",
                                      field=env_name(name))
        if not settings.batch_job_queue:
            missing = [env_name(f) for f in ("batch_subnets", "batch_security_groups", "batch_instance_role")
                       if not getattr(settings, f)]
            if missing:
                raise ConfigError(f"creating a Spot compute environment needs {', '.join(missing)}; or set "
                                  "SPOTBOT_BATCH_JOB_QUEUE to an existing queue (the stack's JobQueue output)",
                                  field=missing[0])
        aws.check_ecr_image(settings, bot.bot_image, field="bot_image")

    def launch(self, spec: WorkerSpec) -> Worker:
        """One single (non-array) job in the place of one worker: its batch_id rides in the environment."""
        return self.launch_many([spec])[0]

    def launch_many(self, specs: list[WorkerSpec]) -> list[Worker]:
        """One array job of len(specs) children (one plain job for one spec); a Worker per child."""
        first = specs[0]
        common, per_job = self._environment(first)
        if len(specs) == 1:
            per_job["batch_id"] = str(first.batch_id)
        elif [spec.batch_id for spec in specs] != list(range(len(specs))):
            raise LaunchError("an array job's workers must have batch ids 0..N-1 (its array indexes)")
        request = {
            "jobName": JOB_NAME.sub("-", f"{self.settings.batch_name}-{first.job_id}")[:128],
            "jobQueue": self.queue(),
            "jobDefinition": self.definition(first.bot, common),
            "containerOverrides": {"environment": pairs(per_job)},
            "tags": {"spotbot:job": first.job_id, "spotbot:bot": first.bot.name},
            "propagateTags": True,
        }
        if len(specs) > 1:
            request["arrayProperties"] = {"size": len(specs)}
        with aws.calling("batch", f"submitting job {first.job_id}", LaunchError):
            job_id = self.batch.submit_job(**request)["jobId"]
        log.info("submitted Batch job %s (%d worker(s)) to %s", job_id, len(specs), request["jobQueue"])
        ids = [f"{job_id}:{i}" for i in range(len(specs))] if len(specs) > 1 else [job_id]
        return [Worker(id=worker_id, job_id=spec.job_id, batch_id=spec.batch_id, backend=self.name,
                       state=WorkerState.STARTING) for worker_id, spec in zip(ids, specs)]

    def poll(self, worker: Worker) -> tuple[WorkerState, int | None]:
        job = self._job(worker.id)
        if job is None:
            # DescribeJobs may not show a job submitted a moment ago: only a job long unknown is lost
            return (WorkerState.STARTING if self._young(worker) else WorkerState.LOST), None
        state = STATES.get(job["status"], WorkerState.STARTING)
        if state == WorkerState.EXITED:
            return state, 0
        if state == WorkerState.FAILED:
            return state, job.get("container", {}).get("exitCode")
        return state, None

    def status_reason(self, worker: Worker) -> str:
        """Batch's word on a worker that waits to start (stuck RUNNABLE) or that ended; '' when there is none."""
        job = self._job(worker.id)
        if job is None:
            return "" if self._young(worker) else f"Batch does not know job {worker.id} (any more)"
        status, reason = job["status"], job.get("statusReason", "")
        if status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING"):
            if reason:
                return f"{status}: {reason}"
            waited = time.time() - job.get("createdAt", time.time() * 1000) / 1000
            if status == "RUNNABLE" and waited > STUCK_SECONDS:
                return (f"RUNNABLE for over {STUCK_SECONDS / 60:.0f} minutes without a reason from Batch: check the "
                        "compute environment (max vCPUs, Spot capacity for its instance types, subnets)")
            return ""
        if status == "FAILED":
            container = job.get("container", {})
            parts = [reason, container.get("reason", "")]
            if container.get("exitCode") is not None:
                parts.append(f"exit code {container['exitCode']}")
            return "; ".join(part for part in parts if part)
        return ""

    def stop(self, worker: Worker) -> None:
        with aws.calling("batch", f"terminating job {worker.id}", LaunchError):
            try:
                self.batch.terminate_job(jobId=worker.id, reason="stopped by spotbot")
            except botocore.exceptions.ClientError as exc:
                if "does not exist" not in aws.message_of(exc):
                    raise

    def last_words(self, worker: Worker) -> str:
        stream = self._log_stream(self._job(worker.id, fresh=True) or {})
        if stream:
            try:
                events = self.logs_client.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream, limit=1,
                                                  startFromHead=False)["events"]
                if events:
                    return events[-1]["message"].split(" spotbot.worker: ", 1)[-1]
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
                pass  # no log (yet): Batch's own reason says what it can
        return self.status_reason(worker) or "(no output)"

    def logs(self, worker: Worker, *, follow: bool = False) -> Iterator[str]:
        """The worker's output from CloudWatch Logs (group /aws/batch/job), following it until the job ends."""
        job = self._job(worker.id, fresh=True)
        stream = self._log_stream(job or {})
        if not stream:
            status = job["status"] if job else "unknown to Batch"
            raise LaunchError(f"worker {worker.id} has no log yet (Batch status {status}); once it runs, its output "
                              f"is in CloudWatch Logs group {LOG_GROUP}", worker=worker.id)
        token = None
        while True:
            request = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
            if token:
                request["nextToken"] = token
            with aws.calling("logs", f"reading the log of worker {worker.id}", LaunchError):
                try:
                    page = self.logs_client.get_log_events(**request)
                except botocore.exceptions.ClientError as exc:
                    if aws.code_of(exc) != "ResourceNotFoundException":
                        raise
                    raise LaunchError(f"worker {worker.id} has no log in CloudWatch Logs group {LOG_GROUP} "
                                      f"(stream {stream}) yet", worker=worker.id) from None
            for event in page["events"]:
                yield event["message"]
            if page["nextForwardToken"] != token and page["events"]:
                token = page["nextForwardToken"]
                continue
            token = page["nextForwardToken"]
            if not follow or self.poll(worker)[0] not in (WorkerState.STARTING, WorkerState.RUNNING):
                return
            time.sleep(max(self.settings.poll_seconds, 2.0))

    # --- what the jobs run on -----------------------------------------------------------------

    def queue(self) -> str:
        """The configured job queue (checked), or spotbot's own on a Spot compute environment (created once)."""
        if self._queue:
            return self._queue
        settings = self.settings
        if settings.batch_job_queue:
            found = self._job_queue(settings.batch_job_queue)
            if found is None:
                raise ConfigError(f"there is no Batch job queue {settings.batch_job_queue!r} in {settings.region}",
                                  field="SPOTBOT_BATCH_JOB_QUEUE")
            if found["state"] != "ENABLED" or found["status"] not in ("VALID", "UPDATING"):
                raise ConfigError(f"Batch job queue {settings.batch_job_queue!r} is {found['state']} and "
                                  f"{found['status']}: {found.get('statusReason', 'no reason given')}",
                                  field="SPOTBOT_BATCH_JOB_QUEUE")
            self._queue = found["jobQueueArn"]
            return self._queue
        environment = self._compute_environment()
        name = f"{settings.batch_name}-spot"
        if self._job_queue(name) is None:
            with aws.calling("batch", f"creating job queue {name!r}", LaunchError):
                try:
                    self.batch.create_job_queue(
                        jobQueueName=name, state="ENABLED", priority=1, tags={"spotbot": "queue"},
                        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}])
                    log.info("created Batch job queue %s", name)
                except botocore.exceptions.ClientError as exc:
                    if "already exists" not in aws.message_of(exc):  # another submitter was first
                        raise
        self._queue = self._wait_valid("job queue", name, self._job_queue)["jobQueueArn"]
        return self._queue

    def _job_queue(self, name: str) -> dict | None:
        with aws.calling("batch", f"describing job queue {name!r}", LaunchError):
            found = self.batch.describe_job_queues(jobQueues=[name])["jobQueues"]
        return found[0] if found else None

    def _compute_environment(self) -> str:
        settings = self.settings
        name = f"{settings.batch_name}-spot"
        if self._environment_named(name) is None:
            resources = {
                "type": "SPOT", "allocationStrategy": "SPOT_CAPACITY_OPTIMIZED",
                "minvCpus": settings.batch_min_vcpus, "maxvCpus": settings.batch_max_vcpus,
                "instanceTypes": as_list(settings.batch_instance_types),
                "subnets": as_list(settings.batch_subnets), "securityGroupIds": as_list(settings.batch_security_groups),
                "instanceRole": settings.batch_instance_role, "tags": {"Name": name, "spotbot": "worker"},
            }
            request = {"computeEnvironmentName": name, "type": "MANAGED", "state": "ENABLED",
                       "computeResources": resources, "tags": {"spotbot": "compute-environment"}}
            if settings.batch_service_role:
                request["serviceRole"] = settings.batch_service_role
            with aws.calling("batch", f"creating compute environment {name!r}", LaunchError):
                try:
                    self.batch.create_compute_environment(**request)
                    log.info("created Batch Spot compute environment %s (%d-%d vCPUs)", name,
                             settings.batch_min_vcpus, settings.batch_max_vcpus)
                except botocore.exceptions.ClientError as exc:
                    if "already exists" not in aws.message_of(exc):
                        raise
        return self._wait_valid("compute environment", name, self._environment_named)["computeEnvironmentArn"]

    def _environment_named(self, name: str) -> dict | None:
        with aws.calling("batch", f"describing compute environment {name!r}", LaunchError):
            found = self.batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
        return found[0] if found else None

    def _wait_valid(self, kind: str, name: str, describe) -> dict:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            found = describe(name)
            if found is None:
                raise LaunchError(f"Batch {kind} {name!r} vanished while it was being created")
            if found["status"] == "VALID":
                return found
            if found["status"] == "INVALID":
                raise LaunchError(f"Batch {kind} {name!r} is INVALID: {found.get('statusReason', 'no reason given')}")
            if time.monotonic() > deadline:
                raise LaunchError(f"Batch {kind} {name!r} is still {found['status']} after {WAIT_SECONDS:.0f}s")
            time.sleep(min(5.0, self.settings.poll_seconds * 2))

    def definition(self, bot: BotConfig, environment: dict[str, str]) -> str:
        """The bot's job definition: its newest revision when that is what we would register, else a new one."""
        name = JOB_NAME.sub("-", f"{self.settings.batch_name}-{bot.name}")
        wanted = {
            "image": bot.bot_image,
            "resourceRequirements": [{"type": "VCPU", "value": str(self.settings.batch_vcpus)},
                                     {"type": "MEMORY", "value": str(self.settings.batch_memory)}],
            "environment": pairs(environment),
            "privileged": False,
        }
        if bot.bot_image_cmd:
            wanted["command"] = shlex.split(bot.bot_image_cmd)
        if self.settings.batch_job_role_arn:
            wanted["jobRoleArn"] = self.settings.batch_job_role_arn
        with aws.calling("batch", f"registering job definition {name!r}", LaunchError):
            revisions = []
            for page in self.batch.get_paginator("describe_job_definitions").paginate(jobDefinitionName=name,
                                                                                       status="ACTIVE"):
                revisions += page["jobDefinitions"]
            newest = max(revisions, key=lambda d: d["revision"], default=None)
            if newest is not None and self._same(newest, wanted):
                return newest["jobDefinitionArn"]
            answer = self.batch.register_job_definition(
                jobDefinitionName=name, type="container", containerProperties=wanted, retryStrategy=RETRY_STRATEGY,
                platformCapabilities=["EC2"], propagateTags=True, tags={"spotbot:bot": bot.name})
        log.info("registered Batch job definition %s revision %s", name, answer["revision"])
        return answer["jobDefinitionArn"]

    @staticmethod
    def _same(definition: dict, wanted: dict) -> bool:
        container = definition.get("containerProperties", {})
        for key, value in wanted.items():
            have = container.get(key)
            if key in ("environment", "resourceRequirements"):
                have = sorted(have or [], key=lambda item: (item.get("name") or item.get("type")))
                value = sorted(value, key=lambda item: (item.get("name") or item.get("type")))
            if have != value:
                return False
        command_same = (container.get("command") or None) == (wanted.get("command") or None)  # Batch answers []
        return command_same and same_retries(definition.get("retryStrategy"))

    # --- helpers of the protocol --------------------------------------------------------------

    def _environment(self, spec: WorkerSpec) -> tuple[dict[str, str], dict[str, str]]:
        """(the job definition's, the submission's) environment, with every secret left out."""
        # every secret setting is a SecretStr (keys, passwords); a password in SPOTBOT_ES_URL is refused by check()
        secrets = {env_name(name) for name in type(self.settings).model_fields
                   if isinstance(getattr(self.settings, name), SecretStr)}
        # an empty value means unset to the worker, and Batch drops it: sent, it would only defeat the comparison
        env = {name: value for name, value in spec.environment.items()
               if value and name not in secrets | set(LOCAL_ONLY) and not name.startswith(LAUNCHER_ONLY)}
        per_job = {name: env[name] for name in PER_JOB if name in env}
        common = {name: value for name, value in env.items() if name not in PER_JOB + PER_WORKER}
        return common, per_job

    def _job(self, job_id: str, *, fresh: bool = False) -> dict | None:
        """describe_jobs for this job, shared: one call per poll interval covers up to 100 watched jobs."""
        self._watched.add(job_id)
        now = time.monotonic()
        if fresh or job_id not in self._described or now - self._described_at >= self.settings.poll_seconds:
            watched = sorted(self._watched)
            described: dict[str, dict] = {}
            with aws.calling("batch", "describing jobs", LaunchError):
                for start in range(0, len(watched), 100):
                    for job in self.batch.describe_jobs(jobs=watched[start:start + 100])["jobs"]:
                        described[job["jobId"]] = job
            self._described, self._described_at = described, now
            # an ended job does not change again: stop asking about it after this answer
            self._watched -= {jid for jid, job in described.items() if job["status"] in ("SUCCEEDED", "FAILED")}
        return self._described.get(job_id)

    @staticmethod
    def _young(worker: Worker) -> bool:
        return now_ms() - worker.started_at < UNKNOWN_GRACE_SECONDS * 1000

    @staticmethod
    def _log_stream(job: dict) -> str:
        stream = job.get("container", {}).get("logStreamName", "")
        for attempt in job.get("attempts", []):
            stream = stream or attempt.get("container", {}).get("logStreamName", "")
        return stream or ""

    @property
    def logs_client(self):
        if self._logs is None:
            self._logs = aws.client(self.settings, "logs")
        return self._logs
