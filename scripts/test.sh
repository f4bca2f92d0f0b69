#!/usr/bin/env bash
# The whole test run, exactly as CI runs it: install what is missing, build, lint, then the unit
# tests, the end-to-end tests against the real notary stack on loopback, and the container images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
# kube-apiserver, kube-controller-manager, etcd and kpack's completion, built from their Go modules
# on the first run (long on a cold machine; progress lines) and reused from the cache after that.
echo "== Kubernetes binaries (scripts/kube-binaries.sh)" >&2
bash scripts/kube-binaries.sh >/dev/null
echo "== build" >&2
npm run --silent build
echo "== lint" >&2
npm run --silent lint
echo "== unit tests" >&2
npm run --silent test:unit
echo "== end-to-end tests (real notary-server, notary-signer, docker-registry, notary CLI, kube-apiserver)" >&2
npm run --silent test:e2e
# No container registry is reachable from CI, so both Dockerfile targets are built on a base made
# from this machine's Node: every stage, COPY and npm ci runs, and each image's modules must load.
echo "== container images (buildah, stand-in bases)" >&2
bash scripts/build-images.sh --stand-in
