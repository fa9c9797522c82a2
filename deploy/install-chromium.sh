#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium` package) for the dashboard's
# browser test, if it is not there yet, and prints the browser's path.
#
#   deploy/install-chromium.sh          install if missing; print the path
#
# Idempotent: a machine that has /usr/bin/chromium (or $VITALS_CHROMIUM) is left
# alone. The Makefile's test target calls it, because CI starts on a bare machine.
# The browser test (internal/integration/dashboard_test.go) finds the browser
# through VITALS_CHROMIUM, else chromium on PATH.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

want="${VITALS_CHROMIUM:-}"
if [[ -n "$want" && -x "$want" ]]; then
  echo "$want"; exit 0
fi
if command -v chromium >/dev/null 2>&1; then
  command -v chromium; exit 0
fi
# Log to stderr: stdout carries only the path.
apt_install chromium >&2
command -v chromium >/dev/null 2>&1 || die "chromium: not on PATH after apt-get install chromium"
command -v chromium
