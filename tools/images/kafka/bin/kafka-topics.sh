#!/bin/sh
# Creates, lists and describes topics (`kafka-topics.sh --bootstrap-server localhost:9092 --describe`).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.TopicCommand "$@"
