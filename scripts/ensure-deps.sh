#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine with Node: the real notary
# stack from Debian's packages (when missing, as root) and the npm dependencies (when stale).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for bin in notary notary-server notary-signer docker-registry skopeo; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [ ${#missing[@]} -gt 0 ]; then
  install_cmd="apt-get update && apt-get install -y notary docker-registry skopeo"
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${missing[*]} — install them with: sudo sh -c '$install_cmd'" >&2
    exit 1
  fi
  # apt's and dpkg's chatter goes to a log, shown only when the install fails. stdin is closed and
  # conffile questions answered (keep the local file), so nothing can wait on a prompt in CI.
  mkdir -p test-results
  apt_log=test-results/apt.log
  echo "installing Debian packages for: ${missing[*]} (log: $apt_log)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq &&
    apt-get install -y -qq -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      notary docker-registry skopeo; } </dev/null >"$apt_log" 2>&1; then
    tail -n 40 "$apt_log" >&2
    echo "installing the Debian packages failed; run: sudo sh -c '$install_cmd'" >&2
    exit 1
  fi
fi

# npm ci when node_modules is missing or older than the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing npm dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
fi
