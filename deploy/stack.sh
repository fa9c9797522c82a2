#!/usr/bin/env bash
# Local Vitals stack without Docker: Kafka (KRaft), ClickHouse, PostgreSQL.
#
#   deploy/stack.sh up [SERVICE...]       install what is missing, start, wait until ready
#   deploy/stack.sh down [SERVICE...]     stop cleanly (reverse order)
#   deploy/stack.sh status                state, address, pid, data dir, version
#   deploy/stack.sh start SERVICE         start one service and wait until it answers
#   deploy/stack.sh stop SERVICE          stop one service and wait until it is gone
#   deploy/stack.sh restart SERVICE
#   deploy/stack.sh wait [SERVICE...]     wait until running services answer
#   deploy/stack.sh logs SERVICE          last log lines
#   deploy/stack.sh env                   export lines for the app (eval "$(deploy/stack.sh env)")
#   deploy/stack.sh up --cluster          the cluster stack instead (deploy/cluster.sh): PostgreSQL,
#                                         ZooKeeper, 3 Kafka nodes, ClickHouse 2 shards x 2 replicas
#   deploy/stack.sh status|env --cluster  the cluster's state, the app's settings for it
#   deploy/stack.sh stop|start|restart|kill NODE   one cluster node (kafka-2, clickhouse-s2r1, ...)
#   (down stops the cluster's nodes too)
#
# SERVICE: kafka | clickhouse | postgres (aliases: ch, pg)
# State lives in $VITALS_STACK_DIR (default: <repo>/.stack). Ports: VITALS_KAFKA_PORT
# (19092), VITALS_CLICKHOUSE_PORT (19000), VITALS_CLICKHOUSE_HTTP_PORT (18123),
# VITALS_PG_PORT (15432). All listen on 127.0.0.1 only.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_SERVICES=(postgres clickhouse kafka)

usage() { sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

canon() {
  case "$1" in
    kafka|k) echo kafka ;;
    clickhouse|ch) echo clickhouse ;;
    postgres|postgresql|pg) echo postgres ;;
    *) die "unknown service '$1' (kafka|clickhouse|postgres)" ;;
  esac
}

svc() { local s="$1"; shift; bash "$DEPLOY_DIR/$s.sh" "$@"; }

# cluster_node NAME: NAME is a node of the cluster stack (deploy/cluster.sh).
cluster_node() { [[ "$1" =~ ^(zookeeper|kafka-[123]|clickhouse-s[12]r[12])$ ]]; }

# cluster_running: some node of the cluster stack has a pid file.
cluster_running() { compgen -G "$STACK_DIR/cluster/*/*.pid" >/dev/null; }

cluster=0
args=()
for a in "$@"; do
  if [[ "$a" == --cluster ]]; then cluster=1; else args+=("$a"); fi
done
set -- "${args[@]+"${args[@]}"}"

services_from_args() {
  if (( $# == 0 )); then printf '%s\n' "${ALL_SERVICES[@]}"; return; fi
  local s; for s in "$@"; do canon "$s"; done
}

cmd="${1:-}"; [[ -n "$cmd" ]] || usage; shift

# Serialize state-changing commands (two `make up`s, parallel fault-injection tests).
# The lock is fd 9; daemons are started with fd 9 closed so they don't keep it.
case "$cmd" in
  up|down|start|stop|restart|kill)
    exec 9>"$STACK_DIR/.lock"
    if ! flock -n 9; then
      log "waiting for another deploy/stack.sh to finish (lock $STACK_DIR/.lock)"
      flock -w "${VITALS_STACK_LOCK_TIMEOUT:-600}" 9 || die "timed out waiting for the stack lock"
    fi
    ;;
esac

case "$cmd" in
  up)
    if (( cluster )); then
      svc postgres start
      bash "$DEPLOY_DIR/cluster.sh" up
      exit 0
    fi
    t0="$(now_s)"
    mapfile -t list < <(services_from_args "$@")
    log "up: ${list[*]} (state in $STACK_DIR)"
    for s in "${list[@]}"; do svc "$s" install; done
    for s in "${list[@]}"; do svc "$s" start; done
    log "up: all ready in $(( $(now_s) - t0 ))s"
    ;;
  down)
    rc=0
    if (( $# == 0 || cluster )) && cluster_running; then
      bash "$DEPLOY_DIR/cluster.sh" down || rc=1
    fi
    if (( cluster )) && (( $# == 0 )); then
      svc postgres stop || rc=1
      exit $rc
    fi
    mapfile -t list < <(services_from_args "$@")
    for (( i=${#list[@]}-1; i>=0; i-- )); do svc "${list[$i]}" stop || rc=1; done
    exit $rc
    ;;
  status)
    rc=0
    if (( cluster )); then
      svc postgres status || rc=3
      bash "$DEPLOY_DIR/cluster.sh" status || rc=3
      exit $rc
    fi
    for s in "${ALL_SERVICES[@]}"; do svc "$s" status || rc=3; done
    if cluster_running; then bash "$DEPLOY_DIR/cluster.sh" status || true; fi
    log "state dir: $STACK_DIR"
    exit $rc
    ;;
  start|stop|restart|logs|kill)
    (( $# >= 1 )) || usage
    for s in "$@"; do
      if cluster_node "$s"; then bash "$DEPLOY_DIR/cluster.sh" "$cmd" "$s"
      elif [[ "$cmd" == kill ]]; then die "kill: only cluster nodes (kafka-1, clickhouse-s1r2, ...)"
      else svc "$(canon "$s")" "$cmd"
      fi
    done
    ;;
  wait)
    mapfile -t list < <(services_from_args "$@")
    for s in "${list[@]}"; do svc "$s" wait; done
    ;;
  env)
    if (( cluster )); then exec bash "$DEPLOY_DIR/cluster.sh" env; fi
    cat <<EOF
export VITALS_KAFKA_BROKERS=$STACK_HOST:$KAFKA_PORT
export VITALS_PG_URL=postgres://vitals:vitals@$STACK_HOST:$PG_PORT/vitals?sslmode=disable
export VITALS_CLICKHOUSE_ADDR=$STACK_HOST:$CLICKHOUSE_PORT
export VITALS_CLICKHOUSE_DATABASE=${VITALS_CLICKHOUSE_DATABASE:-vitals}
EOF
    ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
