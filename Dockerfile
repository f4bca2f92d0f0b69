# syntax=docker/dockerfile:1
# Container images of kpack-trust, one target per program:
#   docker build --target verifier -t kpack-trust/verifier:0.1.0 .
#   docker build --target signer   -t kpack-trust/signer:0.1.0 .
#   docker build --target completion --build-arg KPACK_COMPLETION_IMAGE=<kpack's, by digest> \
#     -t kpack-trust/completion:0.1.0 .
# The build stage compiles the whole workspace once; each runtime stage gets only its program's
# compiled output and production dependencies, on a distroless Node image running as uid 65532.

ARG NODE_IMAGE=node:20-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs20-debian12:nonroot
# kpack's own completion image, pinned by digest: the `image` of ConfigMap kpack/completion-image
# as kpack's release installs it (see docs/operator-guide.md §2.1). No default: a wrong base would
# silently drop kpack's termination message from every build.
ARG KPACK_COMPLETION_IMAGE=set-KPACK_COMPLETION_IMAGE-to-kpacks-completion-image-by-digest

# ---- the workspace manifests: every npm ci below starts from these -----------------------------
# Manifests first, so the dependency layers are reused until a package.json or the lock changes. The
# test workspace's manifest is needed for `npm ci` to accept the lock file, but not its packages.
FROM ${NODE_IMAGE} AS manifests
WORKDIR /app
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json ./
COPY common/package.json common/
COPY signer/package.json signer/
COPY verifier/package.json verifier/
COPY test/package.json test/

# ---- build: all dependencies, TypeScript compile -------------------------------------------------
FROM manifests AS build
RUN npm ci --include-workspace-root -w common -w signer -w verifier
COPY tsconfig.base.json tsconfig.json ./
COPY common/ common/
COPY signer/ signer/
COPY verifier/ verifier/
RUN npx tsc -b common/tsconfig.json signer/tsconfig.json verifier/tsconfig.json
# The signer's entry point as one bundle (start-up of a build pod's signer; see the script).
COPY scripts/bundle-signer.mjs scripts/
RUN node scripts/bundle-signer.mjs

# ---- the completion step as one executable (Node SEA), and the C++ runtime it needs ------------
FROM build AS completion-build
COPY scripts/build-completion.mjs scripts/
RUN node scripts/build-completion.mjs --out /out/kpack-trust/completion --libs /out/kpack-trust/lib

# ---- production dependencies, one tree per program --------------------------------------------
FROM manifests AS signer-deps
RUN npm ci --omit=dev -w signer --ignore-scripts

FROM manifests AS verifier-deps
RUN npm ci --omit=dev -w verifier --ignore-scripts

# ---- signer ------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS signer
WORKDIR /app
ENV NODE_ENV=production
COPY --from=signer-deps /app/node_modules/ node_modules/
COPY --from=build /app/package.json ./
COPY --from=build /app/common/package.json common/
COPY --from=build /app/common/dist/src/ common/dist/src/
COPY --from=build /app/signer/package.json signer/
COPY --from=build /app/signer/dist/src/ signer/dist/src/
COPY --from=build /app/signer/dist/bundle/ signer/dist/bundle/
USER 65532:65532
# --use-openssl-ca: Node's own root store becomes OpenSSL's (the OS's, read lazily, or none)
# instead of 144 bundled roots parsed on every start (25-45 ms); the signer adds the bundled roots
# itself when a server's chain does not verify against --notary-ca (common/src/notary/tls-trust.ts).
# npm run bench:sign runs the signer with the flags of this line.
ENTRYPOINT ["/nodejs/bin/node", "--use-openssl-ca", "/app/signer/dist/bundle/main.js"]
CMD ["--help"]

# ---- verifier ----------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS verifier
WORKDIR /app
ENV NODE_ENV=production
COPY --from=verifier-deps /app/node_modules/ node_modules/
COPY --from=build /app/package.json ./
COPY --from=build /app/common/package.json common/
COPY --from=build /app/common/dist/src/ common/dist/src/
COPY --from=build /app/verifier/package.json verifier/
COPY --from=build /app/verifier/dist/src/ verifier/dist/src/
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/nodejs/bin/node", "/app/verifier/dist/src/main.js"]
CMD ["serve", "--config", "/etc/kpack-trust/config/config.yaml"]

# ---- completion: kpack's completion image with our step in front ------------------------------
# kpack runs /cnb/process/completion; ours takes that place and, after signing, runs kpack's
# program, moved to /cnb/process/kpack-completion. In a buildpacks-built image (kpack's is) that
# path is a symlink to the CNB launcher, which picks the process from argv[0]'s base name: ours
# starts it as /cnb/process/completion. kpack's image has no shell, so every move happens here.
FROM ${KPACK_COMPLETION_IMAGE} AS kpack-completion

FROM completion-build AS completion-layout
COPY --from=kpack-completion / /kpack/
RUN node scripts/build-completion.mjs --layout /kpack /layout

FROM ${KPACK_COMPLETION_IMAGE} AS completion
COPY --from=completion-build /out/kpack-trust/ /kpack-trust/
COPY --from=completion-layout /layout/ /
# The executable brings libstdc++ and libgcc_s (kpack's base has glibc only). The KPACK_TRUST_*
# settings (notary CA, root pin) are set by deriving an image from this one: kpack gives the
# completion container no env of the operator's.
ENV LD_LIBRARY_PATH=/kpack-trust/lib
# As the signer image's ENTRYPOINT: the executable is Node, and reads its flags from here.
ENV NODE_OPTIONS=--use-openssl-ca
ENTRYPOINT ["/cnb/process/completion"]
