#!/usr/bin/env bash
# Build spotbot-rootfs:local and spotbot-base:local with no image registry at all.
#
#   spotbot-rootfs:local  Debian root filesystem made by debootstrap (minbase + python3,
#                         python3-venv, python3-pip, ca-certificates), security updates
#                         applied, loaded with `docker import`.
#   spotbot-base:local    deploy/docker/base.Dockerfile on top: user spotbot (uid 1000),
#                         venv at /opt/venv on PATH.
#
# Idempotent and cached, cheapest first:
#   - spotbot-rootfs:local is kept when its label spotbot.rootfs.key matches this config;
#   - otherwise the tarball $SPOTBOT_CACHE_DIR/rootfs-<suite>-<key>.tar is imported if present;
#   - otherwise debootstrap runs (downloaded .debs are kept in $SPOTBOT_CACHE_DIR/debs).
#   spotbot-base:local then comes from `docker build` with its layer cache.
#
# Usage: build-base-image.sh [--rebuild-rootfs] [--check]
#   --rebuild-rootfs   ignore the cached image and tarball (e.g. to pick up new security updates)
#   --check            afterwards run smoke tests (ssl, user, pip install in a throwaway build)
#
# Environment knobs:
#   SPOTBOT_CACHE_DIR        default /var/cache/spotbot
#   SPOTBOT_DEBIAN_SUITE     default bookworm
#   SPOTBOT_DEBIAN_MIRROR    default: the Debian mirror apt on this host uses (else deb.debian.org)
#   SPOTBOT_SECURITY_MIRROR  default: the host's debian-security mirror (else deb.debian.org)
#   SPOTBOT_ROOTFS_UPGRADE   1 (default) apply <suite>-updates and -security; 0 to skip
#   SPOTBOT_EXTRA_CA_DIR     CA certs (*.crt) to trust inside the image; default
#                            /usr/local/share/ca-certificates; set empty for none
#   SPOTBOT_ROOTFS_IMAGE / SPOTBOT_BASE_IMAGE   image names (defaults above)
set -euo pipefail

log() { printf '[build-base-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REBUILD_ROOTFS=0
CHECK=0
for arg in "$@"; do
    case "$arg" in
        --rebuild-rootfs) REBUILD_ROOTFS=1 ;;
        --check) CHECK=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

[[ "$(id -u)" -eq 0 ]] || die "must run as root (debootstrap and the docker socket need it)"

CACHE_DIR="${SPOTBOT_CACHE_DIR:-/var/cache/spotbot}"
SUITE="${SPOTBOT_DEBIAN_SUITE:-bookworm}"
VARIANT=minbase
INCLUDE=python3,python3-venv,python3-pip,ca-certificates
ROOTFS_IMAGE="${SPOTBOT_ROOTFS_IMAGE:-spotbot-rootfs:local}"
BASE_IMAGE="${SPOTBOT_BASE_IMAGE:-spotbot-base:local}"
UPGRADE="${SPOTBOT_ROOTFS_UPGRADE:-1}"
EXTRA_CA_DIR="${SPOTBOT_EXTRA_CA_DIR-/usr/local/share/ca-certificates}"
# Bump when the rootfs recipe below changes, so caches are not reused across recipes.
RECIPE_VERSION=1

# --- Debian mirrors: the ones apt on this host already uses -----------------------------
host_apt_uris() {
    {
        grep -hE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -E 's/^[[:space:]]*URIs:[[:space:]]*//' | tr ' ' '\n'
        grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | sed -E 's/\[[^]]*\]//' | awk '{print $2}'
    } | grep -E '^https?://' | sed -E 's#/+$##' || true
}
URIS="$(host_apt_uris)"
MIRROR="${SPOTBOT_DEBIAN_MIRROR:-$(grep -E '/debian$' <<<"$URIS" | head -n1 || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SPOTBOT_SECURITY_MIRROR:-$(grep -E '/debian-security$' <<<"$URIS" | head -n1 || true)}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

