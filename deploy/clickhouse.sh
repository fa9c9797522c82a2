#!/usr/bin/env bash
# Local ClickHouse server (Debian bookworm's clickhouse-server 18.16), no Docker.
#
#   deploy/clickhouse.sh {install|start|stop|restart|status|wait|version|logs}
#
# We never use the package's init script / default instance (/etc/clickhouse-server,
# ports 8123/9000). Our own instance runs as the invoking user with configs rendered
# from deploy/clickhouse/{config,users}.xml into $VITALS_STACK_DIR/clickhouse/ and all
# data under that directory, listening on 127.0.0.1:$VITALS_CLICKHOUSE_PORT (native)
# and 127.0.0.1:$VITALS_CLICKHOUSE_HTTP_PORT (HTTP).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CH_DIR="$STACK_DIR/clickhouse"
CH_CONF="$CH_DIR/config.xml"
CH_USERS="$CH_DIR/users.xml"
CH_LOGS="$CH_DIR/logs"
CH_PIDFILE="$CH_DIR/clickhouse.pid"
CH_OUT="$CH_LOGS/clickhouse.out"
CH_DATABASE="${VITALS_CLICKHOUSE_DATABASE:-vitals}"
CH_ANALYST_PASSWORD="${VITALS_CLICKHOUSE_ANALYST_PASSWORD:-analyst}"
CH_SERVER_BIN="${VITALS_CLICKHOUSE_SERVER_BIN:-/usr/sbin/clickhouse-server}"

svc_install() {
  if [[ -x "$CH_SERVER_BIN" ]] && command -v clickhouse-client >/dev/null 2>&1 \
     && command -v curl >/dev/null 2>&1; then
    return 0
  fi
  local pkgs=(clickhouse-server clickhouse-client)
  command -v curl >/dev/null 2>&1 || pkgs+=(curl)
  # The package's postinst would `invoke-rc.d clickhouse-server start` (its own
  # instance on 8123/9000); apt_install blocks that with a policy-rc.d. Our instance
  # uses other ports and files, so even a running packaged instance would not clash.
  apt_install "${pkgs[@]}"
  [[ -x "$CH_SERVER_BIN" ]] || die "clickhouse: $CH_SERVER_BIN missing after install"
}

render_config() {
  mkdir -p "$CH_DIR"/{data,tmp,user_files,format_schemas,logs}
  local sha
  sha="$(printf '%s' "$CH_ANALYST_PASSWORD" | sha256sum | awk '{print $1}')"
  sed -e "s|@CH_DIR@|$(sed_escape "$CH_DIR")|g" \
      -e "s|@HTTP_PORT@|$CLICKHOUSE_HTTP_PORT|g" \
      -e "s|@TCP_PORT@|$CLICKHOUSE_PORT|g" \
      "$DEPLOY_DIR/clickhouse/config.xml" >"$CH_CONF.tmp"
  sed -e "s|@ANALYST_PASSWORD_SHA256@|$sha|g" \
      "$DEPLOY_DIR/clickhouse/users.xml" >"$CH_USERS.tmp"
  mv "$CH_CONF.tmp" "$CH_CONF"
  mv "$CH_USERS.tmp" "$CH_USERS"
}

current_pid() {
  local pid
  pid="$(read_pidfile "$CH_PIDFILE")"
  if [[ -n "$pid" ]] && pid_alive "$pid" clickhouse; then echo "$pid"; return 0; fi
  if pid="$(find_pid_by_cmdline "--config-file=$CH_CONF")"; then
    echo "$pid" >"$CH_PIDFILE"; echo "$pid"; return 0
  fi
  return 1
}

ch_client() {
  clickhouse-client --host "$STACK_HOST" --port "$CLICKHOUSE_PORT" "$@"
}

ch_ready() {
  [[ "$(curl -sf --max-time 2 "http://$STACK_HOST:$CLICKHOUSE_HTTP_PORT/ping")" == "Ok." ]] || return 1
  ch_client -q 'SELECT version()' >/dev/null
}

svc_wait() {
  local pid; pid="$(current_pid || true)"
  wait_until clickhouse "$START_TIMEOUT" "$pid" \
    "$CH_LOGS/clickhouse-server.err.log $CH_LOGS/clickhouse-server.log $CH_OUT" ch_ready
}

bootstrap() {
  ch_client -q "CREATE DATABASE IF NOT EXISTS $CH_DATABASE" \
    || die "clickhouse: could not create database $CH_DATABASE"
}

svc_start() {
  local pid
  if pid="$(current_pid)"; then
    svc_wait
    bootstrap
    log "clickhouse: already running on $STACK_HOST:$CLICKHOUSE_PORT (http $CLICKHOUSE_HTTP_PORT, pid $pid)"
    return 0
  fi
  local p
  for p in "$CLICKHOUSE_PORT" "$CLICKHOUSE_HTTP_PORT"; do
    if port_open "$STACK_HOST" "$p"; then
      die "clickhouse: port $STACK_HOST:$p is already in use by another process (set VITALS_CLICKHOUSE_PORT / VITALS_CLICKHOUSE_HTTP_PORT)"
    fi
  done
  render_config
  local t0; t0="$(now_s)"
  printf '\n==== %s starting clickhouse-server ====\n' "$(date -Is)" >>"$CH_OUT"
  # Foreground process (no --daemon) detached by spawn(): the recorded pid is the server.
  # Run from $CH_DIR so that any relative path the server derives stays inside it.
  ( cd "$CH_DIR" && spawn "$CH_PIDFILE" "$CH_OUT" "$CH_SERVER_BIN" --config-file="$CH_CONF" )
  pid="$(read_pidfile "$CH_PIDFILE")"
  wait_until clickhouse "$START_TIMEOUT" "$pid" \
    "$CH_LOGS/clickhouse-server.err.log $CH_LOGS/clickhouse-server.log $CH_OUT" ch_ready
  bootstrap
  log "clickhouse: started on $STACK_HOST:$CLICKHOUSE_PORT (http $CLICKHOUSE_HTTP_PORT, pid $pid) in $(( $(now_s) - t0 ))s"
}

svc_stop() {
  local pid
  if ! pid="$(current_pid)"; then
    rm -f "$CH_PIDFILE"
    log "clickhouse: not running"
    return 0
  fi
  log "clickhouse: stopping pid $pid (SIGTERM)"
  stop_pid clickhouse "$pid" "$STOP_TIMEOUT"
  rm -f "$CH_PIDFILE"
  log "clickhouse: stopped"
}

svc_version() {
  if [[ -x "$CH_SERVER_BIN" ]]; then
    dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null || echo unknown
  else
    echo not-installed
  fi
}

svc_status() {
  local pid state=stopped rc=3
  if pid="$(current_pid)"; then state=running; rc=0; else pid=-; fi
  status_line clickhouse "$state" "$STACK_HOST:$CLICKHOUSE_PORT" "$pid" "$CH_DIR/data" \
    "$(svc_version) (http $STACK_HOST:$CLICKHOUSE_HTTP_PORT)"
  return $rc
}

svc_logs() {
  tail -n 100 "$CH_LOGS/clickhouse-server.err.log" "$CH_LOGS/clickhouse-server.log" "$CH_OUT" 2>/dev/null || true
}

service_main "$@"
