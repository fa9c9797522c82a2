#!/usr/bin/env bash
# Local CLUSTER stack without Docker: three Kafka KRaft nodes (combined broker and
# controller), ZooKeeper 3.9 (from Maven Central) and ClickHouse as 2 shards x 2
# replicas (four clickhouse-server processes with their own ports, paths and macros).
# PostgreSQL is not clustered: deploy/stack.sh up --cluster starts the single one too.
#
#   deploy/cluster.sh up|start [NODE...]   install what is missing, start, wait until ready
#   deploy/cluster.sh down|stop [NODE...]  stop (ClickHouse and Kafka first, ZooKeeper last)
#   deploy/cluster.sh restart NODE...
#   deploy/cluster.sh kill NODE...         SIGKILL (fault injection), then wait until gone
#   deploy/cluster.sh status               every node: state, address, pid
#   deploy/cluster.sh wait [NODE...]       wait until the running nodes answer
#   deploy/cluster.sh logs NODE            last log lines
#   deploy/cluster.sh env                  export lines for the app
#   deploy/cluster.sh install
#
# NODE: zookeeper | kafka-1 | kafka-2 | kafka-3 | clickhouse-s1r1 | clickhouse-s1r2 |
#       clickhouse-s2r1 | clickhouse-s2r2 | kafka (all three) | clickhouse (all four)
# Ports (127.0.0.1 only) from VITALS_CLUSTER_PORT_BASE (B, default 19100): ZooKeeper B,
# Kafka node i B+10+i (controller B+20+i), ClickHouse server k=1..4 (s1r1 s1r2 s2r1 s2r2)
# native B+30+k, HTTP B+40+k, interserver B+50+k. State in $VITALS_STACK_DIR/cluster.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT_BASE="${VITALS_CLUSTER_PORT_BASE:-19100}"
CL_DIR="$STACK_DIR/cluster"
CH_CLUSTER="${VITALS_CLICKHOUSE_CLUSTER:-vitals}"
# Three brokers and ZooKeeper share the machine with four ClickHouse servers.
KAFKA_NODE_HEAP="${VITALS_CLUSTER_KAFKA_HEAP_OPTS:--Xmx512M -Xms512M}"
ZK_HEAP="${VITALS_CLUSTER_ZOOKEEPER_HEAP_OPTS:--Xmx256M -Xms256M}"

ZK_PORT=$(( PORT_BASE ))
ZK_DIR="$CL_DIR/zookeeper"
K_LIB="$STACK_DIR/kafka/lib"
KAFKA_NODES=(kafka-1 kafka-2 kafka-3)
CH_NODES=(clickhouse-s1r1 clickhouse-s1r2 clickhouse-s2r1 clickhouse-s2r2)
ALL_NODES=(zookeeper "${KAFKA_NODES[@]}" "${CH_NODES[@]}")

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# --- layout ----------------------------------------------------------------

