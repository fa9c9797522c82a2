#!/usr/bin/env bash
# Run a Kafka command line tool against the local broker (deploy/kafka.sh).
#
#   deploy/kafka-tool.sh TOOL|CLASS [ARGS...]
#
# TOOL is a short name (like the kafka-*.sh scripts of the Kafka distribution):
#   topics            org.apache.kafka.tools.TopicCommand
#   consumer-groups   org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
#   console-producer  org.apache.kafka.tools.ConsoleProducer
#   console-consumer  org.apache.kafka.tools.consumer.ConsoleConsumer
#   get-offsets       org.apache.kafka.tools.GetOffsetShell
#   delete-records    org.apache.kafka.tools.DeleteRecordsCommand
#   log-dirs          org.apache.kafka.tools.LogDirsCommand
#   metadata-quorum   org.apache.kafka.tools.MetadataQuorumCommand
#   features          org.apache.kafka.tools.FeatureCommand
#   transactions      org.apache.kafka.tools.TransactionsCommand
#   groups            org.apache.kafka.tools.GroupsCommand
#   configs           org.apache.kafka.tools.ConfigCommand (e.g. SCRAM users)
#   broker-api-versions org.apache.kafka.tools.BrokerApiVersionsCommand
#   producer-perf-test  org.apache.kafka.tools.ProducerPerformance   (pass --producer-props bootstrap.servers=...)
#   consumer-perf-test  org.apache.kafka.tools.ConsumerPerformance
#   storage           kafka.tools.StorageTool (broker classpath)
# For the short names that take it, `--bootstrap-server 127.0.0.1:$VITALS_KAFKA_PORT`
# is added unless you pass --bootstrap-server yourself. A fully qualified CLASS is run
# as is (classes under kafka.* use the broker classpath, others the tools classpath).
#
# Examples:
#   deploy/kafka-tool.sh topics --list
#   deploy/kafka-tool.sh topics --create --topic test --partitions 6
#   deploy/kafka-tool.sh consumer-groups --describe --all-groups
#   deploy/kafka-tool.sh console-consumer --topic test --from-beginning --max-messages 10
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K_DIR="$STACK_DIR/kafka"
[[ $# -ge 1 ]] || { sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
tool="$1"; shift

add_bootstrap=1
case "$tool" in
  topics)              cls=org.apache.kafka.tools.TopicCommand ;;
  consumer-groups)     cls=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  console-producer)    cls=org.apache.kafka.tools.ConsoleProducer ;;
  console-consumer)    cls=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  get-offsets)         cls=org.apache.kafka.tools.GetOffsetShell ;;
  delete-records)      cls=org.apache.kafka.tools.DeleteRecordsCommand ;;
  log-dirs)            cls=org.apache.kafka.tools.LogDirsCommand ;;
  metadata-quorum)     cls=org.apache.kafka.tools.MetadataQuorumCommand ;;
  features)            cls=org.apache.kafka.tools.FeatureCommand ;;
  transactions)        cls=org.apache.kafka.tools.TransactionsCommand ;;
  groups)              cls=org.apache.kafka.tools.GroupsCommand ;;
  configs)             cls=org.apache.kafka.tools.ConfigCommand ;;
  broker-api-versions) cls=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
  producer-perf-test)  cls=org.apache.kafka.tools.ProducerPerformance; add_bootstrap=0 ;;
  consumer-perf-test)  cls=org.apache.kafka.tools.ConsumerPerformance ;;
  storage)             cls=kafka.tools.StorageTool; add_bootstrap=0 ;;
  *.*)                 cls="$tool"; add_bootstrap=0 ;;
  *) die "unknown Kafka tool '$tool' (run $0 without arguments for the list)" ;;
esac

if [[ "$cls" == kafka.* ]]; then cp_dir="$K_DIR/lib"; else cp_dir="$K_DIR/tools-lib"; fi
if [[ ! -f "$cp_dir/.fetched" ]] && ! ls "$cp_dir"/.fetched* >/dev/null 2>&1; then
  bash "$DEPLOY_DIR/kafka.sh" install >&2
fi

args=("$@")
if (( add_bootstrap )); then
  have=0
  for a in "$@"; do [[ "$a" == --bootstrap-server* ]] && have=1; done
  (( have )) || args=(--bootstrap-server "$STACK_HOST:$KAFKA_PORT" "${args[@]}")
fi

jvm=(-Xmx512M -Djava.awt.headless=true -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/tools-log4j2.xml")
# short-lived JVM (readiness probe): skip the optimising JIT for a faster start
[[ "${VITALS_KAFKA_TOOL_QUICK:-0}" == 1 ]] && jvm+=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC)
# shellcheck disable=SC2086
exec java "${jvm[@]}" ${KAFKA_TOOL_OPTS:-} -cp "$cp_dir/*" "$cls" "${args[@]}"
