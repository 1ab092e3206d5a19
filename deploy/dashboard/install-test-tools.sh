#!/usr/bin/env bash
# The dashboard and metrics tests' tools, from Debian's packages: Chromium and its driver (driven by
# Playwright for Python, whose own browser download cannot work without the internet) and Prometheus
# with promtool. Idempotent: installs only what is missing; needs root (CI runs as root).
set -euo pipefail

log() { printf '[dashboard-tools] %s\n' "$*" >&2; }

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing+=(prometheus)
if [ ${#missing[@]} -eq 0 ]; then
    log "chromium, chromium-driver and prometheus are installed"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "ERROR: ${missing[*]} missing; run as root (or: sudo apt-get install -y ${missing[*]})"
    exit 1
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: the prometheus package recommends node-exporter and friends, which would start services
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's prometheus package starts a service on :9090 where an init system runs; the tests start their own
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus && systemctl disable prometheus >/dev/null 2>&1 || true
fi
log "installed: $(chromium --version 2>/dev/null | head -n1); $(prometheus --version 2>&1 | head -n1)"
