#!/usr/bin/env bash
# Build your bot's worker image from byob/bot_docker/Dockerfile (or its endpoint image from
# endpoint.Dockerfile) and push it to Amazon ECR.
#
# Usage: byob/bot_docker/build_and_push.sh NAME [--tag TAG] [--region REGION] [--local] [--dockerfile FILE]
#
#   NAME            the image (and ECR repository) name, e.g. foo-bot
#   --tag TAG       the image tag (default: latest)
#   --region REGION the ECR region (default: $AWS_REGION, $AWS_DEFAULT_REGION, then `aws configure get region`)
#   --local         only build NAME:TAG in the local Docker engine; no AWS call at all
#   --dockerfile F  build from F instead (default: byob/bot_docker/Dockerfile; the endpoint image:
#                   byob/bot_docker/endpoint.Dockerfile); the build context is the repository root
#
# Without --local it logs in to <account>.dkr.ecr.<region>.amazonaws.com (the account from
# `aws sts get-caller-identity`) with `aws ecr get-login-password | docker login`, creates the
# repository NAME if missing, tags and pushes the image. Progress goes to stderr; the last line on
# stdout is the image: its ECR URI (put it in bot_config.json's bot_image), or NAME:TAG with --local.
#
# Examples:
#   byob/bot_docker/build_and_push.sh foo-bot --local
#   byob/bot_docker/build_and_push.sh foo-bot --tag v1 --region eu-west-1
#   byob/bot_docker/build_and_push.sh foo-bot-endpoint --tag v1 --dockerfile byob/bot_docker/endpoint.Dockerfile
#
# Environment: BASE_IMAGE overrides the Dockerfile's base (`make images` builds on spotbot-base:local);
# DOCKER_BUILDKIT=1 builds with BuildKit instead of the classic builder.
set -euo pipefail

log() { printf '[build_and_push] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"  # the build context: the Dockerfile copies the framework from the repository

NAME="" TAG=latest REGION="" LOCAL=0 DOCKERFILE="$HERE/Dockerfile"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tag) [[ $# -ge 2 ]] || die "--tag needs a value"; TAG="$2"; shift 2 ;;
        --region) [[ $# -ge 2 ]] || die "--region needs a value"; REGION="$2"; shift 2 ;;
        --local) LOCAL=1; shift ;;
        --dockerfile) [[ $# -ge 2 ]] || die "--dockerfile needs a value"; DOCKERFILE="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option '$1' (try --help)" ;;
        *) [[ -z "$NAME" ]] || die "one NAME only (got '$NAME' and '$1')"; NAME="$1"; shift ;;
    esac
done
[[ -n "$NAME" ]] || { usage >&2; die "NAME is required"; }
# what Docker and ECR accept as a repository name, and as a tag
[[ "$NAME" =~ ^[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$ ]] \
    || die "NAME '$NAME' is not a valid image name: lowercase letters, digits and . _ - / (e.g. foo-bot)"
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--tag '$TAG' is not a valid tag: letters, digits, _ . - (at most 128)"
[[ -f "$DOCKERFILE" ]] || die "--dockerfile '$DOCKERFILE' is not a file"
command -v docker >/dev/null 2>&1 || die "docker is not installed (deploy/docker/start-dockerd.sh installs and starts an engine)"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (is dockerd running? deploy/docker/start-dockerd.sh starts one)"

if [[ $LOCAL == 0 ]]; then  # everything the push needs is checked before the build, which can be long
    command -v aws >/dev/null 2>&1 || die "the aws CLI is not installed (pip install awscli), needed to push; --local only builds"
    REGION="${REGION:-${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}}"
    [[ -n "$REGION" ]] || die "no AWS region: pass --region REGION or set AWS_REGION"
    ACCOUNT="$(aws sts get-caller-identity --query Account --output text)" \
        || die "aws sts get-caller-identity failed: no usable AWS credentials (aws configure, or AWS_PROFILE)"
    DOMAIN=amazonaws.com
    [[ "$REGION" == cn-* ]] && DOMAIN=amazonaws.com.cn  # the China regions' endpoints
    REGISTRY="$ACCOUNT.dkr.ecr.$REGION.$DOMAIN"
    URI="$REGISTRY/$NAME:$TAG"
fi

IMAGE="$NAME:$TAG"
build_args=()
[[ -n "${BASE_IMAGE:-}" ]] && build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
log "building $IMAGE from $DOCKERFILE${BASE_IMAGE:+ on $BASE_IMAGE}"
# --network host: the engine may have no bridge network (deploy/docker/start-dockerd.sh's default)
DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build --network host "${build_args[@]}" \
    -f "$DOCKERFILE" -t "$IMAGE" "$ROOT" >&2 || die "docker build of $IMAGE failed (output above)"

if [[ $LOCAL == 1 ]]; then
    log "built $IMAGE (--local: nothing pushed)"
    echo "$IMAGE"
    exit 0
fi

if ! aws ecr describe-repositories --region "$REGION" --repository-names "$NAME" >/dev/null 2>&1; then
    log "creating ECR repository $NAME in $REGION"
    aws ecr create-repository --region "$REGION" --repository-name "$NAME" >/dev/null \
        || die "could not create the ECR repository $NAME in $REGION"
fi
log "logging in to $REGISTRY"
# the password goes from one command to the other on a pipe, never onto a command line or the screen
aws ecr get-login-password --region "$REGION" | docker login --username AWS --password-stdin "$REGISTRY" >&2 \
    || die "docker login to $REGISTRY failed"
docker tag "$IMAGE" "$URI"
log "pushing $URI"
docker push "$URI" >&2 || die "docker push of $URI failed"
echo "$URI"
