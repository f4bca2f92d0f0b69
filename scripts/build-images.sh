#!/usr/bin/env bash
# Builds the targets of the Dockerfile with Debian's buildah (chroot isolation, vfs storage: no
# Docker engine, no daemon) and checks that each image starts its program as uid 65532, and that
# the completion image runs its single executable with no shell and hands over to kpack's program.
#
#   bash scripts/build-images.sh            # real bases (NODE_IMAGE / RUNTIME_IMAGE of the Dockerfile;
#                                           # completion only with KPACK_COMPLETION_IMAGE set)
#   bash scripts/build-images.sh --stand-in # bases made from this machine's own Node
#   bash scripts/build-images.sh --stand-in completion   # only the named targets
#
# --stand-in is for machines that reach no container registry (like this project's CI machines,
# which reach only the npm and Debian registries): it packs this machine's node, npm, a shell and
# their libraries into a local image and passes it as both NODE_IMAGE and RUNTIME_IMAGE. That
# exercises every stage, COPY and `npm ci` of the Dockerfile, but the images are not the ones to
# ship: build those with the real bases. For the completion target it also makes a stand-in for
# kpack's completion image: no shell, glibc only, /cnb/process/completion a symlink to a "launcher"
# that is /bin/echo — so the check sees exactly which arguments reach kpack's program.
set -euo pipefail
cd "$(dirname "$0")/.."

stand_in=false
targets=()
for arg in "$@"; do
  case "$arg" in
    --stand-in) stand_in=true ;;
    signer | verifier | completion) targets+=("$arg") ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(signer verifier completion)
wants() { [[ " ${targets[*]} " == *" $1 "* ]]; }

if ! command -v buildah >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "buildah is missing — install it with: sudo apt-get install -y buildah" >&2
    exit 1
  fi
  echo "installing buildah (Debian package)" >&2
  mkdir -p test-results
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah; } \
    </dev/null >test-results/apt-buildah.log 2>&1 || {
    tail -n 40 test-results/apt-buildah.log >&2
    echo "installing buildah failed; run: sudo apt-get install -y buildah" >&2
    exit 1
  }
fi
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot

