#!/bin/sh
# Formats or inspects a KRaft log directory (`kafka-storage.sh format -t <id> -c <file>`).
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
