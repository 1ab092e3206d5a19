#!/usr/bin/env bash
# Build the images of the bots that ship (what `make images` runs), with no image registry.
#
#   1. the base image: spotbot-base:local from a Debian root filesystem (build-base-image.sh,
#      cached), unless BASE_IMAGE names another base (e.g. python:3.11-slim where there is a registry);
#   2. for every bots/<bot>/ with a Dockerfile: spotbot/<bot>-worker:local, and with an
#      endpoint.Dockerfile: spotbot/<bot>-endpoint:local;
#   3. the template's worker and endpoint images spotbot/byob-worker:local and spotbot/byob-endpoint:local
#      (byob/bot_docker/build_and_push.sh --local).
#
# Every image builds from the repository root as its context, with --network host (the engine
# may have no bridge network) and the classic builder's layer cache: a second run only rebuilds
# what changed. Prints how long each step took.
#
# Usage: deploy/docker/build-images.sh [BOT ...]     (default: every bot in bots/)
# Environment: BASE_IMAGE (default spotbot-base:local), IMAGE_TAG (default local)
set -euo pipefail

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BASE_IMAGE="${BASE_IMAGE:-spotbot-base:local}"
TAG="${IMAGE_TAG:-local}"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"  # the classic builder: Debian's docker.io 20.10 needs no buildx for it

docker info >/dev/null 2>&1 || "$HERE/start-dockerd.sh"

started=$SECONDS
if [[ "$BASE_IMAGE" == spotbot-base:local ]]; then
    t=$SECONDS
    "$HERE/build-base-image.sh"
    log "base image $BASE_IMAGE: $((SECONDS - t))s"
fi

build() {  # build DOCKERFILE IMAGE
    local t=$SECONDS out old
    out="$(mktemp)"
    old="$(docker image inspect --format '{{.Id}}' "$2" 2>/dev/null || true)"
    if ! docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$1" -t "$2" "$ROOT" >"$out" 2>&1; then
        tail -n 40 "$out" >&2; rm -f "$out"
        die "docker build of $2 from ${1#"$ROOT"/} failed (last lines above)"
    fi
    rm -f "$out"
    drop_superseded "$old"
    log "$2: $((SECONDS - t))s"
}

drop_superseded() {  # drop_superseded IMAGE_ID: remove the image a tag pointed to before, once untagged and unused
    [[ -n "$1" && "$(docker image inspect --format '{{len .RepoTags}}' "$1" 2>/dev/null || echo gone)" == 0 ]] || return 0
    docker rmi "$1" >/dev/null 2>&1 || true
}

if [[ $# -gt 0 ]]; then bots=("$@"); else bots=(); for dir in "$ROOT"/bots/*/; do bots+=("$(basename "$dir")"); done; fi
for bot in "${bots[@]}"; do
    dir="$ROOT/bots/$bot"
    [[ -d "$dir" ]] || die "no bot folder bots/$bot"
    [[ -f "$dir/Dockerfile" ]] && build "$dir/Dockerfile" "spotbot/$bot-worker:$TAG"
    [[ -f "$dir/endpoint.Dockerfile" ]] && build "$dir/endpoint.Dockerfile" "spotbot/$bot-endpoint:$TAG"
    [[ -f "$dir/Dockerfile" || -f "$dir/endpoint.Dockerfile" ]] || log "bots/$bot has no Dockerfile: skipped"
done
if [[ $# -eq 0 ]]; then
    t=$SECONDS out="$(mktemp)" old="$(docker image inspect --format '{{.Id}}' "spotbot/byob-worker:$TAG" 2>/dev/null || true)"
    BASE_IMAGE="$BASE_IMAGE" "$ROOT/byob/bot_docker/build_and_push.sh" spotbot/byob-worker --tag "$TAG" --local >/dev/null 2>"$out" \
        || { tail -n 40 "$out" >&2; rm -f "$out"; die "the byob template's image failed to build (last lines above)"; }
    rm -f "$out"
    drop_superseded "$old"
    log "spotbot/byob-worker:$TAG: $((SECONDS - t))s"
    t=$SECONDS out="$(mktemp)" old="$(docker image inspect --format '{{.Id}}' "spotbot/byob-endpoint:$TAG" 2>/dev/null || true)"
    BASE_IMAGE="$BASE_IMAGE" "$ROOT/byob/bot_docker/build_and_push.sh" spotbot/byob-endpoint --tag "$TAG" --local \
        --dockerfile "$ROOT/byob/bot_docker/endpoint.Dockerfile" >/dev/null 2>"$out" \
        || { tail -n 40 "$out" >&2; rm -f "$out"; die "the byob template's endpoint image failed to build (last lines above)"; }
    rm -f "$out"
    drop_superseded "$old"
    log "spotbot/byob-endpoint:$TAG: $((SECONDS - t))s"
fi
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^spotbot" >&2 || true
log "all images: $((SECONDS - started))s"
