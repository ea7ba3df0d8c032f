#!/usr/bin/env bash
# kustomize, built from the Go module proxy into .local/bin (once), to render deploy/k8s.
#
#   kustomize.sh fetch          build it unless .local/bin/kustomize is there
#   kustomize.sh build DIR      kustomize build DIR (fetching first)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version=v5.7.1
bin="$root/.local/bin/kustomize"

fetch() {
  if [[ -x $bin ]] && "$bin" version 2>/dev/null | grep -q "$version"; then return 0; fi
  if ! command -v go >/dev/null 2>&1; then
    echo "kustomize: Go is missing (needed once, to build kustomize $version)" >&2
    return 1
  fi
  echo "building kustomize $version into $root/.local/bin" >&2
  mkdir -p "$root/.local/bin"
  GOBIN="$root/.local/bin" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$version" >&2
}

case ${1:-} in
  fetch) fetch ;;
  build) shift; fetch; exec "$bin" build "$@" ;;
  *) sed -n '2,5p' "$0" >&2; exit 2 ;;
esac