KEY="$(printf '%s\n' "$RECIPE_VERSION" "$SUITE" "$VARIANT" "$INCLUDE" "$MIRROR" "$SECURITY_MIRROR" "$UPGRADE" \
       | sha256sum | cut -c1-12)"
TARBALL="$CACHE_DIR/rootfs-$SUITE-$KEY.tar"

mkdir -p "$CACHE_DIR/debs"
# One build at a time per cache dir.
exec 9>"$CACHE_DIR/.lock"
flock -w 1800 9 || die "another build holds $CACHE_DIR/.lock"

# --- Docker engine -----------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    log "Docker engine not answering: running start-dockerd.sh"
    "$HERE/start-dockerd.sh"
fi
DOCKER=(docker)
command -v docker >/dev/null 2>&1 || DOCKER=(/usr/bin/docker)

image_label() {  # image_label IMAGE LABEL -> value or empty
    "${DOCKER[@]}" image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

WORK=""
cleanup() {
    local rc=$?
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        for m in proc dev/pts; do
            if mountpoint -q "$WORK/rootfs/$m" 2>/dev/null; then umount -l "$WORK/rootfs/$m" || true; fi
        done
        rm -rf --one-file-system "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT

make_rootfs_tarball() {
    command -v debootstrap >/dev/null 2>&1 || {
        log "installing debootstrap"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends debootstrap >/dev/null || die "could not install debootstrap"
    }
    WORK="$(mktemp -d "$CACHE_DIR/work.XXXXXX")"
    local root="$WORK/rootfs"
    local t=$SECONDS
    log "debootstrap $SUITE ($VARIANT + $INCLUDE) from $MIRROR"
    debootstrap --variant="$VARIANT" --include="$INCLUDE" --cache-dir="$CACHE_DIR/debs" \
        "$SUITE" "$root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    log "debootstrap took $((SECONDS - t))s"; t=$SECONDS

    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    if [[ "$UPGRADE" == 1 ]]; then
        log "applying $SUITE-updates and $SUITE-security"
        cp /etc/resolv.conf "$root/etc/resolv.conf"
        mount -t proc proc "$root/proc"
        if ! chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
                sh -c 'apt-get update -q && apt-get -y -q -o Dpkg::Options::=--force-confold upgrade' \
                >"$WORK/upgrade.log" 2>&1; then
            tail -n 30 "$WORK/upgrade.log" >&2; umount -l "$root/proc" || true
            die "apt-get upgrade inside the rootfs failed (log above)"
        fi
        umount "$root/proc"
        log "upgrade took $((SECONDS - t))s"; t=$SECONDS
    fi
    # Trim what an image does not need; docker provides hostname, hosts and resolv.conf.
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* "$root"/var/tmp/* \
           "$root"/var/log/apt/* "$root"/var/log/dpkg.log "$root"/var/log/bootstrap.log \
           "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
    : >"$root/etc/resolv.conf"
    echo localhost >"$root/etc/hostname"
    [[ -e "$root/etc/machine-id" ]] && : >"$root/etc/machine-id"

    log "writing $TARBALL"
    tar -C "$root" --numeric-owner -cf "$TARBALL.partial" .
    mv -f "$TARBALL.partial" "$TARBALL"
    log "tar took $((SECONDS - t))s"
    rm -rf --one-file-system "$WORK"; WORK=""
}

# --- 1. spotbot-rootfs:local --------------------------------------------------------------
t0=$SECONDS
old_rootfs_id="$("${DOCKER[@]}" image inspect --format '{{.Id}}' "$ROOTFS_IMAGE" 2>/dev/null || true)"
old_base_id="$("${DOCKER[@]}" image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)"
if [[ $REBUILD_ROOTFS == 0 && "$(image_label "$ROOTFS_IMAGE" spotbot.rootfs.key)" == "$KEY" ]]; then
    log "$ROOTFS_IMAGE is up to date (key $KEY): skipping debootstrap and import"
else
    if [[ $REBUILD_ROOTFS == 1 || ! -s "$TARBALL" ]]; then
        make_rootfs_tarball
    else
        log "using cached tarball $TARBALL"
    fi
    log "importing $TARBALL as $ROOTFS_IMAGE"
    "${DOCKER[@]}" import \
        --change "LABEL spotbot.rootfs.key=$KEY spotbot.rootfs.suite=$SUITE spotbot.rootfs.created=$(date -u -r "$TARBALL" +%FT%TZ)" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        "$TARBALL" "$ROOTFS_IMAGE" >/dev/null || die "docker import failed"
    # Old tarballs of other recipes are not needed any more.
    find "$CACHE_DIR" -maxdepth 1 -name "rootfs-*.tar" ! -name "$(basename "$TARBALL")" -delete
fi
log "rootfs step took $((SECONDS - t0))s"

# --- 2. spotbot-base:local ----------------------------------------------------------------
t1=$SECONDS
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"; cleanup' EXIT
CTX="$TMP/context"   # build logs live beside it, not inside it
mkdir -p "$CTX/certs"
cp "$HERE/base.Dockerfile" "$CTX/Dockerfile"
if [[ -n "$EXTRA_CA_DIR" && -d "$EXTRA_CA_DIR" ]]; then
    find "$EXTRA_CA_DIR" -type f -name '*.crt' -exec cp -t "$CTX/certs/" {} +
fi
log "docker build $BASE_IMAGE (extra CA certs: $(find "$CTX/certs" -name '*.crt' | wc -l))"
DOCKER_BUILDKIT=0 "${DOCKER[@]}" build --network host --build-arg "BASE_IMAGE=$ROOTFS_IMAGE" \
    -t "$BASE_IMAGE" "$CTX" >"$TMP/build.log" 2>&1 \
    || { tail -n 30 "$TMP/build.log" >&2; die "docker build of $BASE_IMAGE failed (log above)"; }
log "base step took $((SECONDS - t1))s"

# Drop the images these tags pointed to before, if now untagged and unused.
for old in "$old_base_id" "$old_rootfs_id"; do
    [[ -n "$old" ]] || continue
    tags="$("${DOCKER[@]}" image inspect --format '{{len .RepoTags}}' "$old" 2>/dev/null || echo gone)"
    if [[ "$tags" == 0 ]] && "${DOCKER[@]}" rmi "$old" >/dev/null 2>&1; then
        log "removed superseded image ${old#sha256:}"
    fi
done

# --- 3. optional smoke tests --------------------------------------------------------------
if [[ $CHECK == 1 ]]; then
    log "check: ssl, user, venv"
    "${DOCKER[@]}" run --rm --network host --security-opt no-new-privileges "$BASE_IMAGE" \
        python -c "import ssl, sys, os; assert sys.prefix == '/opt/venv', sys.prefix; assert os.getuid() == 1000; print('ssl ok', ssl.OPENSSL_VERSION)" >&2 \
        || die "check failed: python/ssl/user in $BASE_IMAGE"
    log "check: pip install requests in a throwaway build (needs PyPI)"
    printf 'FROM %s\nUSER root\nRUN pip install -q requests && python -c "import requests; print(\\"requests\\", requests.__version__)"\n' \
        "$BASE_IMAGE" >"$TMP/Dockerfile.check"
    DOCKER_BUILDKIT=0 "${DOCKER[@]}" build --no-cache --network host -f "$TMP/Dockerfile.check" -t spotbot-base-check:local "$CTX" \
        >"$TMP/check.log" 2>&1 || { tail -n 30 "$TMP/check.log" >&2; die "check failed: pip install in a build"; }
    grep -E '^requests ' "$TMP/check.log" >&2 || true
    "${DOCKER[@]}" rmi spotbot-base-check:local >/dev/null 2>&1 || true
    log "checks passed"
fi

"${DOCKER[@]}" image ls --format '{{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}' \
    | grep -E "^(${ROOTFS_IMAGE}|${BASE_IMAGE})  " >&2 || true
log "done"