# A failed check, set -e or a signal (bash runs the EXIT trap on SIGINT, SIGTERM and SIGHUP too)
# must leave neither temporary dirs nor buildah working containers, which stay in vfs storage, a
# full copy of the image each, until `buildah rm`. A container is named and recorded before
# `buildah from` makes it, so no moment exists in which it is made but not yet known here.
tmp_dirs=()
containers=()
containers_made=0
clean_up() {
  local c
  for c in ${containers[@]+"${containers[@]}"}; do
    buildah rm "$c" >/dev/null 2>&1 || true # unmounts it first; fails quietly if never made
  done
  [ ${#tmp_dirs[@]} -eq 0 ] || rm -rf "${tmp_dirs[@]}"
}
trap clean_up EXIT
# new_container IMAGE: makes a working container from IMAGE and sets $ctr to its name. Not in a
# subshell ($(...)), which would lose the record.
new_container() {
  ctr=kpack-trust-build-$$-$((containers_made++))
  containers+=("$ctr")
  buildah from --name "$ctr" "$1" >/dev/null
}
# drop_container NAME: `buildah rm` it and forget it.
drop_container() {
  buildah rm "$1" >/dev/null
  local kept=() c
  for c in "${containers[@]}"; do [ "$c" = "$1" ] || kept+=("$c"); done
  containers=(${kept[@]+"${kept[@]}"})
}

build_args=()
if $stand_in; then
  base=localhost/kpack-trust-stand-in-node:20
  root=$(mktemp -d)
  tmp_dirs+=("$root")
  node_bin=$(readlink -f "$(command -v node)")
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  mkdir -p "$root"/{bin,usr/bin,usr/lib/node_modules,etc/ssl,tmp,root,nodejs/bin}
  chmod 1777 "$root/tmp"
  cp "$node_bin" "$root/usr/bin/node"
  cp "$node_bin" "$root/nodejs/bin/node" # where the distroless runtime keeps it
  cp -a "$npm_dir" "$root/usr/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
  cp "$(readlink -f /bin/sh)" "$root/bin/sh"
  cp /usr/bin/env "$root/usr/bin/env"
  for lib in $(for bin in "$node_bin" /bin/sh /usr/bin/env; do ldd "$bin"; done | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  cp -rL /etc/ssl/certs "$root/etc/ssl/"
  printf 'root:x:0:0::/root:/bin/sh\nnonroot:x:65532:65532::/home/nonroot:/bin/sh\n' >"$root/etc/passwd"
  new_container scratch
  buildah copy -q "$ctr" "$root" / >/dev/null
  # npm inside the build trusts what this machine trusts (a registry proxy's CA, say).
  buildah config --env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    --env npm_config_cafile=/etc/ssl/certs/ca-certificates.crt "$ctr"
  buildah commit -q "$ctr" "$base" >/dev/null
  drop_container "$ctr"
  echo "stand-in base $base from $node_bin ($(node --version))" >&2
  build_args=(--build-arg "NODE_IMAGE=$base" --build-arg "RUNTIME_IMAGE=$base")
fi

for target in signer verifier; do
  wants "$target" || continue
  image=localhost/kpack-trust/$target:dev
  log=test-results/image-$target.log
  mkdir -p test-results
  echo "building $image (log: $log)" >&2
  buildah bud --network host "${build_args[@]}" --target "$target" -t "$image" . >"$log" 2>&1 || {
    tail -n 40 "$log" >&2
    echo "building $image failed" >&2
    exit 1
  }
  new_container "$image"
  # As the image's user (buildah run takes it from the image); --help needs no config or cluster.
  # The signer's entry point is its bundle (scripts/bundle-signer.mjs).
  entry=/app/$target/dist/src/main.js
  [ "$target" != signer ] || entry=/app/signer/dist/bundle/main.js
  help=$(buildah run "$ctr" -- /nodejs/bin/node "$entry" --help 2>&1)
  out=${help%%$'\n'*}
  # Every module of the program but its entry points (main.js, and *-main.js such as the completion
  # executable's, which run when imported) loads with the image's production dependencies alone:
  # the signer imports its Kubernetes key store lazily, so --help cannot tell.
  modules=$(buildah run "$ctr" -- /nodejs/bin/node --input-type=module -e "
    import { readdirSync } from 'node:fs';
    const files = readdirSync('/app/$target/dist/src', { recursive: true }).filter((f) => f.endsWith('.js') && f !== 'main.js' && !f.endsWith('-main.js'));
    for (const f of files) await import('/app/$target/dist/src/' + f);
    // The bundle's lazily loaded chunks, the Kubernetes client's importers among them.
    const chunks = '$target' === 'signer' ? readdirSync('/app/signer/dist/bundle/chunks') : [];
    for (const f of chunks) await import('/app/signer/dist/bundle/chunks/' + f);
    console.log(files.length + chunks.length);" 2>&1) || {
    echo "$image: a module does not load: $modules" >&2
    exit 1
  }
  uid=$(buildah inspect --format '{{.OCIv1.Config.User}}' "$image")
  mnt=$(buildah mount "$ctr")
  size=$(du -sh "$mnt/app" | cut -f1)
  dev=$([ -d "$mnt/app/node_modules/typescript" ] && echo "yes" || echo "none")
  buildah umount "$ctr" >/dev/null
  drop_container "$ctr"
  echo "$image: user $uid, /app $size, dev dependencies: $dev, $modules modules load; --help: $out"
  [ "$uid" = "65532:65532" ] && [ "$dev" = none ] && [ -n "$out" ] || {
    echo "$image is not as it should be" >&2
    exit 1
  }
done

# ---- completion ------------------------------------------------------------------------------
wants completion || exit 0
kpack_base=${KPACK_COMPLETION_IMAGE:-}
if $stand_in; then
  kpack_base=localhost/kpack-trust-stand-in-kpack-completion:dev
  kroot=$(mktemp -d)
  tmp_dirs+=("$kroot")
  mkdir -p "$kroot"/{cnb/lifecycle,cnb/process,etc,tmp}
  chmod 1777 "$kroot/tmp"
  cp "$(readlink -f /bin/echo)" "$kroot/cnb/lifecycle/launcher"
  ln -s /cnb/lifecycle/launcher "$kroot/cnb/process/completion"
  # glibc only, as in kpack's paketo "tiny" base: node's C++ runtime must come with our image.
  for lib in $(for bin in /bin/echo "$(readlink -f "$(command -v node)")"; do ldd "$bin"; done |
    grep -o '/[^ ]*' | grep -v -e libstdc++ -e libgcc_s | sort -u); do
    mkdir -p "$kroot$(dirname "$lib")"
    cp -L "$lib" "$kroot$lib"
  done
  printf 'root:x:0:0::/root:/sbin/nologin\ncnb:x:1000:1000::/home/cnb:/sbin/nologin\n' >"$kroot/etc/passwd"
  new_container scratch
  buildah copy -q "$ctr" "$kroot" / >/dev/null
  buildah config --user 1000:1000 --entrypoint '["/cnb/lifecycle/launcher"]' "$ctr"
  buildah commit -q "$ctr" "$kpack_base" >/dev/null
  drop_container "$ctr"
  echo "stand-in kpack completion base $kpack_base" >&2
fi
if [ -z "$kpack_base" ]; then
  echo "completion: skipped (set KPACK_COMPLETION_IMAGE to kpack's completion image, by digest)" >&2
  exit 0
fi
image=localhost/kpack-trust/completion:dev
log=test-results/image-completion.log
echo "building $image on $kpack_base (log: $log)" >&2
buildah bud --network host "${build_args[@]}" --build-arg "KPACK_COMPLETION_IMAGE=$kpack_base" \
  --target completion -t "$image" . >"$log" 2>&1 || {
  tail -n 40 "$log" >&2
  echo "building $image failed" >&2
  exit 1
}
new_container "$image"
# No shell anywhere: buildah runs the entrypoint binary directly. Without -notary-v1-url the step
# only hands over to kpack's program, as /cnb/process/completion, with the arguments unchanged.
handed=$(buildah run "$ctr" -- /cnb/process/completion -dockercfg=registry-cfg -cosign-annotations=buildNumber=1 2>&1)
# With it, signing starts (and stops at the missing root pin) and kpack's program is not run.
set +e
refused=$(buildah run "$ctr" -- /cnb/process/completion -notary-v1-url=https://127.0.0.1:9 -dockercfg=x 2>&1)
refused_code=$?
set -e
mnt=$(buildah mount "$ctr")
shell=$([ -e "$mnt/bin/sh" ] && echo "yes" || echo "none")
kpack_link=$(readlink "$mnt/cnb/process/kpack-completion")
ours=$(readlink "$mnt/cnb/process/completion")
size=$(du -sh "$mnt/kpack-trust" | cut -f1)
buildah umount "$ctr" >/dev/null
drop_container "$ctr"
base_user=$(buildah inspect --format '{{.OCIv1.Config.User}}' "$kpack_base")
user=$(buildah inspect --format '{{.OCIv1.Config.User}}' "$image")
echo "$image: user $user (base: $base_user), shell: $shell, /kpack-trust $size," \
  "/cnb/process/completion -> $ours, kpack's -> $kpack_link; handed over: $handed;" \
  "with notary: exit $refused_code"
[ "$user" = "$base_user" ] && [ "$ours" = /kpack-trust/completion ] &&
  [ "$handed" = "-dockercfg=registry-cfg -cosign-annotations=buildNumber=1" ] &&
  [ "$refused_code" = 2 ] && [[ "$refused" == *"KPACK_TRUST_ROOT_KEY_ID is not set"* ]] &&
  [[ "$refused" != *"-dockercfg=x"* ]] || {
  echo "$image is not as it should be: $refused" >&2
  exit 1
}
if $stand_in; then
  [ "$shell" = none ] && [ "$kpack_link" = /cnb/lifecycle/launcher ] || {
    echo "$image: the stand-in base's layout was not kept" >&2
    exit 1
  }
fi