kafka_index() { echo "${1#kafka-}"; }
kafka_port() { echo $(( PORT_BASE + 10 + $(kafka_index "$1") )); }
kafka_controller_port() { echo $(( PORT_BASE + 20 + $(kafka_index "$1") )); }
kafka_brokers() {
  local n out=()
  for n in "${KAFKA_NODES[@]}"; do out+=("$STACK_HOST:$(kafka_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}
kafka_voters() {
  local n out=()
  for n in "${KAFKA_NODES[@]}"; do out+=("$(kafka_index "$n")@$STACK_HOST:$(kafka_controller_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# ch_index NODE: 1..4 in the order of CH_NODES.
ch_index() {
  local i
  for i in "${!CH_NODES[@]}"; do [[ "${CH_NODES[$i]}" == "$1" ]] && { echo $(( i + 1 )); return; }; done
  die "unknown ClickHouse node $1"
}
ch_port() { echo $(( PORT_BASE + 30 + $(ch_index "$1") )); }
ch_http_port() { echo $(( PORT_BASE + 40 + $(ch_index "$1") )); }
ch_interserver_port() { echo $(( PORT_BASE + 50 + $(ch_index "$1") )); }
ch_shard() { local s="${1#clickhouse-s}"; echo "${s%%r*}"; }
ch_replica() { echo "r${1##*r}"; }

node_dir() { echo "$CL_DIR/$1"; }

# --- install ----------------------------------------------------------------

install_zookeeper() {
  local lib="$ZK_DIR/lib" v
  v="$(sed -n 's:.*<zookeeper.version>\(.*\)</zookeeper.version>.*:\1:p' "$DEPLOY_DIR/zookeeper/pom.xml")"
  # the marker names the POM's digest: a changed dependency list is fetched again
  v="$v-$(sha256sum "$DEPLOY_DIR/zookeeper/pom.xml" | cut -c1-12)"
  [[ -f "$lib/.fetched-$v" ]] && return 0
  ensure_java_maven
  mkdir -p "$ZK_DIR/logs"
  log "zookeeper: fetching org.apache.zookeeper:zookeeper (POM $v; + metrics-core, snappy-java, logback) with Maven"
  if ! mvn_fetch "$DEPLOY_DIR/zookeeper/pom.xml" "$lib" "$ZK_DIR/logs/maven.log"; then
    show_log_tail zookeeper-maven "$ZK_DIR/logs/maven.log"
    die "zookeeper: Maven could not fetch zookeeper:$v"
  fi
  touch "$lib/.fetched-$v"
}

svc_install_all() {
  bash "$DEPLOY_DIR/kafka.sh" install
  bash "$DEPLOY_DIR/clickhouse.sh" install
  install_zookeeper
}

# --- ZooKeeper -----------------------------------------------------------------

zk_pid() {
  local pid
  pid="$(read_pidfile "$ZK_DIR/zookeeper.pid")"
  if [[ -n "$pid" ]] && pid_alive "$pid" QuorumPeerMain; then echo "$pid"; return 0; fi
  if pid="$(find_pid_by_cmdline "QuorumPeerMain $ZK_DIR/zoo.cfg")"; then
    echo "$pid" >"$ZK_DIR/zookeeper.pid"; echo "$pid"; return 0
  fi
  return 1
}

# Ready when it serves requests: "srvr" reports the mode only then ("ruok" answers
# imok even after the server thread died at start).
zk_ready() {
  local reply
  reply="$(timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"; printf srvr >&3; cat <&3' _ "$STACK_HOST" "$ZK_PORT" 2>/dev/null)" || return 1
  [[ "$reply" == *"Mode: standalone"* ]]
}

zk_start() {
  local pid
  if pid="$(zk_pid)"; then
    wait_until zookeeper "$START_TIMEOUT" "$pid" "$ZK_DIR/logs/zookeeper.log" zk_ready
    return 0
  fi
  port_open "$STACK_HOST" "$ZK_PORT" && die "zookeeper: port $STACK_HOST:$ZK_PORT is in use (set VITALS_CLUSTER_PORT_BASE)"
  mkdir -p "$ZK_DIR/data" "$ZK_DIR/logs"
  # admin.enableServer=false: the AdminServer (Jetty) would listen on 8080.
  cat >"$ZK_DIR/zoo.cfg" <<EOF
# Generated by deploy/cluster.sh at every start -- edit the script, not this file.
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$ZK_DIR/data
clientPort=$ZK_PORT
clientPortAddress=$STACK_HOST
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr,stat
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
EOF
  spawn "$ZK_DIR/zookeeper.pid" "$ZK_DIR/logs/zookeeper.out" java $ZK_HEAP -XX:+UseSerialGC \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlogback.configurationFile="$DEPLOY_DIR/zookeeper/logback.xml" \
    -Dzookeeper.log.file="$ZK_DIR/logs/zookeeper.log" \
    -Dzookeeper.admin.enableServer=false \
    -cp "$ZK_DIR/lib/*" org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZK_DIR/zoo.cfg"
  pid="$(read_pidfile "$ZK_DIR/zookeeper.pid")"
  wait_until zookeeper "$START_TIMEOUT" "$pid" "$ZK_DIR/logs/zookeeper.log $ZK_DIR/logs/zookeeper.out" zk_ready
  log "zookeeper: started on $STACK_HOST:$ZK_PORT (pid $pid)"
}

# --- Kafka nodes ---------------------------------------------------------------

kafka_pid() {
  local d pid; d="$(node_dir "$1")"
  pid="$(read_pidfile "$d/kafka.pid")"
  if [[ -n "$pid" ]] && pid_alive "$pid" kafka.Kafka; then echo "$pid"; return 0; fi
  if pid="$(find_pid_by_cmdline "kafka.Kafka $d/server.properties")"; then
    echo "$pid" >"$d/kafka.pid"; echo "$pid"; return 0
  fi
  return 1
}

kafka_write_config() {
  local n="$1" d; d="$(node_dir "$n")"
  mkdir -p "$d/data" "$d/logs"
  cat >"$d/server.properties" <<EOF
# Generated by deploy/cluster.sh at every start -- edit the script, not this file.
process.roles=broker,controller
node.id=$(kafka_index "$n")
controller.quorum.voters=$(kafka_voters)
listeners=PLAINTEXT://$STACK_HOST:$(kafka_port "$n"),CONTROLLER://$STACK_HOST:$(kafka_controller_port "$n")
advertised.listeners=PLAINTEXT://$STACK_HOST:$(kafka_port "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$d/data

# three nodes: every topic on all three, an acknowledged write on at least two
$(kafka_topic_properties 3 2)
unclean.leader.election.enable=false

num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=268435456
EOF
}

kafka_format() {
  local n="$1" d cid; d="$(node_dir "$n")"
  [[ -f "$d/data/meta.properties" ]] && return 0
  if [[ ! -s "$CL_DIR/kafka-cluster.id" ]]; then
    cid="$(java -cp "$K_LIB/*" -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/tools-log4j2.xml" \
           kafka.tools.StorageTool random-uuid 2>>"$d/logs/kafka.out" | tail -n1)"
    [[ "$cid" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: could not generate a cluster id (got '$cid')"
    echo "$cid" >"$CL_DIR/kafka-cluster.id"
  fi
  cid="$(cat "$CL_DIR/kafka-cluster.id")"
  log "$n: formatting storage (cluster id $cid, static quorum $(kafka_voters))"
  java -Xmx256M -cp "$K_LIB/*" -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/tools-log4j2.xml" \
    kafka.tools.StorageTool format --config "$d/server.properties" --cluster-id "$cid" \
    --ignore-formatted >>"$d/logs/kafka.out" 2>&1 || {
      show_log_tail "$n" "$d/logs/kafka.out"
      die "$n: storage format failed"
    }
}

kafka_spawn() {
  local n="$1" d pid; d="$(node_dir "$n")"
  if pid="$(kafka_pid "$n")"; then return 0; fi
  port_open "$STACK_HOST" "$(kafka_port "$n")" && die "$n: port $(kafka_port "$n") is in use (set VITALS_CLUSTER_PORT_BASE)"
  port_open "$STACK_HOST" "$(kafka_controller_port "$n")" && die "$n: port $(kafka_controller_port "$n") is in use (set VITALS_CLUSTER_PORT_BASE)"
  kafka_write_config "$n"
  kafka_format "$n"
  printf '\n==== %s starting %s ====\n' "$(date -Is)" "$n" >>"$d/logs/kafka.out"
  spawn "$d/kafka.pid" "$d/logs/kafka.out" java $KAFKA_NODE_HEAP -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dkafka.logs.dir="$d/logs" \
    -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.xml" \
    -cp "$K_LIB/*" kafka.Kafka "$d/server.properties"
}

# A node is ready when it answers a metadata request that lists all three brokers.
kafka_ready() {
  local n="$1" out
  port_open "$STACK_HOST" "$(kafka_port "$n")" || return 1
  out="$(VITALS_KAFKA_TOOL_QUICK=1 bash "$DEPLOY_DIR/kafka-tool.sh" broker-api-versions \
         --bootstrap-server "$STACK_HOST:$(kafka_port "$n")" 2>/dev/null)" || return 1
  [[ "$(grep -c '^127.0.0.1:.*(id: ' <<<"$out")" -ge "${#KAFKA_NODES[@]}" ]]
}

kafka_wait() {
  local n="$1" d; d="$(node_dir "$n")"
  wait_until "$n" "$START_TIMEOUT" "$(kafka_pid "$n" || true)" "$d/logs/server.log $d/logs/kafka.out" kafka_ready "$n"
}

# --- ClickHouse servers ----------------------------------------------------------

ch_pid() {
  local d pid; d="$(node_dir "$1")"
  pid="$(read_pidfile "$d/clickhouse.pid")"
  if [[ -n "$pid" ]] && pid_alive "$pid" clickhouse; then echo "$pid"; return 0; fi
  if pid="$(find_pid_by_cmdline "--config-file=$d/config.xml")"; then
    echo "$pid" >"$d/clickhouse.pid"; echo "$pid"; return 0
  fi
  return 1
}

# remote_shards: the <shard> elements of remote_servers, every server in its shard.
remote_shards() {
  local shard n
  for shard in 1 2; do
    printf '            <shard>\n                <internal_replication>true</internal_replication>\n'
    for n in "${CH_NODES[@]}"; do
      [[ "$(ch_shard "$n")" == "$shard" ]] || continue
      printf '                <replica><host>%s</host><port>%s</port></replica>\n' "$STACK_HOST" "$(ch_port "$n")"
    done
    printf '            </shard>\n'
  done
}

ch_render() {
  local n="$1" d sha shards; d="$(node_dir "$n")"
  mkdir -p "$d"/{data,tmp,user_files,format_schemas,logs}
  sha="$(printf '%s' "$CH_ANALYST_PASSWORD" | sha256sum | awk '{print $1}')"
  shards="$(remote_shards)"
  awk -v shards="$shards" '{ if ($0 == "@REMOTE_SHARDS@") print shards; else print }' \
      "$DEPLOY_DIR/cluster/clickhouse.xml" |
    sed -e "s|@CH_DIR@|$(sed_escape "$d")|g" \
        -e "s|@HTTP_PORT@|$(ch_http_port "$n")|g" \
        -e "s|@TCP_PORT@|$(ch_port "$n")|g" \
        -e "s|@INTERSERVER_PORT@|$(ch_interserver_port "$n")|g" \
        -e "s|@SHARD@|$(ch_shard "$n")|g" \
        -e "s|@REPLICA@|$(ch_replica "$n")|g" \
        -e "s|@CLUSTER@|$CH_CLUSTER|g" \
        -e "s|@ZK_PORT@|$ZK_PORT|g" >"$d/config.xml.tmp"
  sed -e "s|@ANALYST_PASSWORD_SHA256@|$sha|g" "$DEPLOY_DIR/cluster/users.xml" >"$d/users.xml.tmp"
  mv "$d/config.xml.tmp" "$d/config.xml"
  mv "$d/users.xml.tmp" "$d/users.xml"
}

ch_ready() {
  local n="$1"
  [[ "$(curl -sf --max-time 2 "http://$STACK_HOST:$(ch_http_port "$n")/ping")" == "Ok." ]] || return 1
  clickhouse-client --host "$STACK_HOST" --port "$(ch_port "$n")" -q 'SELECT version()' >/dev/null
}

ch_spawn() {
  local n="$1" d p; d="$(node_dir "$n")"
  if ch_pid "$n" >/dev/null; then return 0; fi
  for p in "$(ch_port "$n")" "$(ch_http_port "$n")" "$(ch_interserver_port "$n")"; do
    port_open "$STACK_HOST" "$p" && die "$n: port $p is in use (set VITALS_CLUSTER_PORT_BASE)"
  done
  ch_render "$n"
  printf '\n==== %s starting %s ====\n' "$(date -Is)" "$n" >>"$d/logs/clickhouse.out"
  ( cd "$d" && spawn "$d/clickhouse.pid" "$d/logs/clickhouse.out" "$CH_SERVER_BIN" --config-file="$d/config.xml" )
}

ch_wait() {
  local n="$1" d; d="$(node_dir "$n")"
  wait_until "$n" "$START_TIMEOUT" "$(ch_pid "$n" || true)" \
    "$d/logs/clickhouse-server.err.log $d/logs/clickhouse.out" ch_ready "$n"
  clickhouse-client --host "$STACK_HOST" --port "$(ch_port "$n")" -q "CREATE DATABASE IF NOT EXISTS $CH_DATABASE" \
    || die "$n: could not create database $CH_DATABASE"
}

# --- dispatch by node ------------------------------------------------------------

node_pid() {
  case "$1" in
    zookeeper) zk_pid ;;
    kafka-*) kafka_pid "$1" ;;
    clickhouse-*) ch_pid "$1" ;;
  esac
}

node_addr() {
  case "$1" in
    zookeeper) echo "$STACK_HOST:$ZK_PORT" ;;
    kafka-*) echo "$STACK_HOST:$(kafka_port "$1")" ;;
    clickhouse-*) echo "$STACK_HOST:$(ch_port "$1")" ;;
  esac
}

# nodes_from_args ARGS...: canonical node names, in start order.
nodes_from_args() {
  if (( $# == 0 )); then printf '%s\n' "${ALL_NODES[@]}"; return; fi
  local a
  for a in "$@"; do
    case "$a" in
      zookeeper|zk) echo zookeeper ;;
      kafka) printf '%s\n' "${KAFKA_NODES[@]}" ;;
      clickhouse|ch) printf '%s\n' "${CH_NODES[@]}" ;;
      kafka-[123]) echo "$a" ;;
      clickhouse-s[12]r[12]) echo "$a" ;;
      *) die "unknown cluster node '$a' (zookeeper, kafka-1..3, clickhouse-s1r1..s2r2, kafka, clickhouse)" ;;
    esac
  done
}

# start_nodes NODE...: ZooKeeper first; the Kafka nodes all at once (a controller
# quorum needs two of three to elect a leader), then the ClickHouse servers.
start_nodes() {
  local n t0; t0="$(now_s)"
  local -a ks=() cs=()
  for n in "$@"; do
    case "$n" in
      zookeeper) zk_start ;;
      kafka-*) ks+=("$n") ;;
      clickhouse-*) cs+=("$n") ;;
    esac
  done
  for n in "${ks[@]}" "${cs[@]}"; do
    case "$n" in kafka-*) kafka_spawn "$n" ;; clickhouse-*) ch_spawn "$n" ;; esac
  done
  for n in "${cs[@]}"; do ch_wait "$n"; done
  for n in "${ks[@]}"; do kafka_wait "$n"; done
  log "cluster: ${*} ready in $(( $(now_s) - t0 ))s"
}

stop_node() {
  local n="$1" pid
  if ! pid="$(node_pid "$n")"; then return 0; fi
  log "$n: stopping pid $pid (SIGTERM)"
  stop_pid "$n" "$pid" "$STOP_TIMEOUT"
}

kill_node() {
  local n="$1" pid
  if ! pid="$(node_pid "$n")"; then log "$n: not running"; return 0; fi
  log "$n: killing pid $pid (SIGKILL)"
  kill_pid "$n" "$pid"
}

# stop_nodes NODE...: ClickHouse and Kafka first (in parallel), ZooKeeper last.
stop_nodes() {
  local n rc=0 zk=0
  local -a pids=()
  for n in "$@"; do
    if [[ "$n" == zookeeper ]]; then zk=1; continue; fi
    stop_node "$n" & pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || rc=1; done
  (( zk )) && { stop_node zookeeper || rc=1; }
  return $rc
}

node_version() {
  local f
  case "$1" in
    zookeeper) f="$(ls "$ZK_DIR"/lib/zookeeper-[0-9]*.jar 2>/dev/null | head -n1)"; f="${f##*/zookeeper-}"; echo "${f%.jar}" ;;
    kafka-*) bash "$DEPLOY_DIR/kafka.sh" version ;;
    clickhouse-*) echo "$(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null) shard $(ch_shard "$1") replica $(ch_replica "$1")" ;;
  esac
}

status_all() {
  local n pid state rc=0
  for n in "${ALL_NODES[@]}"; do
    if pid="$(node_pid "$n")"; then state=running; else state=stopped; pid=-; rc=3; fi
    status_line "$n" "$state" "$(node_addr "$n")" "$pid" "$(node_dir "$n")" "$(node_version "$n")"
  done
  return $rc
}

env_lines() {
  local n chs=()
  for n in "${CH_NODES[@]}"; do chs+=("$STACK_HOST:$(ch_port "$n")"); done
  cat <<EOF
export VITALS_KAFKA_BROKERS=$(kafka_brokers)
export VITALS_KAFKA_REPLICATION=3
export VITALS_PG_URL=postgres://vitals:vitals@$STACK_HOST:$PG_PORT/vitals?sslmode=disable
export VITALS_CLICKHOUSE_ADDR=$(IFS=,; echo "${chs[*]}")
export VITALS_CLICKHOUSE_CLUSTER=$CH_CLUSTER
export VITALS_CLICKHOUSE_DATABASE=$CH_DATABASE
EOF
}

cmd="${1:-}"; [[ -n "$cmd" ]] || usage; shift
case "$cmd" in
  install) svc_install_all ;;
  up|start)
    svc_install_all
    mapfile -t nodes < <(nodes_from_args "$@")
    start_nodes "${nodes[@]}"
    ;;
  down|stop)
    mapfile -t nodes < <(nodes_from_args "$@")
    stop_nodes "${nodes[@]}"
    ;;
  restart)
    (( $# >= 1 )) || usage
    mapfile -t nodes < <(nodes_from_args "$@")
    stop_nodes "${nodes[@]}"
    svc_install_all
    start_nodes "${nodes[@]}"
    ;;
  kill)
    (( $# >= 1 )) || usage
    mapfile -t nodes < <(nodes_from_args "$@")
    for n in "${nodes[@]}"; do kill_node "$n"; done
    ;;
  wait)
    mapfile -t nodes < <(nodes_from_args "$@")
    for n in "${nodes[@]}"; do
      node_pid "$n" >/dev/null || continue
      case "$n" in
        zookeeper) wait_until zookeeper "$START_TIMEOUT" "" "$ZK_DIR/logs/zookeeper.log" zk_ready ;;
        kafka-*) kafka_wait "$n" ;;
        clickhouse-*) ch_wait "$n" ;;
      esac
    done
    ;;
  status) status_all ;;
  logs)
    (( $# == 1 )) || usage
    n="$(nodes_from_args "$1")"; d="$(node_dir "$n")"
    tail -n 100 "$d"/logs/*.log "$d"/logs/*.out 2>/dev/null || true
    ;;
  env) env_lines ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
