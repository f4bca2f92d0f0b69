/**
 * Trust anchoring: deciding whether a root.json this client has never seen may be trusted. Nothing is
 * trusted on first use unless the anchor says `tofu`; otherwise the root must be signed, to its
 * threshold, by root keys that the anchor pins — by key id, by PEM public key or certificate, or by a
 * CA that issued the root certificates.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { TrustError } from '../errors.js';
import type { PublicKey } from '../keys/public-key.js';
import { checkRootCertificate } from '../keys/root-certificate.js';
import type { RootMetadata } from '../metadata/models.js';

/** How a GUN's first root is trusted. At least one pin, or `tofu: true`, must be given. */
export interface TrustAnchor {
  /** Root key ids as root.json lists them, or notary's canonical (bare key) ids. */
  readonly rootKeyIds?: readonly string[];
  /** PEM public keys or certificates of acceptable root keys, compared by public key. */
  readonly rootKeysPem?: readonly string[];
  /** PEM CA certificates; a root certificate they issued (directly or via bundled intermediates) is acceptable. */
  readonly caPem?: readonly string[];
  /** Trust whatever root the server presents the first time. Only when explicitly configured. */
  readonly tofu?: boolean;
}

/** An anchor with PEM material parsed once, so repeated verifications stay cheap. */
export interface CompiledAnchor {
  readonly source: TrustAnchor;
  readonly keyIds: ReadonlySet<string>;
  /** DER SubjectPublicKeyInfo (base64) of pinned keys. */
  readonly spkis: ReadonlySet<string>;
  readonly cas: readonly X509Certificate[];
  readonly tofu: boolean;
}

/** Parses the PEM material of an anchor; throws ROOT_NOT_TRUSTED if it pins nothing and is not TOFU. */
export function compileAnchor(anchor: TrustAnchor, gun = '*'): CompiledAnchor {
  const spkis = new Set<string>();
  for (const pem of anchor.rootKeysPem ?? []) spkis.add(spkiOfPem(pem));
  const cas = (anchor.caPem ?? []).flatMap(splitPemCertificates).map((p) => new X509Certificate(p));
  const compiled: CompiledAnchor = {
    source: anchor,
    keyIds: new Set(anchor.rootKeyIds ?? []),
    spkis,
    cas,
    tofu: anchor.tofu === true,
  };
  if (!compiled.tofu && compiled.keyIds.size === 0 && spkis.size === 0 && cas.length === 0) {
    throw new TrustError(
      'ROOT_NOT_TRUSTED',
      {
        gun,
        problem: 'the trust anchor pins no root key, certificate or CA and does not allow TOFU',
      },
      `no trust anchor configured for ${gun}`,
    );
  }
  return compiled;
}

function spkiOfPem(pem: string): string {
  if (pem.includes('BEGIN CERTIFICATE')) {
    const cert = new X509Certificate(pem);
    return cert.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  }
  return publicKeyDer(pem);
}

function publicKeyDer(pem: string): string {
  return createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('base64');
}

/** Splits a PEM bundle into its certificates. */
export function splitPemCertificates(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** Why a root certificate was not counted. */
export interface CertificateProblem {
  readonly keyId: string;
  readonly problem: string;
}

/**
 * Returns the ids of the root-role keys of `root` that the anchor vouches for. The caller still
 * requires the root's threshold over exactly these keys. Certificate keys must also pass notary's
 * certificate checks (CN = GUN, not a CA, unexpired, no SHA-1); a key that fails them is not counted.
 */
export function anchoredRootKeys(
  root: RootMetadata,
  anchor: CompiledAnchor,
  gun: string,
  now: Date,
): { keyIds: ReadonlySet<string>; certificateProblems: readonly CertificateProblem[] } {
  const certificateProblems = rootCertificateProblems(root, gun, now);
  const invalid = new Set(certificateProblems.map((p) => p.keyId));
  const keyIds = new Set<string>();
  for (const id of root.roles.root.keyIds) {
    const key = root.keys.get(id);
    if (!key || invalid.has(id)) continue;
    if (anchor.tofu || matchesPins(key, anchor, now)) keyIds.add(id);
  }
  return { keyIds, certificateProblems };
}

/** Root-role certificates that fail notary's checks, with the reason; bare keys are never listed. */
export function rootCertificateProblems(
  root: RootMetadata,
  gun: string,
  now: Date,
): CertificateProblem[] {
  const problems: CertificateProblem[] = [];
  for (const id of root.roles.root.keyIds) {
    const key = root.keys.get(id);
    if (!key?.certificate) continue;
    try {
      checkRootCertificate(key, gun, now);
    } catch (err) {
      if (!(err instanceof TrustError)) throw err;
      const { problem } = err.facts as { problem?: string };
      problems.push({ keyId: id, problem: problem ?? err.message });
    }
  }
  return problems;
}

function matchesPins(key: PublicKey, anchor: CompiledAnchor, now: Date): boolean {
  if (anchor.keyIds.has(key.id) || anchor.keyIds.has(key.canonicalId)) return true;
  if (anchor.spkis.size > 0 && anchor.spkis.has(key.spkiBase64)) return true;
  return (
    anchor.cas.length > 0 && key.certificate !== undefined && issuedByAnchorCa(key, anchor.cas, now)
  );
}

function issuedByAnchorCa(key: PublicKey, cas: readonly X509Certificate[], now: Date): boolean {
  const leaf = key.certificate;
  if (!leaf) return false;
  // Notary bundles intermediates after the leaf in the key's PEM; walk them towards a pinned CA.
  const pem = Buffer.from(key.publicValue, 'base64').toString('utf8');
  const intermediates = splitPemCertificates(pem)
    .slice(1)
    .map((p) => new X509Certificate(p));
  let current = leaf;
  for (let depth = 0; depth <= intermediates.length; depth++) {
    if (!validAt(current, now)) return false;
    const ca = cas.find(
      (c) => validAt(c, now) && current.checkIssued(c) && current.verify(c.publicKey),
    );
    if (ca) return true;
    const next = intermediates.find(
      (c) => c.ca && current.checkIssued(c) && current.verify(c.publicKey),
    );
    if (!next) return false;
    current = next;
  }
  return false;
}

function validAt(cert: X509Certificate, now: Date): boolean {
  return new Date(cert.validFrom) <= now && now <= new Date(cert.validTo);
}
