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
#   deploy/stack.sh env                   export lines for the app (eval "$(deploy/stack.sh env)"),
#                                         the local key-encryption key included (made on first use)
#   deploy/stack.sh up --secure           also: Kafka SASL_SSL (SCRAM), ClickHouse's secure native and
#                                         HTTPS ports with a password user, PostgreSQL TLS, with
#                                         certificates made by deploy/tls.sh; the plain listeners stay.
#                                         Kept until `up --plain`.
#   deploy/stack.sh env --secure          export lines for a pipeline that uses only the secure
#                                         listeners (and serves HTTPS itself)
#   deploy/stack.sh up --cluster          the cluster stack instead (deploy/cluster.sh): PostgreSQL,
#                                         ZooKeeper, 3 Kafka nodes, ClickHouse 2 shards x 2 replicas
#   deploy/stack.sh status|env --cluster  the cluster's state, the app's settings for it
#   deploy/stack.sh stop|start|restart|kill NODE   one cluster node (kafka-2, clickhouse-s2r1, ...)
#   (down stops the cluster's nodes too)
#
# SERVICE: kafka | clickhouse | postgres | chdb (aliases: ch, pg). `up` without a
# service starts the first three; chdb (a current ClickHouse engine for `make test`'s
# check, deploy/chdb.sh) only when named. `down` and `status` cover all four.
# State lives in $VITALS_STACK_DIR (default: <repo>/.stack). Ports: VITALS_KAFKA_PORT
# (19092), VITALS_CLICKHOUSE_PORT (19000), VITALS_CLICKHOUSE_HTTP_PORT (18123),
# VITALS_PG_PORT (15432), VITALS_CHDB_PORT (18124); secure: VITALS_KAFKA_SECURE_PORT (Kafka's + 2),
# VITALS_CLICKHOUSE_SECURE_PORT (native + 440), VITALS_CLICKHOUSE_HTTPS_PORT (HTTP + 320).
# All listen on 127.0.0.1 only.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_SERVICES=(postgres clickhouse kafka)
# Also stopped by `down` and shown by `status`, but started only when named.
OPTIONAL_SERVICES=(chdb)

usage() { sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

canon() {
  case "$1" in
    kafka|k) echo kafka ;;
    clickhouse|ch) echo clickhouse ;;
    postgres|postgresql|pg) echo postgres ;;
    chdb) echo chdb ;;
    *) die "unknown service '$1' (kafka|clickhouse|postgres|chdb)" ;;
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
    args=()
    for a in "$@"; do
      case "$a" in
        --secure) touch "$STACK_DIR/secure" ;;
        --plain) rm -f "$STACK_DIR/secure" ;;
        *) args+=("$a") ;;
      esac
    done
    set -- "${args[@]}"
    if secure_wanted; then bash "$DEPLOY_DIR/tls.sh" ensure; fi
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
    (( $# == 0 )) && list=("${OPTIONAL_SERVICES[@]}" "${list[@]}")
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
    for s in "${OPTIONAL_SERVICES[@]}"; do svc "$s" status || true; done
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
    # The local stack's key-encryption key (docs/privacy.md): made once,
    # readable by its owner only. Losing it loses every user's data.
    kek="$STACK_DIR/kek"
    if [[ ! -s "$kek" ]]; then
      mkdir -p "$STACK_DIR"
      ( umask 077; head -c 32 /dev/urandom | base64 > "$kek.tmp" && mv "$kek.tmp" "$kek" )
    fi
    if (( cluster )); then
      bash "$DEPLOY_DIR/cluster.sh" env
      echo "export VITALS_KEK_FILE=$kek"
      exit 0
    fi
    if [[ "${1:-}" == --secure ]]; then
      secure_wanted && [[ -s "$TLS_DIR/secrets.env" ]] \
        || die "the secure listeners are not configured: run bash deploy/stack.sh up --secure"
      port_open "$STACK_HOST" "$KAFKA_SECURE_PORT" && port_open "$STACK_HOST" "$CLICKHOUSE_SECURE_PORT" \
        || die "the secure listeners are not running: run bash deploy/stack.sh up --secure"
      # shellcheck disable=SC1091
      source "$TLS_DIR/secrets.env"
      cat <<EOF
export VITALS_KAFKA_BROKERS=$STACK_HOST:$KAFKA_SECURE_PORT
export VITALS_KAFKA_SECURITY_PROTOCOL=SASL_SSL
export VITALS_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export VITALS_KAFKA_SASL_USERNAME=vitals
export VITALS_KAFKA_SASL_PASSWORD=$KAFKA_SCRAM_PASSWORD
export VITALS_KAFKA_TLS_CA=$TLS_DIR/ca.pem
export VITALS_PG_URL='postgres://vitals:vitals@$STACK_HOST:$PG_PORT/vitals?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem'
export VITALS_CLICKHOUSE_ADDR=$STACK_HOST:$CLICKHOUSE_SECURE_PORT
export VITALS_CLICKHOUSE_TLS=true
export VITALS_CLICKHOUSE_TLS_CA=$TLS_DIR/ca.pem
export VITALS_CLICKHOUSE_USER=vitals
export VITALS_CLICKHOUSE_PASSWORD=$CLICKHOUSE_PASSWORD
export VITALS_CLICKHOUSE_DATABASE=${VITALS_CLICKHOUSE_DATABASE:-vitals}
export VITALS_CLICKHOUSE_USERS_DIR=$STACK_DIR/clickhouse/users.d
export VITALS_CLICKHOUSE_HTTPS_ADDR=$STACK_HOST:$CLICKHOUSE_HTTPS_PORT
export VITALS_INGEST_TLS_CERT=$TLS_DIR/server.pem
export VITALS_INGEST_TLS_KEY=$TLS_DIR/server.key
export VITALS_QUERY_TLS_CERT=$TLS_DIR/server.pem
export VITALS_QUERY_TLS_KEY=$TLS_DIR/server.key
export VITALS_QUERY_TLS_CA=$TLS_DIR/ca.pem
export VITALS_QUERY_URL=https://$STACK_HOST:8081
export VITALS_KEK_FILE=$kek
EOF
      exit 0
    fi
    cat <<EOF
export VITALS_KAFKA_BROKERS=$STACK_HOST:$KAFKA_PORT
export VITALS_PG_URL=postgres://vitals:vitals@$STACK_HOST:$PG_PORT/vitals?sslmode=disable
export VITALS_CLICKHOUSE_ADDR=$STACK_HOST:$CLICKHOUSE_PORT
export VITALS_CLICKHOUSE_DATABASE=${VITALS_CLICKHOUSE_DATABASE:-vitals}
export VITALS_CHDB_ADDR=$STACK_HOST:$CHDB_PORT
export VITALS_KEK_FILE=$kek
export VITALS_CLICKHOUSE_USERS_DIR=$STACK_DIR/clickhouse/users.d
export VITALS_CLICKHOUSE_HTTP_ADDR=$STACK_HOST:$CLICKHOUSE_HTTP_PORT
EOF
    ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
