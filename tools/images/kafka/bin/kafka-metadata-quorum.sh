#!/bin/sh
# The KRaft quorum's leader, voters and lag (`kafka-metadata-quorum.sh --bootstrap-server localhost:9092 describe --status`).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.MetadataQuorumCommand "$@"
