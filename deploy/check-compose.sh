#!/usr/bin/env bash
# Validate docker-compose.yml without a Docker engine, using Debian's docker-compose
# (1.29.x), installed with apt if missing.
#   deploy/check-compose.sh [extra docker-compose args]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! command -v docker-compose >/dev/null 2>&1; then
  apt_install docker-compose
fi
cd "$REPO_ROOT" || exit 1
log "compose: $(docker-compose version --short 2>/dev/null || docker-compose --version)"
docker-compose -f docker-compose.yml "$@" config -q
log "compose: docker-compose.yml is valid"
