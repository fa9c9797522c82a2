#!/usr/bin/env bash
# kafka-topics against the local broker, e.g. deploy/kafka-topics.sh --list
exec bash "$(dirname "${BASH_SOURCE[0]}")/kafka-tool.sh" topics "$@"
