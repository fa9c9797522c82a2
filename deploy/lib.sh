# shellcheck shell=bash
# shellcheck disable=SC2034  # variables defined here are used by the sourcing scripts
# Shared helpers for the local (non-Docker) Vitals stack scripts.
# Sourced by deploy/stack.sh, deploy/kafka.sh, deploy/clickhouse.sh, deploy/postgres.sh
# and deploy/kafka-tool.sh. Not meant to be executed directly.

set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$DEPLOY_DIR/.." && pwd -P)"

# All state (binaries fetched by Maven, data, logs, pid files, generated configs)
# lives under one git-ignored directory so that restarts keep topics and tables.
STACK_DIR="${VITALS_STACK_DIR:-$REPO_ROOT/.stack}"
mkdir -p "$STACK_DIR"
STACK_DIR="$(cd "$STACK_DIR" && pwd -P)"

# Ports (everything binds to 127.0.0.1 only). Used by the scripts sourcing this file.
# shellcheck disable=SC2034
STACK_HOST=127.0.0.1
KAFKA_PORT="${VITALS_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${VITALS_KAFKA_CONTROLLER_PORT:-19093}"
CLICKHOUSE_HTTP_PORT="${VITALS_CLICKHOUSE_HTTP_PORT:-18123}"
CLICKHOUSE_PORT="${VITALS_CLICKHOUSE_PORT:-19000}"
PG_PORT="${VITALS_PG_PORT:-15432}"
CHDB_PORT="${VITALS_CHDB_PORT:-18124}"
# The secure listeners of `stack.sh up --secure`, beside the plain ones (derived from
# the plain ports unless set, so that stacks with their own ports do not collide).
KAFKA_SECURE_PORT="${VITALS_KAFKA_SECURE_PORT:-$(( KAFKA_PORT + 2 ))}"
CLICKHOUSE_SECURE_PORT="${VITALS_CLICKHOUSE_SECURE_PORT:-$(( CLICKHOUSE_PORT + 440 ))}"
CLICKHOUSE_HTTPS_PORT="${VITALS_CLICKHOUSE_HTTPS_PORT:-$(( CLICKHOUSE_HTTP_PORT + 320 ))}"
TLS_DIR="$STACK_DIR/tls"

# secure_wanted: the stack was brought up with --secure (the marker stays until
# `stack.sh up --plain`): Kafka gets a SASL_SSL listener, ClickHouse its secure native and
# HTTPS ports and a password user, PostgreSQL TLS; certificates from deploy/tls.sh.
secure_wanted() { [[ -f "$STACK_DIR/secure" ]]; }

# ClickHouse settings the single server (clickhouse.sh) and the cluster (cluster.sh) share.
CH_DATABASE="${VITALS_CLICKHOUSE_DATABASE:-vitals}"
CH_ANALYST_PASSWORD="${VITALS_CLICKHOUSE_ANALYST_PASSWORD:-analyst}"
CH_SERVER_BIN="${VITALS_CLICKHOUSE_SERVER_BIN:-/usr/sbin/clickhouse-server}"

# Seconds to wait for a service to answer after start / to exit after SIGTERM.
# shellcheck disable=SC2034
START_TIMEOUT="${VITALS_STACK_START_TIMEOUT:-120}"
STOP_TIMEOUT="${VITALS_STACK_STOP_TIMEOUT:-60}"

