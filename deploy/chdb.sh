#!/usr/bin/env bash
# A current ClickHouse engine beside the local 18.16 server: chDB from PyPI
# (in-process ClickHouse 26.9) behind deploy/chdb/bridge.py, which speaks the
# part of ClickHouse's HTTP interface that clickhouse-go uses. `make test`
# runs every statement of the project on both (docs/clickhouse.md).
#
#   deploy/chdb.sh {install|start|stop|restart|status|wait|version|logs}
#
# install: a virtual environment in $VITALS_STACK_DIR/chdb/venv with the pinned
# chdb package (it pulls chdb-core, the engine, about 180 MB, and pandas and
# pyarrow); skipped when that version is already there.
# Listens on 127.0.0.1:$VITALS_CHDB_PORT (default 18124); data in
# $VITALS_STACK_DIR/chdb/data.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHDB_VERSION=4.4.0 # embeds chdb-core 26.9.0 = ClickHouse 26.9
CHDB_DIR="$STACK_DIR/chdb"
CHDB_VENV="$CHDB_DIR/venv"
CHDB_PY="$CHDB_VENV/bin/python"
CHDB_DATA="$CHDB_DIR/data"
CHDB_PIDFILE="$CHDB_DIR/bridge.pid"
CHDB_OUT="$CHDB_DIR/bridge.out"
CHDB_BRIDGE="$DEPLOY_DIR/chdb/bridge.py"

installed_version() {
  [[ -x "$CHDB_PY" ]] && "$CHDB_PY" -c 'import importlib.metadata as m; print(m.version("chdb"))' 2>/dev/null || true
}

svc_install() {
  [[ "$(installed_version)" == "$CHDB_VERSION" ]] && return 0
  local py; py="$(command -v python3 || true)"
  [[ -n "$py" ]] || die "chdb: python3 is required"
  mkdir -p "$CHDB_DIR"
  if [[ ! -x "$CHDB_PY" ]]; then
    log "chdb: creating the virtual environment $CHDB_VENV"
    "$py" -m venv "$CHDB_VENV" || die "chdb: python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  log "chdb: pip install chdb==$CHDB_VERSION (a 250 MB download with pandas and pyarrow, 900 MB installed; once)"
  local t0; t0="$(now_s)"
  if ! "$CHDB_PY" -m pip install -q --disable-pip-version-check "chdb==$CHDB_VERSION" >"$CHDB_DIR/pip.log" 2>&1; then
    show_log_tail chdb "$CHDB_DIR/pip.log"
    die "chdb: pip install failed"
  fi
  log "chdb: installed $(installed_version) in $(( $(now_s) - t0 ))s"
}

current_pid() {
  local pid
  pid="$(read_pidfile "$CHDB_PIDFILE")"
  if [[ -n "$pid" ]] && pid_alive "$pid" "$CHDB_BRIDGE"; then echo "$pid"; return 0; fi
  if pid="$(find_pid_by_cmdline "$CHDB_BRIDGE --data $CHDB_DATA")"; then
    echo "$pid" >"$CHDB_PIDFILE"; echo "$pid"; return 0
  fi
  return 1
}

chdb_ready() { curl -fsS "http://$STACK_HOST:$CHDB_PORT/ping" 2>/dev/null | grep -q '^Ok'; }

svc_wait() { wait_running chdb "$CHDB_OUT" chdb_ready; }

svc_start() {
  local pid
  if pid="$(current_pid)"; then
    svc_wait
    log "chdb: already running on $STACK_HOST:$CHDB_PORT (pid $pid)"
    return 0
  fi
  if port_open "$STACK_HOST" "$CHDB_PORT"; then
    die "chdb: port $STACK_HOST:$CHDB_PORT is already in use by another process (set VITALS_CHDB_PORT)"
  fi
  mkdir -p "$CHDB_DATA"
  local t0; t0="$(now_s)"
  printf '\n==== %s starting the chdb bridge ====\n' "$(date -Is)" >>"$CHDB_OUT"
  ( cd "$CHDB_DIR" && spawn "$CHDB_PIDFILE" "$CHDB_OUT" "$CHDB_PY" "$CHDB_BRIDGE" --data "$CHDB_DATA" --host "$STACK_HOST" --port "$CHDB_PORT" )
  pid="$(read_pidfile "$CHDB_PIDFILE")"
  wait_until chdb "$START_TIMEOUT" "$pid" "$CHDB_OUT" chdb_ready
  log "chdb: ClickHouse $(svc_version) (chDB) bridge on $STACK_HOST:$CHDB_PORT (pid $pid) in $(( $(now_s) - t0 ))s"
}

svc_stop() {
  local pid
  if ! pid="$(current_pid)"; then
    rm -f "$CHDB_PIDFILE"
    log "chdb: not running"
    return 0
  fi
  log "chdb: stopping pid $pid (SIGTERM)"
  stop_pid chdb "$pid" "$STOP_TIMEOUT"
  rm -f "$CHDB_PIDFILE"
  log "chdb: stopped"
}

# svc_version is the engine's ClickHouse version (chdb-core), or not-installed.
svc_version() {
  [[ -x "$CHDB_PY" ]] || { echo not-installed; return 0; }
  "$CHDB_PY" -c 'import importlib.metadata as m; print(m.version("chdb-core"))' 2>/dev/null || echo not-installed
}

svc_status() {
  local pid state=stopped rc=3
  if pid="$(current_pid)"; then state=running; rc=0; else pid=-; fi
  status_line chdb "$state" "$STACK_HOST:$CHDB_PORT" "$pid" "$CHDB_DATA" "$(svc_version)"
  return $rc
}

svc_logs() { tail -n 100 "$CHDB_OUT" 2>/dev/null || true; }

service_main "$@"
