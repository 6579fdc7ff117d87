#!/bin/sh
# Runs a Kafka main class on the jars in /opt/kafka/libs, taking the heap, JVM and log4j
# options from the environment variables the distribution's kafka-run-class.sh reads.
set -eu
base_dir=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 1 ]; then
  echo "USAGE: $0 classname [opts]" >&2
  exit 1
fi
: "${KAFKA_HEAP_OPTS:=-Xmx256M}"
: "${KAFKA_JVM_PERFORMANCE_OPTS:=-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.properties}"
# The option variables hold several words each: split on purpose.
# shellcheck disable=SC2086
exec java $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS ${KAFKA_JMX_OPTS:-} $KAFKA_LOG4J_OPTS \
  ${KAFKA_OPTS:-} -cp "$base_dir/libs/*" "$@"