log()  { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die()  { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" == 0 ]]; }

# Run a command as root (directly, or via sudo when we are not root).
as_root() {
  if is_root; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "need root to run: $*"
  fi
}

# now_s: integer seconds since the epoch.
now_s() { date +%s; }

# port_open HOST PORT: true if something accepts TCP connections there.
port_open() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# pid_alive PID [CMDLINE_SUBSTRING]: the process exists (and is not a zombie) and,
# if given, its command line contains the substring (guards against pid reuse).
pid_alive() {
  local pid="$1" want="${2:-}" state cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/stat" ]] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z && "$state" != X ]] || return 1
  if [[ -n "$want" ]]; then
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmdline" == *"$want"* ]] || return 1
  fi
  return 0
}

# read_pidfile FILE: print the pid stored in FILE (first line), or nothing.
read_pidfile() {
  [[ -s "$1" ]] && head -n1 "$1" | tr -dc '0-9' || true
}

# find_pid_by_cmdline SUBSTRING: pid of a process whose command line contains the
# (unique, absolute-path) substring. Used to recover from a lost pid file.
find_pid_by_cmdline() {
  local want="$1" d pid cmdline
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
    # braces: a process that exits meanwhile fails the redirection itself
    cmdline="$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null || true)"
    [[ -n "$cmdline" && "$cmdline" == *"$want"* ]] || continue
    # skip shells/tools that merely mention the path
    case "$cmdline" in bash*|*/bash\ *|grep*|tail*|less*|cat\ *) continue ;; esac
    if pid_alive "$pid"; then echo "$pid"; return 0; fi
  done
  return 1
}

# show_log_tail NAME FILE...: print the last lines of the given log files.
show_log_tail() {
  local name="$1" f; shift
  for f in "$@"; do
    [[ -s "$f" ]] || continue
    printf '[stack] ---- %s: last 40 lines of %s ----\n' "$name" "$f" >&2
    tail -n 40 "$f" >&2 || true
    printf '[stack] ---- end of %s ----\n' "$f" >&2
  done
}

# wait_until NAME TIMEOUT PID LOGFILES CHECK_CMD...
#   Polls CHECK_CMD until it succeeds. Fails (showing the logs) on timeout or when
#   PID (if not empty) dies. LOGFILES is a space separated list.
wait_until() {
  local name="$1" timeout="$2" pid="$3" logs="$4"; shift 4
  local deadline=$(( $(now_s) + timeout ))
  while true; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
      # shellcheck disable=SC2086
      show_log_tail "$name" $logs
      die "$name: process $pid exited while waiting for it to answer (see logs above)"
    fi
    if (( $(now_s) >= deadline )); then
      # shellcheck disable=SC2086
      show_log_tail "$name" $logs
      die "$name: did not answer within ${timeout}s (check: $*)"
    fi
    sleep 0.5
  done
}

# wait_running NAME LOGFILES CHECK_CMD...: wait_until for a service script's process
# (its current_pid, if it has one yet).
wait_running() {
  local name="$1" logs="$2" pid; shift 2
  pid="$(current_pid || true)"
  wait_until "$name" "$START_TIMEOUT" "$pid" "$logs" "$@"
}

# stop_pid NAME PID [TIMEOUT]: SIGTERM, wait up to TIMEOUT s, then SIGKILL and wait.
stop_pid() {
  local name="$1" pid="$2" timeout="${3:-$STOP_TIMEOUT}" deadline
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( $(now_s) + timeout ))
  while pid_alive "$pid"; do
    if (( $(now_s) >= deadline )); then
      warn "$name: pid $pid still alive ${timeout}s after SIGTERM, sending SIGKILL"
      kill_pid "$name" "$pid"
      break
    fi
    sleep 0.2
  done
}

# kill_pid NAME PID: SIGKILL, then wait up to 15 s until it is gone.
kill_pid() {
  local name="$1" pid="$2" deadline
  kill -KILL "$pid" 2>/dev/null || true
  deadline=$(( $(now_s) + 15 ))
  while pid_alive "$pid"; do
    (( $(now_s) >= deadline )) && die "$name: pid $pid survived SIGKILL"
    sleep 0.1
  done
}

# spawn PIDFILE LOGFILE CMD...: start CMD detached (own session, stdin from
# /dev/null, stdout+stderr appended to LOGFILE) and record its exact pid.
spawn() {
  local pidfile="$1" logfile="$2"; shift 2
  rm -f "$pidfile"
  # The inner shell writes its own pid and then exec's the server, so the recorded
  # pid is the server process itself (setsid may or may not fork; this is immune).
  # 9>&-: don't let the daemon inherit the stack lock (see stack.sh)
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" \
    </dev/null >>"$logfile" 2>&1 9>&- &
  local _
  for _ in $(seq 1 50); do
    [[ -s "$pidfile" ]] && break
    sleep 0.1
  done
  [[ -s "$pidfile" ]] || die "could not start: $* (no pid file $pidfile)"
}

# sed_escape STRING: escape for use in the replacement part of s|...|...|
sed_escape() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

# ---------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------

_APT_UPDATED=0
apt_update_once() {
  (( _APT_UPDATED )) && return 0
  log "apt: running apt-get update"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
  _APT_UPDATED=1
}

