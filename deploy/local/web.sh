#!/usr/bin/env bash
# The JavaScript side of the set-up: Debian's Chromium for the browser tests, and every npm
# package of the repository installed from its lock file (`npm ci`) and built.
#
#   web.sh            install Chromium when missing (as root), then `npm ci` + `npm run build`
#                     in every folder below that has a package-lock.json
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
packages=(sdk/js services/gateway/web tests/browser tests/oidc)

install_chromium() {
  # `type -P`, not `command -v`: only a program on PATH counts, never a shell function.
  if type -P chromium >/dev/null 2>&1; then return 0; fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "Chromium is missing: the browser tests need Debian's 'chromium' package" \
      "(sudo apt-get install chromium)" >&2
    return 0
  fi
  echo "installing Debian's chromium for the browser tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
}

# npm ci only when the lock file changed since the last install, then build.
install_and_build() {
  local dir=$root/$1
  [[ -f "$dir/package-lock.json" ]] || return 0
  local stamp="$dir/node_modules/.sextant-lock"
  local want
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [[ ! -f "$stamp" || $(cat "$stamp") != "$want" ]]; then
    echo "npm ci in $1" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" > "$stamp"
  fi
  if grep -q '"build"' "$dir/package.json"; then
    (cd "$dir" && npm run --silent build >&2)
  fi
}

install_chromium
for package in "${packages[@]}"; do install_and_build "$package"; done
