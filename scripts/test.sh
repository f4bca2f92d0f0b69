#!/usr/bin/env bash
# The whole test run, exactly as CI runs it: install what is missing, build, lint, then the unit
# tests and the end-to-end tests against the real notary stack on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
echo "== build" >&2
npm run --silent build
echo "== lint" >&2
npm run --silent lint
echo "== unit tests" >&2
npm run --silent test:unit
echo "== end-to-end tests (real notary-server, notary-signer, docker-registry, notary CLI)" >&2
npm run --silent test:e2e