# apt_has_candidate PKG: apt knows an installable version of PKG.
apt_has_candidate() {
  local c
  c="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')"
  [[ -n "$c" && "$c" != "(none)" ]]
}

# apt_install PKG...: install packages non-interactively WITHOUT letting their
# maintainer scripts start services (we run our own instances on our own ports).
# A temporary /usr/sbin/policy-rc.d returning 101 makes invoke-rc.d skip the start;
# an already present policy-rc.d is left untouched.
apt_install() {
  local p need_update=0
  for p in "$@"; do apt_has_candidate "$p" || need_update=1; done
  (( need_update )) && apt_update_once
  local created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    as_root sh -c 'printf "#!/bin/sh\n# temporary, created by vitals deploy/lib.sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    created_policy=1
  fi
  log "apt: installing $*"
  local rc=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    install -y -q --no-install-recommends "$@" >"$STACK_DIR/apt-install.log" 2>&1 || rc=$?
  if (( rc != 0 )) && (( ! _APT_UPDATED )); then
    # stale package lists on a fresh machine: refresh once and retry
    apt_update_once
    rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
      install -y -q --no-install-recommends "$@" >"$STACK_DIR/apt-install.log" 2>&1 || rc=$?
  fi
  if (( created_policy )); then as_root rm -f /usr/sbin/policy-rc.d; fi
  if (( rc != 0 )); then
    show_log_tail apt "$STACK_DIR/apt-install.log"
    die "apt-get install $* failed (rc=$rc)"
  fi
}

# ---------------------------------------------------------------------------
# Java and Maven (Kafka and ZooKeeper are fetched from Maven Central)
# ---------------------------------------------------------------------------

DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

ensure_java_maven() {
  local pkgs=()
  command -v java >/dev/null 2>&1 || pkgs+=(openjdk-17-jre-headless)
  command -v mvn  >/dev/null 2>&1 || pkgs+=(maven)
  if (( ${#pkgs[@]} )); then apt_install "${pkgs[@]}"; fi
}

# mvn_fetch POM OUTDIR LOGFILE [MAVEN_ARGS...]: copy the POM's runtime dependencies to
# OUTDIR (atomically: into a temp dir first, then renamed), Maven's output to LOGFILE.
mvn_fetch() {
  local pom="$1" out="$2" logfile="$3"; shift 3
  local tmp="$out.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if mvn -B -q -f "$pom" "$@" "$DEP_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$logfile" 2>&1; then
    rm -rf "$out"
    mv "$tmp" "$out"
    return 0
  fi
  rm -rf "$tmp"
  return 1
}

# kafka_topic_properties RF MIN_ISR: the server.properties lines of Kafka's topics
# (kafka.sh's one node, cluster.sh's three): every topic, the internal ones too, on RF
# brokers, a write acknowledged by MIN_ISR; topics are made by vitals migrate only.
kafka_topic_properties() {
  cat <<EOF
num.partitions=6
default.replication.factor=$1
min.insync.replicas=$2
offsets.topic.replication.factor=$1
transaction.state.log.replication.factor=$1
transaction.state.log.min.isr=$2
share.coordinator.state.topic.replication.factor=$1
share.coordinator.state.topic.min.isr=$2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
EOF
}

# ---------------------------------------------------------------------------
# Per-service script dispatch (used by kafka.sh, clickhouse.sh, postgres.sh).
# The service script defines svc_install, svc_start, svc_stop, svc_status,
# svc_wait, svc_version (and optionally svc_logs) and then calls service_main "$@".
# ---------------------------------------------------------------------------
service_main() {
  local cmd="${1:-}"
  case "$cmd" in
    install) svc_install ;;
    start|up) svc_install; svc_start ;;
    stop|down) svc_stop ;;
    restart) svc_stop; svc_install; svc_start ;;
    status) svc_status ;;
    wait) svc_wait ;;
    version) svc_version ;;
    logs) svc_logs ;;
    *) echo "usage: $0 {install|start|stop|restart|status|wait|version|logs}" >&2; exit 2 ;;
  esac
}

# status_line NAME STATE ADDR PID DATA VERSION
status_line() {
  printf '[stack] %-10s %-8s %-22s pid=%-8s data=%s version=%s\n' "$@"
}
