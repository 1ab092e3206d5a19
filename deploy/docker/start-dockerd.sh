#!/usr/bin/env bash
# Start a local Docker engine (dockerd) without systemd and without any image registry.
#
# Idempotent: if `docker info` already answers, nothing is done. Otherwise it
#   1. installs Debian's docker.io (which pulls containerd, runc, tini, iptables) if dockerd is missing,
#   2. starts dockerd in the background with flags that work in this sandbox,
#   3. waits (bounded) until `docker info` answers, falling back to other flag sets if it dies.
#
# Environment knobs:
#   SPOTBOT_DOCKER_NETWORK         host-only (default) | bridge
#        host-only: --bridge=none --iptables=false --ip-masq=false --ip-forward=false
#                   dockerd touches neither iptables nor ip_forward and creates no docker0;
#                   containers get loopback only unless run with `--network host`, and
#                   `docker build` steps that need the network must use `--network host`.
#        bridge:    dockerd defaults (docker0 172.17.0.0/16 + iptables NAT). Works here too,
#                   but is not needed and gives containers a private-range network.
#   SPOTBOT_DOCKER_STORAGE_DRIVER  auto (default: overlay2, then vfs) | overlay2 | vfs
#   SPOTBOT_DOCKERD_TIMEOUT        seconds to wait per attempt (default 60)
#   SPOTBOT_DOCKERD_LOG            log file (default /var/log/dockerd.log)
#   SPOTBOT_DOCKERD_EXTRA_FLAGS    extra flags appended verbatim (word-split)
set -euo pipefail

log() { printf '[start-dockerd] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

NETWORK_MODE="${SPOTBOT_DOCKER_NETWORK:-host-only}"
STORAGE="${SPOTBOT_DOCKER_STORAGE_DRIVER:-auto}"
TIMEOUT="${SPOTBOT_DOCKERD_TIMEOUT:-60}"
LOG_FILE="${SPOTBOT_DOCKERD_LOG:-/var/log/dockerd.log}"
PID_FILE=/var/run/docker.pid
FLAGS_FILE=/var/run/spotbot-dockerd.flags

case "$NETWORK_MODE" in host-only|bridge) ;; *) die "SPOTBOT_DOCKER_NETWORK must be host-only or bridge (got '$NETWORK_MODE')";; esac
case "$STORAGE" in auto|overlay2|vfs) ;; *) die "SPOTBOT_DOCKER_STORAGE_DRIVER must be auto, overlay2 or vfs (got '$STORAGE')";; esac
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "SPOTBOT_DOCKERD_TIMEOUT must be an integer number of seconds"

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "must run as root (or with sudo available)"
    SUDO=(sudo -n)
fi

# Prefer the engine's own client (/usr/bin/docker from docker.io) when the PATH one is missing.
docker_cli() {
    if command -v docker >/dev/null 2>&1; then "${SUDO[@]}" docker "$@"; else "${SUDO[@]}" /usr/bin/docker "$@"; fi
}
engine_ready() { docker_cli info >/dev/null 2>&1; }

if engine_ready; then
    log "Docker engine already running: $(docker_cli version --format 'server {{.Server.Version}}' 2>/dev/null || echo '?')"
    [[ -r "$FLAGS_FILE" ]] && log "started earlier with: $(cat "$FLAGS_FILE")"
    exit 0
fi

# 1. Install the engine if missing.
if ! command -v dockerd >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "dockerd not found and apt-get not available to install docker.io"
    log "dockerd not found: installing Debian package docker.io"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q >/dev/null || die "apt-get update failed"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends docker.io >/dev/null \
        || die "apt-get install docker.io failed"
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd still not on PATH"
    # On a host with systemd running, the package may have started the service itself.
    if engine_ready; then log "Docker engine started by the package's service"; exit 0; fi
fi

# 2. A dockerd that is alive but not answering yet: wait for it instead of starting a second one.
alive() {  # alive PID: the process exists and is not a zombie
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}
wait_ready() {  # wait_ready PID SECONDS -> 0 ready, 1 timeout, 2 process died
    local pid="$1" secs="$2" i
    for ((i = 0; i < secs * 2; i++)); do
        engine_ready && return 0
        if [[ -n "$pid" ]] && ! alive "$pid"; then return 2; fi
        sleep 0.5
    done
    engine_ready && return 0
    return 1
}

