"""One Settings object, built at the entry point from SPOTBOT_* variables and the local stack's state."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from .errors import ConfigError

LOCAL_STATE_FILE = "local.json"


class Settings(BaseModel):
    """Everything spotbot can be told; each field is one SPOTBOT_<NAME> environment variable."""

    home: Path = Field(Path(".spotbot"), description="where the embedded stack keeps data, logs and state")
    es_url: str = Field("", description="Elasticsearch URL (default: the embedded stack's); several comma-separated URLs of one cluster's nodes let the client fail over between them")
    es_engine: str = Field("auto", description="auto (from GET /), elasticsearch or opensearch")
    es_username: str = Field("", description="Elasticsearch basic-auth user (or user:password@ in the URL)")
    es_password: SecretStr | None = Field(None, description="Elasticsearch basic-auth password")
    es_api_key: SecretStr | None = Field(None, description="Elasticsearch API key (encoded id:key)")
    es_auth: str = Field("", description="sigv4: sign requests with the AWS credentials (Amazon OpenSearch Service)")
    es_ca_certs: str = Field("", description="CA bundle file for an https:// Elasticsearch")
    es_verify_certs: bool = Field(True, description="false skips TLS certificate checks (warns)")
    es_replicas: int | None = Field(None, ge=0, le=10, description="replicas of each index spotbot creates (unset: the engine's default; 1 on a cluster keeps every document when a node is lost; existing indices keep theirs)")
    index_prefix: str = Field("spotbot-", description="prefix of the Elasticsearch index names")
    file_indices: int = Field(0, ge=0, le=256, description="indices the file documents are spread over when a prefix is first used (0: 16 on the embedded server, whose updates cost in proportion to an index's size; 1 on a real node)")
    s3_endpoint_url: str = Field("", description="S3 endpoint URL (default: the embedded stack's, or AWS)")
    s3_access_key: SecretStr | None = Field(None, description="S3 access key (default: the AWS credential chain)")
    s3_secret_key: SecretStr | None = Field(None, description="S3 secret key (default: the AWS credential chain)")
    region: str = Field("us-east-1", description="AWS region of S3 and of the endpoints")
    s3_data_client: str = Field("obstore", pattern="^(obstore|boto3)$", description="client of object reads and writes (a worker's inputs and outputs): obstore (a tenth of boto3's CPU per small object) or boto3; everything else is boto3")
    launcher: str = Field("process", description="how bot workers run: process, docker or batch (AWS Batch)")
    endpoint_backend: str = Field("process", description="how model endpoints run: process, docker or sagemaker")
    workers: int = Field(2, ge=1, le=1024, description="bot workers per job when --bots is not given")
    chunk_size: int = Field(100, ge=1, le=5000, description="files per chunk, the unit of work a worker claims")
    max_attempts: int = Field(3, ge=1, le=100, description="attempts per file before it ends ERROR")
    lease_seconds: float = Field(60.0, gt=0, description="how long a claimed chunk stays a worker's without a heartbeat")
    poll_seconds: float = Field(1.0, gt=0, description="how often idle workers and --wait look for news")
    concurrency: int = Field(16, ge=1, le=256, description="files each worker works at once (--concurrency; stored on the job)")
    max_inflight_bytes: int = Field(64 * 1024 * 1024, ge=1, description="bytes of input files a worker holds in memory at once; past it, it starts no new file until some finish")
    task_batch_size: int = Field(16, ge=1, le=1024, description="files per call of a task.py's main_batch(file_names)")
    cost_per_worker_hour: str = Field("", description="price of a worker-hour for `status`'s cost figures: 0.05, or per back end like batch=0.0125,docker=0 (empty: no money shown)")
    stop_grace_seconds: float = Field(30.0, ge=0, description="on SIGTERM (docker stop, a Spot interruption) a worker lets its files in flight finish this long, then gives the rest back")
    spot_notice: str = Field("auto", description="watch the EC2 instance metadata service for a Spot interruption notice and stop as on SIGTERM: auto (on AWS Batch workers only), on or off")
    spot_notice_seconds: float = Field(5.0, gt=0, le=60, description="how often a worker asks the instance metadata service for a Spot interruption notice")
    imds_url: str = Field("http://169.254.169.254", description="the EC2 instance metadata service (IMDSv2) a worker asks for Spot interruption notices")
    record_results: bool = Field(True, description="write each completed file as its bot's latest result for that object, which `submit --incremental` reuses (false: later incremental jobs find nothing to reuse)")
    flush_files: int = Field(100, ge=1, description="a worker writes results after this many files ...")
    flush_seconds: float = Field(2.0, gt=0, description="... or after this many seconds, whichever is first (also how fresh `status` is)")
    endpoint_timeout: float = Field(120.0, gt=0, description="seconds an endpoint call may take")
    retry_seconds: float = Field(120.0, ge=0, description="how long transient failures (a server restarting, 429, 5xx, timeouts) are retried before they count")
    endpoint_start_timeout: float = Field(300.0, gt=0, description="seconds an endpoint may take to answer /ping")
    # dynamic batching in the endpoint server (framework/endpoints/serving.py), for modules with predict_batch_fn
    max_batch_size: int = Field(32, ge=1, le=4096, description="an endpoint whose module defines predict_batch_fn gets up to this many concurrent requests' inputs in one call (1: no batching)")
    max_batch_delay_ms: float = Field(5.0, ge=0, le=10_000, description="how long such an endpoint waits, from a batch's first input, for the batch to fill")
    # containers: the docker launcher and endpoint backend (framework/launchers/docker.py, framework/endpoints/docker.py)
    docker_cpus: float = Field(1.0, ge=0, description="CPUs of each worker container (0: no limit)")
    docker_memory: str = Field("1g", description="memory of each worker container, like 512m or 2g (0: no limit); a worker past it is OOM-killed")
    docker_endpoint_cpus: float = Field(0.0, ge=0, description="CPUs of each endpoint container (0: no limit)")
    docker_endpoint_memory: str = Field("4g", description="memory of each endpoint container, like 512m or 2g (0: no limit)")
    docker_mounts: str = Field("", description="host folders mounted into worker containers: /host/dir:/container/dir[:rw], comma-separated; read-only unless :rw")
    docker_pids_limit: int = Field(512, ge=16, le=65536, description="processes and threads each worker or endpoint container may have (a fork bomb stops there)")
    model_max_bytes: int = Field(10 * 2**30, ge=1, description="largest a model_s3_path tar.gz may unpack to, in bytes (all its files together); a larger one is refused before it fills the disk")
    model_max_files: int = Field(10_000, ge=1, description="most entries (files, folders) a model_s3_path tar.gz may hold")
    docker_keep: bool = Field(False, description="keep finished worker containers, and endpoint containers that failed to start, instead of removing them (for debugging)")

    @field_validator("es_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        # "a, b" and "a,b," mean the same nodes; one URL stays as given
        return ",".join(url.strip() for url in value.split(",") if url.strip())

    @field_validator("spot_notice")
    @classmethod
    def _spot_notice(cls, value: str) -> str:
        if value.strip().lower() not in ("auto", "on", "off"):
            raise ValueError(f"{value!r} is not auto, on or off")
        return value.strip().lower()

    @field_validator("imds_url")
    @classmethod
    def _imds_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// URL like http://169.254.169.254")
        return value.rstrip("/")

    @field_validator("docker_memory", "docker_endpoint_memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?[bkmgBKMG]?", value.strip()):
            raise ValueError(f"{value!r} is not an amount of memory like 512m or 2g")
        return value.strip().lower()

    @field_validator("docker_mounts")
    @classmethod
    def _mounts(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            host, _, rest = item.partition(":")
            target, _, mode = rest.partition(":")
            if not (host.startswith("/") and target.startswith("/")) or mode not in ("", "ro", "rw"):
                raise ValueError(f"{item!r} is not /host/dir:/container/dir, optionally followed by :ro or :rw")
        return value

    # --- AWS (issue 4): SageMaker endpoints, workers on AWS Batch (Spot); deploy/aws/ creates what they name ---
    sagemaker_role_arn: str = Field("", description="IAM role SageMaker runs endpoint containers with (ExecutionRoleArn)")
    sagemaker_instance_count: int = Field(1, ge=1, le=100, description="instances behind each SageMaker endpoint")
    sagemaker_variant: str = Field("AllTraffic", description="production variant name of the SageMaker endpoints spotbot creates")
    sagemaker_start_timeout: float = Field(1800.0, gt=0, description="seconds a SageMaker endpoint may take to reach InService")
    batch_job_queue: str = Field("", description="AWS Batch job queue for workers (empty: spotbot creates a Spot compute environment and queue)")
    batch_name: str = Field("spotbot", description="name prefix of the Batch compute environment, queue and job definitions spotbot creates")
    batch_min_vcpus: int = Field(0, ge=0, description="vCPUs the Spot compute environment keeps when idle")
    batch_max_vcpus: int = Field(64, ge=1, description="vCPUs the Spot compute environment may grow to")
    batch_instance_types: str = Field("optimal", description="comma-separated EC2 instance types (or families) of the compute environment")
    batch_subnets: str = Field("", description="comma-separated subnet ids of the compute environment (need a route to the internet or VPC endpoints)")
    batch_security_groups: str = Field("", description="comma-separated security group ids of the compute environment")
    batch_instance_role: str = Field("", description="instance profile (name or ARN) of the compute environment's EC2 instances")
    batch_service_role: str = Field("", description="Batch service role ARN (empty: the AWSServiceRoleForBatch service-linked role)")
    batch_job_role_arn: str = Field("", description="IAM role worker containers run as (their S3, OpenSearch and SageMaker access)")
    batch_vcpus: int = Field(1, ge=1, le=256, description="vCPUs per Batch worker")
    batch_memory: int = Field(2048, ge=128, description="memory (MiB) per Batch worker")
    aws_endpoint_urls: str = Field("", description="service=url pairs, comma-separated, sending sagemaker, sagemaker-runtime, batch, ecr or logs calls elsewhere (tests)")

    # watch mode (issue 5, seed 001): `spotbot watch`
    watch_interval: float = Field(5.0, ge=0.1, le=300, description="seconds between two looks for new objects in `spotbot watch` (--interval)")
    watch_sweep_seconds: float = Field(300.0, ge=0, description="`spotbot watch` re-lists its whole prefix this often, for new keys that sort below its mark (--sweep; 0: never)")

    # the HTTP API (spotbot serve) and its image-labelling routes
    api_host: str = Field("127.0.0.1", description="address spotbot serve binds")
    api_port: int = Field(8080, ge=1, le=65535, description="port spotbot serve listens on")
    api_token: SecretStr | None = Field(None, description="bearer token every API route but /health requires (at least 16 characters)")
    api_allow_no_auth: bool = Field(False, description="true lets spotbot serve run without a token, on a loopback address only")
    api_image_bot: str = Field("image_labeller", description="bot that labels the images sent to the API")
    api_image_job: str = Field("image-labeller-api", description="id of the long-running job that labels the API's images")
    api_images_uri: str = Field("", description="where the API keeps images (<uri>images/) and labels (<uri>labels/) (default: s3://spotbot-images/ on the embedded or another self-hosted S3; none on AWS S3, whose bucket names are global: name a bucket of yours)")
    api_fetch_max_bytes: int = Field(20_000_000, ge=1, description="largest image the API downloads or accepts, in bytes")
    api_fetch_timeout: float = Field(20.0, gt=0, description="seconds an image download may take in all")
    api_max_pixels: int = Field(40_000_000, ge=1, description="largest image the API takes, in pixels (width x height), read from its header before anything decodes it")
    api_fetch_allow_networks: str = Field("", description="comma-separated networks (CIDR) the API may fetch from although private, loopback or link-local")
    # what the API reads and runs (issue 14): checked before a body is read, and at registration
    api_max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 2**20, description="largest request body the API reads but an image upload (those: SPOTBOT_API_FETCH_MAX_BYTES), in bytes; larger ones get 413 unread")
    api_allowed_hosts: str = Field("", description="host names the API answers to besides loopback names and the address it binds (its Host header), comma-separated; others get 421")
    api_bots_dir: str = Field("", description="folder under which python: references registered through the API resolve (relative .py paths only); empty: the API takes container images only")
    # what the API shows people and monitors: /metrics and the dashboard (issue 15)
    metrics_public: bool = Field(False, description="true serves /metrics without the token (for a Prometheus that cannot send one)")
    metrics_cache_seconds: float = Field(5.0, ge=0, le=300, description="how long /metrics and the dashboard's summaries reuse what they read from the store")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read SPOTBOT_* (then the local stack's state file for what is still unset)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = environ.get(env_name(name))
            if raw not in (None, ""):
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0])
            raise ConfigError(first["msg"].removeprefix("Value error, "), field=env_name(field)) from None
        return settings.with_local_stack()

    def with_local_stack(self) -> "Settings":
        """Fill what is unset from the embedded stack's state, when one is up under home."""
        state = self.local_state()
        if not state:
            return self
        update: dict[str, Any] = {}
        if not self.es_url:
            update["es_url"] = state.get("es_url", "")
        if not self.s3_endpoint_url:
            update["s3_endpoint_url"] = state.get("s3_endpoint_url", "")
            if self.s3_access_key is None and state.get("access_key"):
                update["s3_access_key"] = SecretStr(state["access_key"])
                update["s3_secret_key"] = SecretStr(state["secret_key"])
        return self.model_copy(update=update)

    def local_state(self) -> dict[str, Any]:
        path = self.home / LOCAL_STATE_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the local stack's state: {exc}", file=str(path)) from None

    def require_es(self) -> str:
        """The first Elasticsearch URL: the node the seed's es_host / es_port / es_protocol name to a worker."""
        return self.es_urls()[0]

    def es_urls(self) -> list[str]:
        """Every Elasticsearch URL of SPOTBOT_ES_URL (one, or several nodes of one cluster)."""
        if not self.es_url:
            raise ConfigError(
                "no Elasticsearch to talk to: run `spotbot local up`, or set SPOTBOT_ES_URL",
                field="SPOTBOT_ES_URL",
            )
        return self.es_url.split(",")

    def s3_is_aws(self) -> bool:
        """Whether S3 is Amazon's (no endpoint URL, or an amazonaws.com one), where bucket names are global."""
        host = re.sub(r"^[a-z]+://", "", self.s3_endpoint_url).split("/")[0].split(":")[0].lower()
        return not host or host.endswith((".amazonaws.com", ".amazonaws.com.cn"))

    def images_uri(self) -> str:
        """SPOTBOT_API_IMAGES_URI, or its default where one is safe: never on AWS, where anyone may own a bucket name."""
        if self.api_images_uri:
            return self.api_images_uri
        if self.s3_is_aws():
            raise ConfigError("no default on AWS S3: bucket names are global, and s3://spotbot-images/ may be someone "
                              "else's; name a bucket of yours (the stack's OutputBucket, say: s3://BUCKET/api/)",
                              field="SPOTBOT_API_IMAGES_URI")
        return "s3://spotbot-images/"

    def aws_account(self) -> str:
        """The AWS account spotbot runs in, where a configured role ARN names it; '' when none does."""
        for arn in (self.sagemaker_role_arn, self.batch_job_role_arn):
            match = re.match(r"^arn:aws[a-z-]*:iam::(\d{12}):role/", arn)
            if match:
                return match.group(1)
        return ""

    def environment(self) -> dict[str, str]:
        """Every setting as SPOTBOT_* variables, secrets included: for running the spotbot command itself.

        A worker gets worker_environment(), never this.
        """
        return self._variables(type(self).model_fields)

    def worker_environment(self) -> dict[str, str]:
        """The SPOTBOT_* variables a bot worker uses and nothing more: its store and S3, how it works its files, how
        it starts an endpoint again. With SigV4 (Amazon OpenSearch Service) no Elasticsearch secret goes: the role
        signs. The API's token and settings, and the launchers' own, never go."""
        names = [name for name in WORKER_SETTINGS if not (self.es_auth == "sigv4" and name in ES_SECRETS)]
        return self._variables(names)

    def _variables(self, names) -> dict[str, str]:
        env = {}
        for name in names:
            value = getattr(self, name)
            if value is None or value == "":
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[env_name(name)] = str(value.resolve() if isinstance(value, Path) else value)
        return env

    def redacted(self) -> dict[str, Any]:
        """These settings for printing: secrets shown as '***'."""
        out = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***"
            elif name == "es_url":
                value = hide_password(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


def hide_password(url: str) -> str:
    """A URL (or comma-separated URLs) for display or storage: a password in it becomes ***.

    Whatever its form: with a scheme (`https://user:pass@host`) or without (`user:pass@host:443`, the
    seed's es_url), and with characters a URL parser stops at (`user:pa/ss@host`): everything before
    the last '@' is the user part, so no piece of a password is left behind.
    """
    if "," in url:
        return ",".join(hide_password(one) for one in url.split(","))
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:***@{host}" if colon else f"{user}@{host}"
    return f"{scheme}://{shown}" if separator else shown


# What a worker reads (framework/worker.py, spot.py, store/, storage.py, aws.py, endpoints/): its store, its S3,
# how it works its files, and what it needs to start again an endpoint that stopped answering.
WORKER_SETTINGS = (
    "home", "es_url", "es_engine", "es_username", "es_password", "es_api_key", "es_auth", "es_ca_certs",
    "es_verify_certs", "es_replicas", "index_prefix", "file_indices", "s3_endpoint_url", "s3_access_key",
    "s3_secret_key", "region", "s3_data_client", "launcher", "endpoint_backend", "max_attempts", "lease_seconds",
    "poll_seconds", "concurrency", "max_inflight_bytes", "task_batch_size", "stop_grace_seconds", "spot_notice",
    "spot_notice_seconds", "imds_url", "record_results", "flush_files", "flush_seconds", "endpoint_timeout",
    "retry_seconds", "endpoint_start_timeout", "max_batch_size", "max_batch_delay_ms", "docker_endpoint_cpus",
    "docker_endpoint_memory", "docker_keep", "sagemaker_role_arn", "sagemaker_instance_count", "sagemaker_variant",
    "sagemaker_start_timeout", "aws_endpoint_urls", "docker_pids_limit",
    "model_max_bytes", "model_max_files",  # a worker restarting an endpoint unpacks its model
)
ES_SECRETS = ("es_username", "es_password", "es_api_key")


def env_name(field: str) -> str:
    return "SPOTBOT_" + field.upper()


def describe() -> str:
    """One line per setting, for --help and the README."""
    lines = []
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "" if default in (None, "") else f" (default: {default})"
        lines.append(f"{env_name(name)}: {field.description}{shown}")
    return "\n".join(lines)
