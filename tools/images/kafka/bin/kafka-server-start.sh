#!/bin/sh
# Starts a broker/controller: `kafka-server-start.sh server.properties [--override k=v]...`,
# as the distribution's script (a 1 GiB heap unless KAFKA_HEAP_OPTS says otherwise).
set -eu
if [ $# -lt 1 ]; then
  echo "USAGE: $0 server.properties [--override property=value]*" >&2
  exit 1
fi
base_dir=$(cd "$(dirname "$0")/.." && pwd)
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=$base_dir/config/log4j2.properties}"
: "${KAFKA_HEAP_OPTS:=-Xmx1G -Xms1G}"
export KAFKA_LOG4J_OPTS KAFKA_HEAP_OPTS
exec "$base_dir/bin/kafka-run-class.sh" kafka.Kafka "$@"
