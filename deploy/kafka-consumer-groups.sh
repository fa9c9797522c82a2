#!/usr/bin/env bash
# kafka-consumer-groups against the local broker, e.g.
#   deploy/kafka-consumer-groups.sh --describe --all-groups
exec bash "$(dirname "${BASH_SOURCE[0]}")/kafka-tool.sh" consumer-groups "$@"
