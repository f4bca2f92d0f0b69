#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for trying things by hand: etcd, kube-apiserver and
# kube-controller-manager (built by scripts/kube-binaries.sh), throw-away certificates, an admin
# client-certificate kubeconfig, RBAC. No scheduler and no kubelet.
#
#   bash scripts/kube-control-plane.sh up [--image-policy-config FILE]   start; print the kubeconfig
#   bash scripts/kube-control-plane.sh down                              stop what `up` started
#
# `up` waits for /readyz and the default ServiceAccount, then prints the kubeconfig path on stdout.
# State lives in $KPACK_TRUST_KUBE_STATE (default .cache/kube-control-plane); a state file left by a
# run that crashed is ignored, and every run takes new free ports and a new temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${KPACK_TRUST_KUBE_STATE:-.cache/kube-control-plane}
state_file=$state/control-plane.json
mkdir -p "$state"

running_pid() {
  [ -f "$state_file" ] || return 1
  local pid
  pid=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).pid)' "$state_file")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

case "${1:-}" in
  up)
    shift
    if pid=$(running_pid); then
      echo "a control plane is already up (pid $pid); kubeconfig:" >&2
      node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).kubeconfig)' "$state_file"
      exit 0
    fi
    rm -f "$state_file"
    bash scripts/ensure-deps.sh
    [ -f test/dist/src/kube/control-plane-main.js ] || npm run --silent build
    bash scripts/kube-binaries.sh >/dev/null
    log=$state/control-plane.log
    setsid node test/dist/src/kube/control-plane-main.js "$state" "$@" </dev/null >"$log" 2>&1 &
    pid=$!
    echo "starting etcd, kube-apiserver and kube-controller-manager (log: $log) …" >&2
    for _ in $(seq 1 600); do
      if [ -f "$state_file" ]; then
        node -e 'const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.error(`kube-apiserver ${s.versions.kubernetes} ready at ${s.server}`); console.log(s.kubeconfig)' "$state_file"
        exit 0
      fi
      if ! kill -0 "$pid" 2>/dev/null; then
        cat "$log" >&2
        exit 1
      fi
      sleep 0.5
    done
    echo "the control plane did not become ready within 300 s (log: $log)" >&2
    kill -TERM "$pid" 2>/dev/null || true
    exit 1
    ;;
  down)
    if ! pid=$(running_pid); then
      rm -f "$state_file"
      echo "no control plane is up" >&2
      exit 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || {
        echo "stopped" >&2
        exit 0
      }
      sleep 0.2
    done
    echo "pid $pid did not stop within 20 s" >&2
    exit 1
    ;;
  *)
    echo "usage: bash scripts/kube-control-plane.sh up [--image-policy-config FILE] | down" >&2
    exit 2
    ;;
esac
