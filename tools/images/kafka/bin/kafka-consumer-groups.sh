#!/bin/sh
# Consumer groups, their members and lag (`kafka-consumer-groups.sh --bootstrap-server localhost:9092 --describe --all-groups`).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@"
