#!/usr/bin/env bash
# A local Apache Kafka (KRaft, one combined broker+controller) without Docker.
#
#   kafka.sh fetch                          resolve Kafka from Maven Central into .local/ (once)
#   kafka.sh start [--port N] [--data DIR]  format DIR if new, run the broker in the foreground
#   kafka.sh tool CLASS [ARGS...]           run a Kafka tool class (e.g. ProducerPerformance)
#   kafka.sh version                        the Kafka version this script runs
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/deploy/local"
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka-pom.xml")
lib="$root/.local/kafka-$version/lib"

fetch() {
  if [[ -f "$lib/.complete" ]]; then return 0; fi
  echo "fetching Apache Kafka $version from Maven Central into $lib" >&2
  rm -rf "$lib" && mkdir -p "$lib"
  mvn -q -B -f "$here/kafka-pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime >&2
  touch "$lib/.complete"
}

java_run() {
  exec java -Xms256m -Xmx${KAFKA_HEAP:-768m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$lib/*" "$@"
}

write_properties() {  # $1 data dir, $2 port
  local data=$1 port=$2 controller=$(( $2 + 1 ))
  cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=12
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=134217728
PROPS
}

start() {
  local port=9092 data="$root/.local/kafka-data"
  while [[ $# -gt 0 ]]; do
    case $1 in
      --port) port=$2; shift 2 ;;
      --data) data=$2; shift 2 ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  fetch
  mkdir -p "$data"
  write_properties "$data" "$port"
  if [[ ! -f "$data/logs/meta.properties" ]]; then
    local cluster_id
    cluster_id=$(java -cp "$lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$lib/*" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$data/server.properties" >&2
  fi
  java_run kafka.Kafka "$data/server.properties"
}

case ${1:-} in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  tool) shift; fetch; java_run "$@" ;;
  version) echo "$version" ;;
  *) sed -n '2,8p' "$0" >&2; exit 2 ;;
esac
