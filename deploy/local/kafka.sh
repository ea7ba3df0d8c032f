#!/usr/bin/env bash
# A local Apache Kafka (KRaft, combined broker+controller nodes) without Docker.
#
#   kafka.sh fetch                          resolve Kafka from Maven Central into .local/ (once)
#   kafka.sh start [--port N] [--data DIR]  format DIR if new, run the broker in the foreground
#   kafka.sh start ... --node ID --voters V --cluster-id C
#                                           one node of a cluster (V: 1@127.0.0.1:9093,2@...)
#   kafka.sh cluster [--port N] [--data DIR] [--nodes 3]
#                                           a cluster of nodes on ports N, N+2, N+4 (each
#                                           controller on the port after its broker's), in the
#                                           foreground; Ctrl-C stops every node
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

write_properties() {  # $1 data dir, $2 port, $3 node id, $4 voters, $5 replicas of internal topics
  local data=$1 port=$2 controller=$(( $2 + 1 )) node=$3 voters=$4 replicas=$5
  local min_isr=$(( replicas > 2 ? 2 : 1 ))
  cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=12
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
default.replication.factor=$replicas
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=134217728
# A node killed with -9 is fenced after this long without a heartbeat, and its partitions'
# leadership moves to an in-sync replica (Kafka's default is 9 s).
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
PROPS
}

random_uuid() {
  java -cp "$lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1
}

start() {
  local port=9092 data="$root/.local/kafka-data" node=1 voters="" cluster_id=""
  while [[ $# -gt 0 ]]; do
    case $1 in
      --port) port=$2; shift 2 ;;
      --data) data=$2; shift 2 ;;
      --node) node=$2; shift 2 ;;
      --voters) voters=$2; shift 2 ;;
      --cluster-id) cluster_id=$2; shift 2 ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  fetch
  mkdir -p "$data"
  local nodes=1
  if [[ -z $voters ]]; then
    voters="$node@127.0.0.1:$(( port + 1 ))"
  else
    nodes=$(tr ',' '\n' <<< "$voters" | wc -l)
  fi
  # Internal topics (consumer offsets, transactions) get three replicas on a cluster of
  # three or more, as Sextant's own topics do (sextant.core.kafka.ensure_topics).
  write_properties "$data" "$port" "$node" "$voters" $(( nodes < 3 ? nodes : 3 ))
  if [[ ! -f "$data/logs/meta.properties" ]]; then
    [[ -n $cluster_id ]] || cluster_id=$(random_uuid)
    java -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$lib/*" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$data/server.properties" >&2
  fi
  java_run kafka.Kafka "$data/server.properties"
}

# Every node of a cluster: a child process of this script each, stopped together.
cluster() {
  local port=9092 data="$root/.local/kafka-cluster" nodes=3
  while [[ $# -gt 0 ]]; do
    case $1 in
      --port) port=$2; shift 2 ;;
      --data) data=$2; shift 2 ;;
      --nodes) nodes=$2; shift 2 ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  fetch
  mkdir -p "$data"
  local id_file="$data/cluster-id"
  [[ -f $id_file ]] || random_uuid > "$id_file"
  local voters="" bootstrap="" n
  for (( n = 1; n <= nodes; n++ )); do
    local p=$(( port + 2 * (n - 1) ))
    voters+="${voters:+,}$n@127.0.0.1:$(( p + 1 ))"
    bootstrap+="${bootstrap:+,}127.0.0.1:$p"
  done
  local pids=()
  for (( n = 1; n <= nodes; n++ )); do
    KAFKA_HEAP=${KAFKA_HEAP:-512m} bash "$here/kafka.sh" start --port $(( port + 2 * (n - 1) )) \
      --data "$data/node-$n" --node "$n" --voters "$voters" --cluster-id "$(cat "$id_file")" &
    pids+=($!)
  done
  trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM
  echo "Kafka cluster of $nodes nodes: SEXTANT_KAFKA_BOOTSTRAP=$bootstrap" >&2
  wait
}

case ${1:-} in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  cluster) shift; cluster "$@" ;;
  tool) shift; fetch; java_run "$@" ;;
  version) echo "$version" ;;
  *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
