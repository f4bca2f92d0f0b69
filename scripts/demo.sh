#!/usr/bin/env bash
# The end-to-end demo: installs what is missing, builds, then runs the real notary stack on
# loopback, signs a kpack-style build and asks the verifier about five images. Stops everything.
# --cluster adds a real kube-apiserver (scripts/kube-binaries.sh builds it on first use) whose
# ImagePolicyWebhook plugin asks the verifier, and kubectl runs a signed and an unsigned image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
echo "== build" >&2
npm run --silent build
if [ "${1:-}" = --cluster ]; then
  echo "== Kubernetes binaries (scripts/kube-binaries.sh)" >&2
  bash scripts/kube-binaries.sh >/dev/null
fi
# exec: a SIGTERM or SIGHUP to this script reaches the demo, whose exit hooks stop what it started.
exec node test/dist/src/demo/demo.js "$@"
