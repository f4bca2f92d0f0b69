/** The `--help` text: what an operator wiring the signer into a build needs to know, on one screen or two. */

/** Printed on stdout for `--help`, `-h` and `help`; a usage mistake prints one line pointing here. */
export const HELP_TEXT = `kpack-trust-signer — sign every tag of a kpack build into Notary v1 (Docker Content Trust)

Usage:
  kpack-trust-signer sign --notary-url URL [--notary-ca FILE]
      ( --report FILE | --image REPO:TAG [--image REPO:TAG ...] --digest sha256:HEX [--size N] )
      KEYS [options]

  kpack-trust-signer kpack-completion [kpack's completion arguments...]
      kpack's completion step (kpack v0.17.2): with -notary-v1-url, sign /var/report/report.toml
      with the key in /var/notary/v1 and the registry Secrets in /var/build-secrets, then run
      kpack's own completion binary with the same arguments minus -notary-v1-url. Settings and
      paths come from KPACK_TRUST_* variables: see signer/README.md ("kpack's completion step").

  kpack-trust-signer controller [options]
      the controller that signs kpack Images' builds in the cluster: see controller --help.

Build input (one of):
  --report FILE            lifecycle report.toml: [image] tags, digest, manifest-size (kpack mounts
                           it at /var/report/report.toml)
  --image REPO:TAG         a tag to sign (repeatable; all tags must be in one repository)
  --digest sha256:HEX      the manifest digest every tag points to
  --size N                 the manifest length in bytes (else read from the registry)

KEYS (one of):
  --secret-store kubernetes --root-key-secret NAME --targets-key-secret NAME
      [--namespace NS] [--kubeconfig FILE]
                           keys in Kubernetes Secrets, generated on the first build of an image;
                           in-cluster service account unless --kubeconfig (or $KUBECONFIG) is
                           given; the namespace defaults to the context's (in-cluster: the pod's);
                           needs get and create on those two Secrets
  --keys-dir DIR [--root-keys-dir DIR]
                           kpack's mounted-Secret layout: <key id>.key (encrypted PKCS#8, as
                           ~/.docker/trust/private holds) and a "password" file; the root key in a
                           second directory of the same layout, needed only to create a repository
                           or re-sign its root
  Passphrases: the store's "password" entry, else KPACK_TRUST_ROOT_PASSPHRASE and
  KPACK_TRUST_TARGETS_PASSPHRASE. Never prompted for, never printed.

Options:
  --delegation ROLE        sign into a delegation (targets/releases, as docker trust signers do)
                           instead of targets; the repository must delegate ROLE to a key we hold
  --notary-url URL         the notary server, https:// only
  --notary-ca FILE         PEM CA bundle for a notary server with a private CA
  --docker-config FILE     registry credentials, also used for notary token auth (repeatable;
                           default $DOCKER_CONFIG/config.json or ~/.docker/config.json if present)
  --root-key-id ID         pin the repository's root by key id (rootCanonicalKeyId, or rootKeyId;
                           repeatable): a root key in the store that is not pinned is refused, and
                           a new repository is created only when the store holds the pinned root
                           key. Without it, a repository whose root key the store lacks is trusted
                           on first use, and then targets must already be signed by our targets key
  --registry-ca FILE       PEM CA bundle for the registry
  --insecure-registry HOST allow plain HTTP to HOST after HTTPS fails (loopback always may)
  --no-registry-check      do not ask the registry (needs --size or a report with manifest-size)
  -h, --help               this text      (--version prints the version)

What happens:
  1. The manifest digest is looked up in the registry (HEAD by digest): it must exist, and its
     length becomes the target length.
  2. A new repository is created as docker trust does: root v1 with the root key in a certificate
     for the repository, targets v2 with the tags, snapshot and timestamp kept by the server.
  3. An existing repository is read and fully verified first — anchored by our root key (or
     --root-key-id), signatures, thresholds, expiry, hashes — and our key must be the one the root
     (or the delegation) lists. Every tag is then added or replaced in ONE publish. Root is re-signed
     when it, or our root certificate, expires within six months and we hold the root key.
     Expired targets or delegations (3 years by default) are renewed in that publish when we hold
     their key (else exit 2); an expired root cannot be renewed (exit 1).
     Re-signing the same digest publishes nothing, unless something has expired.
  4. A concurrent writer (400 VERSION) makes us retry on fresh metadata, up to 5 attempts with
     jittered backoff.

Output:
  stdout: one JSON line {gun, tags, digest, size, role, rolesPublished, rootKeyId,
          rootCanonicalKeyId, versions, created, keysCreated, attempts}. Pin rootCanonicalKeyId
          (the bare root key's id) in the verifier's rootKeys: it survives root certificate
          renewals, which change rootKeyId (see docs/operator-guide.md, "Pinning roots").
  stderr: progress lines and, on failure, one line saying what failed and why.

Exit codes:
  0  signed, or already signed
  1  anything else (e.g. the repository's trust data failed verification)
  2  bad input, found before anything is sent: flags, files they name (report.toml, CA bundles,
     docker configs, key directories), tags in two repositories, keys or passphrases; or later: a
     key that is not the repository's key, a digest the registry does not have
  3  authentication failed (notary server, token service or registry)
  4  notary server or registry unreachable, or answering 5xx or 429
  5  still conflicting with concurrent writers after all retries
`;