if [[ -s "$PID_FILE" ]]; then
    old_pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    if [[ "$old_pid" =~ ^[0-9]+$ ]] && alive "$old_pid" \
        && [[ "$(cat "/proc/$old_pid/comm" 2>/dev/null || true)" == dockerd ]]; then
        log "dockerd (pid $old_pid) is running but not ready yet; waiting up to ${TIMEOUT}s"
        rc=0; wait_ready "$old_pid" "$TIMEOUT" || rc=$?
        [[ $rc -eq 0 ]] && { log "Docker engine ready"; exit 0; }
        [[ $rc -eq 1 ]] && die "dockerd pid $old_pid does not answer; see $LOG_FILE (stop it with: kill $old_pid)"
        log "dockerd pid $old_pid exited meanwhile"
    fi
    log "removing stale pid file $PID_FILE (pid '${old_pid:-}' is no running dockerd)"
    "${SUDO[@]}" rm -f "$PID_FILE"
fi

# 3. Start dockerd, trying flag sets in order until one answers.
net_flags() {
    case "$1" in
        host-only) echo "--bridge=none --iptables=false --ip-masq=false --ip-forward=false" ;;
        bridge) echo "" ;;
    esac
}
attempts=()
drivers=("$STORAGE"); [[ "$STORAGE" == auto ]] && drivers=(overlay2 vfs)
nets=("$NETWORK_MODE"); [[ "$NETWORK_MODE" == bridge ]] && nets=(bridge host-only)
for n in "${nets[@]}"; do
    for d in "${drivers[@]}"; do
        attempts+=("--storage-driver=$d $(net_flags "$n")")
    done
done

"${SUDO[@]}" mkdir -p "$(dirname "$LOG_FILE")"
for flags in "${attempts[@]}"; do
    # shellcheck disable=SC2206
    argv=(dockerd $flags ${SPOTBOT_DOCKERD_EXTRA_FLAGS:-})
    log "starting: ${argv[*]}  (log: $LOG_FILE)"
    printf '\n==== %s start-dockerd: %s\n' "$(date -u +%FT%TZ)" "${argv[*]}" | "${SUDO[@]}" tee -a "$LOG_FILE" >/dev/null
    # setsid + nohup: detach from this script's session so dockerd outlives it.
    "${SUDO[@]}" setsid nohup "${argv[@]}" >>"$LOG_FILE" 2>&1 </dev/null &
    launcher=$!
    # The pid file is written by dockerd itself once it has started.
    pid=""
    for _ in $(seq 1 20); do
        pid="$(cat "$PID_FILE" 2>/dev/null || true)"
        [[ -n "$pid" ]] && break
        kill -0 "$launcher" 2>/dev/null || break
        sleep 0.25
    done
    [[ -n "$pid" ]] || pid="$launcher"
    rc=0; wait_ready "$pid" "$TIMEOUT" || rc=$?
    if [[ $rc -eq 0 ]]; then
        echo "${argv[*]}" | "${SUDO[@]}" tee "$FLAGS_FILE" >/dev/null
        log "Docker engine ready (pid $pid): $(docker_cli info --format 'server {{.ServerVersion}}, storage {{.Driver}}, cgroup v{{.CgroupVersion}} ({{.CgroupDriver}})' 2>/dev/null || echo '?')"
        [[ "$NETWORK_MODE" == host-only && "$flags" == *bridge=none* ]] \
            && log "note: no bridge network; use 'docker run --network host' / 'docker build --network host' for network access"
        exit 0
    fi
    if [[ $rc -eq 1 ]]; then
        die "dockerd (pid $pid) did not become ready within ${TIMEOUT}s; left running; see $LOG_FILE"
    fi
    log "dockerd exited during start-up (${argv[*]}); last log lines:"
    tail -n 5 "$LOG_FILE" | sed 's/^/    /' >&2 || true
    "${SUDO[@]}" rm -f "$PID_FILE"
done
die "dockerd failed to start with every flag set tried; see $LOG_FILE"
