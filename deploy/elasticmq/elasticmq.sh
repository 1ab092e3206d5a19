#!/usr/bin/env bash
# elasticmq.sh: a local SQS-compatible server (ElasticMQ), from Maven Central artifacts only.
#
#   elasticmq.sh start PORT    serve the SQS API on 127.0.0.1:PORT in the background; returns 0 once it answers
#   elasticmq.sh stop PORT     stop the server started on PORT
#
# The jars are resolved once with Maven (pom.xml, cached in ~/.m2 and in the state folder), so later
# starts need no network. Queues live in memory: a restart starts empty.
# Environment: ELASTICMQ_STATE (default /tmp/spotbot-elasticmq-UID: jars, logs, pid files),
# ELASTICMQ_HEAP (256m), ELASTICMQ_WAIT (seconds, 90), MVN (mvn).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${ELASTICMQ_STATE:-/tmp/spotbot-elasticmq-$(id -u)}
HEAP=${ELASTICMQ_HEAP:-256m}
WAIT=${ELASTICMQ_WAIT:-90}
MVN=${MVN:-mvn}
MAIN=org.elasticmq.server.Main

say() { echo "elasticmq: $*" >&2; }
die() { say "$*"; exit 1; }
[ $# -eq 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || { sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
PORT=$2
mkdir -p "$STATE"

answers() { [ "$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:$PORT/?Action=ListQueues" 2>/dev/null)" = 200 ]; }
running() { [ -n "$(ps -o stat= -p "$1" 2>/dev/null | grep -v Z)" ]; }  # alive and not a zombie
ours() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ps -ww -o args= -p "$1" 2>/dev/null | grep -q "$MAIN"; }

resolve() {
  local version lib="$STATE/lib"
  version=$(sed -n 's:.*<elasticmq.version>\(.*\)</elasticmq.version>.*:\1:p' "$HERE/pom.xml")
  [ -f "$lib/.resolved-$version" ] && return 0
  command -v java >/dev/null || die "java not found (ElasticMQ needs Java 17)"
  command -v "${MVN%% *}" >/dev/null || die "mvn not found (it resolves ElasticMQ from Maven Central)"
  rm -rf "$lib"
  if ! $MVN -B -q -f "$HERE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib" \
      >"$STATE/mvn.log" 2>&1; then
    grep -v Download "$STATE/mvn.log" | tail -n 30 >&2
    die "resolving ElasticMQ $version failed (full log: $STATE/mvn.log)"
  fi
  touch "$lib/.resolved-$version"
}

start() {
  local pid
  pid=$(cat "$STATE/$PORT.pid" 2>/dev/null || true)
  if ours "$pid" && answers; then say "already serving on 127.0.0.1:$PORT"; return 0; fi
  resolve
  cat >"$STATE/$PORT.conf" <<CONF
include classpath("application.conf")
node-address { protocol = http, host = "127.0.0.1", port = $PORT, context-path = "" }
rest-sqs { enabled = true, bind-port = $PORT, bind-hostname = "127.0.0.1", sqs-limits = strict }
rest-stats { enabled = false }
CONF
  nohup java "-Xmx$HEAP" -Dconfig.file="$STATE/$PORT.conf" -cp "$STATE/lib/*" "$MAIN" \
    >"$STATE/$PORT.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$STATE/$PORT.pid"
  for _ in $(seq 1 $((WAIT * 2))); do
    if answers; then say "serving on 127.0.0.1:$PORT (pid $pid)"; return 0; fi
    kill -0 "$pid" 2>/dev/null || break  # (not `ours`: until the fork has exec'd java, its args are this script's)
    sleep 0.5
  done
  tail -n 30 "$STATE/$PORT.log" >&2
  kill "$pid" 2>/dev/null || true
  die "ElasticMQ did not answer on 127.0.0.1:$PORT (log: $STATE/$PORT.log)"
}

stop() {
  local pid
  pid=$(cat "$STATE/$PORT.pid" 2>/dev/null || true)
  if ours "$pid"; then
    kill "$pid"
    for _ in $(seq 1 50); do running "$pid" || break; sleep 0.2; done
    running "$pid" && kill -9 "$pid"
  fi
  rm -f "$STATE/$PORT.pid"
}

case "$1" in
  start) start ;;
  stop) stop ;;
  *) die "unknown command $1 (start or stop)" ;;
esac
