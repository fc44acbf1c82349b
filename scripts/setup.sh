#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on a fresh Debian 12 machine:
# the system packages (containerd, runc, busybox-static, criu, socat) and the
# npm dependencies with the native addon build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in containerd runc busybox-static criu socat; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts containerd as a service on install; flint never uses it.
  if command -v systemctl >/dev/null && systemctl is-active -q containerd 2>/dev/null; then
    systemctl stop containerd || true
  fi
fi

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
# Also after a pull that changed the addon's sources: a stale addon lacks new functions.
if [[ ! -f build/Release/flint.node ]] || [[ -n "$(find native binding.gyp -newer build/Release/flint.node -print -quit)" ]]; then
  npx node-gyp rebuild
fi
