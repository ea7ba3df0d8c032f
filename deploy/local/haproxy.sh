#!/usr/bin/env bash
# One address in front of several collectors (or gateways): Debian's HAProxy, installed with
# apt when missing (as root), configured for the given backends and run in the foreground.
#
#   haproxy.sh start --port N --backend HOST:PORT [--backend HOST:PORT ...] [--data DIR]
#
# A backend is sent traffic while its /readyz answers 200 (checked every second); a request
# whose connection to a backend failed goes to another one (it never reached a collector, so
# resending it is safe; a resent batch keeps its messageIds anyway).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

install() {
  if command -v haproxy >/dev/null 2>&1; then return 0; fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "HAProxy is missing: sudo apt-get install haproxy" >&2
    exit 1
  fi
  echo "installing Debian's haproxy" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null; }
}

start() {
  local port=8080 data="$root/.local/haproxy" backends=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      --port) port=$2; shift 2 ;;
      --backend) backends+=("$2"); shift 2 ;;
      --data) data=$2; shift 2 ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  [[ ${#backends[@]} -gt 0 ]] || { echo "at least one --backend" >&2; exit 2; }
  install
  mkdir -p "$data"
  {
    cat <<CFG
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option redispatch
    retries 3
    retry-on conn-failure empty-response
frontend sextant
    bind 127.0.0.1:$port
    default_backend parts
backend parts
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 1
CFG
    local n=0
    for backend in "${backends[@]}"; do
      n=$(( n + 1 ))
      echo "    server part-$n $backend check"
    done
  } > "$data/haproxy.cfg"
  exec haproxy -W -db -f "$data/haproxy.cfg"
}

case ${1:-} in
  start) shift; start "$@" ;;
  install) install ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
