#!/usr/bin/env bash
# Resolves a Kafka broker (KRaft, no ZooKeeper) from Maven Central into a cache outside
# the repo: ${PHASESHIFT_CACHE:-~/.cache/phaseshift}/kafka-<version>/lib/*.jar, run
# with `java -cp 'lib/*' kafka.Kafka`. Reused while tools/kafka/pom.xml is unchanged (its
# sha256 is kept in pom.sha256 beside lib/); prints the directory last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${PHASESHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/phaseshift}
dir="$cache/kafka-${KAFKA_VERSION}"
pom_sum=$(sha256sum "$here/kafka/pom.xml" | cut -d' ' -f1)
if [ ! -f "$dir/lib/kafka_2.13-${KAFKA_VERSION}.jar" ] \
  || [ "$(cat "$dir/pom.sha256" 2>/dev/null)" != "$pom_sum" ]; then
  for tool in java mvn; do
    command -v "$tool" >/dev/null || { echo "tools/kafka.sh: no '$tool' on PATH (a JRE >= 17 and Maven)" >&2; exit 1; }
  done
  echo "resolving Kafka ${KAFKA_VERSION} from Maven Central..." >&2
  rm -rf "$dir.tmp"
  mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir.tmp/lib" >&2
  echo "$pom_sum" >"$dir.tmp/pom.sha256"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
fi
echo "$dir"
