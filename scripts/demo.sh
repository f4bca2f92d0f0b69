#!/usr/bin/env bash
# The end-to-end demo: installs what is missing, builds, then runs the real notary stack on
# loopback, signs a kpack-style build and asks the verifier about five images. Stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
echo "== build" >&2
npm run --silent build
node test/dist/src/demo/demo.js
