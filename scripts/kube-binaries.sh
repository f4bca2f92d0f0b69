#!/usr/bin/env bash
# Builds, once, the real binaries the Kubernetes-facing tests run against, from their Go modules at
# the releases pinned in test/kube/*/go.mod (go.sum pins every byte; nothing else is downloaded):
#   kube-apiserver, kube-controller-manager  k8s.io/kubernetes        (test/kube/kubernetes)
#   etcd                                     go.etcd.io/etcd/server/v3 (test/kube/etcd)
#   completion                               github.com/pivotal/kpack  (test/kube/kpack)
# into a cache directory reused while the pins are unchanged:
#   $KPACK_TRUST_KUBE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/kpack-trust/kube/<versions>-<pin hash>
# and prints that directory on stdout (progress lines go to stderr, the go command's output to
# $KPACK_TRUST_KUBE_LOG, default test-results/kube-binaries.log).
#
#   bash scripts/kube-binaries.sh              build what is missing, print the directory
#   bash scripts/kube-binaries.sh --print-dir  only print the directory (builds nothing)
#
# A directory is complete once it holds versions.json, which is written last. KPACK_TRUST_KUBE_DIR
# may point at binaries built elsewhere: if it already holds versions.json and the four binaries,
# they are used as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

# The newest `go` directive among the pinned modules (k8s.io/kubernetes v1.35 needs go 1.25).
GO_NEEDED=1.25

mode=build
case "${1:-}" in
  '') ;;
  --print-dir) mode=print ;;
  *)
    echo "usage: bash scripts/kube-binaries.sh [--print-dir]" >&2
    exit 2
    ;;
esac

pinned() { # <module dir> <module path>: the version its go.mod requires
  awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' \
    "test/kube/$1/go.mod"
}
k8s_version=$(pinned kubernetes k8s.io/kubernetes)
etcd_version=$(pinned etcd go.etcd.io/etcd/server/v3)
kpack_version=$(pinned kpack github.com/pivotal/kpack)
if [ -z "$k8s_version" ] || [ -z "$etcd_version" ] || [ -z "$kpack_version" ]; then
  echo "kube-binaries: cannot read the pinned versions from test/kube/*/go.mod" >&2
  exit 1
fi
# Static, reproducible, stripped binaries built only from the module cache and the pinned sums;
# GOTOOLCHAIN=local so a go directive never makes the go command fetch another toolchain;
# -buildvcs=false: the pins, not this checkout's git state, describe what was built.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
# What `kube-apiserver --version` prints, as Kubernetes' own build (hack/lib/version.sh) sets it.
minor=$(echo "$k8s_version" | cut -d. -f2)
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
etcd_ldflags="-s -w"
kpack_ldflags="-s -w -X github.com/pivotal/kpack/cmd.Version=${kpack_version#v}"
# The hash covers what decides the bytes built: the pins, their sums, and the build settings
# above. Not the rest of this script, so an edit to its messages does not cost a rebuild.
pin_hash=$(
  {
    cat test/kube/*/go.mod test/kube/*/go.sum
    printf '%s\n' "$CGO_ENABLED $GOTOOLCHAIN $GOFLAGS" "$k8s_ldflags" "$etcd_ldflags" "$kpack_ldflags"
  } | sha256sum | cut -c1-12
)
dir=${KPACK_TRUST_KUBE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kpack-trust/kube/kubernetes-$k8s_version-etcd-$etcd_version-kpack-$kpack_version-$pin_hash}

if [ "$mode" = print ]; then
  echo "$dir"
  exit 0
fi

complete() {
  [ -f "$dir/versions.json" ] &&
    for bin in kube-apiserver kube-controller-manager etcd completion; do
      [ -x "$dir/$bin" ] || return 1
    done
}
if complete; then
  echo "$dir"
  exit 0
fi

# Go: on PATH, else where the Go machines install it.
go_bin=$(command -v go || true)
if [ -z "$go_bin" ] && [ -x /usr/local/go/bin/go ]; then go_bin=/usr/local/go/bin/go; fi
if [ -z "$go_bin" ]; then
  echo "kube-binaries: Go $GO_NEEDED or newer is needed to build the Kubernetes binaries, and no \`go\` is on PATH or at /usr/local/go/bin" >&2
  exit 1
fi
go_have=$("$go_bin" env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$GO_NEEDED" "$go_have" | sort -V | head -n1)" != "$GO_NEEDED" ]; then
  echo "kube-binaries: Go $GO_NEEDED or newer is needed (k8s.io/kubernetes $k8s_version); $go_bin is go$go_have" >&2
  exit 1
fi

mkdir -p "$dir"
# One build at a time per directory: a second caller waits, then finds the binaries built.
exec 9>"$dir/.lock"
if ! flock -n 9; then
  echo "kube-binaries: another build into $dir is running; waiting for it" >&2
  flock 9
fi
if complete; then
  echo "$dir"
  exit 0
fi


# The go command's own chatter (hundreds of "go: downloading" lines on a new machine) goes to a
# log, shown only when a build fails: CI's output stays the progress lines.
log=${KPACK_TRUST_KUBE_LOG:-test-results/kube-binaries.log}
mkdir -p "$(dirname "$log")"
: >"$log"
total_start=$(date +%s)
build() { # <output name> <module dir> <package> <ldflags> <what>
  local out=$1 module=$2 pkg=$3 ldflags=$4 what=$5 start
  if [ -x "$dir/$out" ]; then
    echo "kube-binaries: $out already built ($what)" >&2
    return
  fi
  start=$(date +%s)
  echo "kube-binaries: building $out from $what …" >&2
  # nice: the build takes both cores for a long while; anything else on the machine goes first.
  if ! nice -n 10 "$go_bin" build -C "test/kube/$module" -ldflags "$ldflags" \
    -o "$dir/.$out.partial" "$pkg" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "kube-binaries: building $out failed (full log: $log; command: bash scripts/kube-binaries.sh)" >&2
    exit 1
  fi
  mv -f "$dir/.$out.partial" "$dir/$out"
  echo "kube-binaries: built $out in $(($(date +%s) - start)) s" >&2
}
build etcd etcd go.etcd.io/etcd/server/v3 "$etcd_ldflags" "go.etcd.io/etcd/server/v3 $etcd_version"
build kube-apiserver kubernetes k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags" \
  "k8s.io/kubernetes $k8s_version"
build kube-controller-manager kubernetes k8s.io/kubernetes/cmd/kube-controller-manager \
  "$k8s_ldflags" "k8s.io/kubernetes $k8s_version"
build completion kpack github.com/pivotal/kpack/cmd/completion "$kpack_ldflags" \
  "github.com/pivotal/kpack $kpack_version"

printf '{"kubernetes":"%s","etcd":"%s","kpack":"%s"}\n' \
  "$k8s_version" "$etcd_version" "$kpack_version" >"$dir/.versions.json.partial"
mv -f "$dir/.versions.json.partial" "$dir/versions.json"
echo "kube-binaries: all built in $(($(date +%s) - total_start)) s into $dir ($(du -sh "$dir" | cut -f1))" >&2
echo "$dir"
