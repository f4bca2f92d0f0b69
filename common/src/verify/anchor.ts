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
import type { RoleKeys } from '../metadata/models.js';
import type { WorkMeter } from '../work.js';

/**
 * Most certificate signature checks one anchoring decision spends looking for chains from root
 * certificates to a pinned CA: Go's crypto/x509 maxChainSignatureChecks (Certificate.Verify), which
 * counts every candidate parent considered, so neither the checks nor the paths tried can grow
 * with what a server bundles.
 */
export const MAX_CHAIN_SIGNATURE_CHECKS = 100;

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

/** The root role's key ids and threshold, and (at least) the keys they name. */
export interface RootKeySet {
  readonly root: RoleKeys;
  readonly keys: ReadonlyMap<string, PublicKey>;
}

/** What anchoredRootKeys found. */
export interface AnchoredKeys {
  /** Root-role key ids the anchor vouches for. */
  readonly keyIds: ReadonlySet<string>;
  readonly certificateProblems: readonly CertificateProblem[];
  /** Set when the CA chain search ran out of signature checks: keys it could not decide are not counted. */
  readonly limitExceeded?: TrustError<'LIMIT_EXCEEDED'>;
}

/**
 * Returns the ids of the root-role keys of `root` that the anchor vouches for. The caller still
 * requires the root's threshold over exactly these keys. Certificate keys must also pass notary's
 * certificate checks (CN = GUN, not a CA, unexpired, no SHA-1); a key that fails them is not counted.
 */
export function anchoredRootKeys(
  root: RootKeySet,
  anchor: CompiledAnchor,
  gun: string,
  now: Date,
  options: { readonly budget?: ChainBudget; readonly work?: WorkMeter } = {},
): AnchoredKeys {
  const certificateProblems = rootCertificateProblems(root, gun, now);
  const invalid = new Set(certificateProblems.map((p) => p.keyId));
  const keyIds = new Set<string>();
  const search: ChainSearch = { budget: options.budget ?? newChainBudget(), work: options.work };
  for (const id of root.root.keyIds) {
    const key = root.keys.get(id);
    if (!key || invalid.has(id)) continue;
    if (anchor.tofu || matchesPins(key, anchor, now, search)) keyIds.add(id);
  }
  const limitExceeded = search.budget.exhausted;
  return limitExceeded
    ? { keyIds, certificateProblems, limitExceeded }
    : { keyIds, certificateProblems };
}

/** Root-role certificates that fail notary's checks, with the reason; bare keys are never listed. */
export function rootCertificateProblems(
  root: RootKeySet,
  gun: string,
  now: Date,
): CertificateProblem[] {
  const problems: CertificateProblem[] = [];
  for (const id of root.root.keyIds) {
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

/**
 * The CA chain search's budget of MAX_CHAIN_SIGNATURE_CHECKS: one per update, shared by every root
 * key and every root version it looks at (CollectionVerifier keeps it).
 */
export interface ChainBudget {
  /** Candidate parents considered so far (Go's sigChecks). */
  considered: number;
  /** Set once the budget ran out; no chain is searched after that. */
  exhausted?: TrustError<'LIMIT_EXCEEDED'>;
}

/** A fresh, unspent chain budget. */
export function newChainBudget(): ChainBudget {
  return { considered: 0 };
}

interface ChainSearch {
  readonly budget: ChainBudget;
  readonly work: WorkMeter | undefined;
}

function matchesPins(
  key: PublicKey,
  anchor: CompiledAnchor,
  now: Date,
  search: ChainSearch,
): boolean {
  if (anchor.keyIds.has(key.id) || anchor.keyIds.has(key.canonicalId)) return true;
  if (anchor.spkis.size > 0 && anchor.spkis.has(key.spkiBase64)) return true;
  return anchor.cas.length > 0 && issuedByAnchorCa(key, anchor.cas, now, search);
}

/**
 * Whether a chain leads from the key's leaf certificate, through certificates bundled after it
 * (notary bundles intermediates behind the leaf), to a pinned CA. Built as Go's buildChains does:
 * a certificate's candidate parents are looked up by its issuer name (pinned CAs first), a
 * certificate appears at most once in a chain, every candidate considered counts against
 * MAX_CHAIN_SIGNATURE_CHECKS, and no (child, parent) signature is checked twice.
 */
function issuedByAnchorCa(
  key: PublicKey,
  cas: readonly X509Certificate[],
  now: Date,
  search: ChainSearch,
): boolean {
  const [leaf, ...bundled] = key.certificateChain;
  const budget = search.budget;
  if (!leaf || !validAt(leaf, now) || budget.exhausted) return false;
  const anchorsByName = bySubject(cas.filter((c) => validAt(c, now)));
  const intermediatesByName = bySubject(bundled.filter((c) => c.ca && validAt(c, now)));
  const verified = new Map<X509Certificate, Map<X509Certificate, boolean>>();

  // checkIssued compares names and key identifiers without any signature check; the signature
  // check is memoised per (child, parent), and every consideration is counted.
  const issues = (child: X509Certificate, parent: X509Certificate): boolean => {
    if (budget.exhausted) return false;
    budget.considered++;
    if (budget.considered > MAX_CHAIN_SIGNATURE_CHECKS) {
      budget.exhausted = new TrustError(
        'LIMIT_EXCEEDED',
        {
          role: 'root',
          what: 'certificate chain signature checks',
          limit: MAX_CHAIN_SIGNATURE_CHECKS,
          actual: budget.considered,
        },
        `the root certificates' chains to the pinned CA need more than ${MAX_CHAIN_SIGNATURE_CHECKS} signature checks`,
      );
      return false;
    }
    let byParent = verified.get(child);
    if (!byParent) {
      byParent = new Map<X509Certificate, boolean>();
      verified.set(child, byParent);
    }
    let ok = byParent.get(parent);
    if (ok === undefined) {
      if (child.checkIssued(parent)) {
        if (search.work) search.work.certificateSignatureChecks++;
        ok = child.verify(parent.publicKey);
      } else {
        ok = false;
      }
      byParent.set(parent, ok);
    }
    return ok;
  };

  const chain = new Set<X509Certificate>([leaf]);
  const extend = (current: X509Certificate): boolean => {
    for (const ca of anchorsByName.get(current.issuer) ?? []) {
      if (issues(current, ca)) return true;
    }
    for (const next of intermediatesByName.get(current.issuer) ?? []) {
      if (chain.has(next) || !issues(current, next)) continue;
      chain.add(next);
      if (extend(next)) return true;
      chain.delete(next);
    }
    return false;
  };
  return extend(leaf);
}

function bySubject(certificates: readonly X509Certificate[]): Map<string, X509Certificate[]> {
  const index = new Map<string, X509Certificate[]>();
  for (const c of certificates) {
    const list = index.get(c.subject);
    if (list) list.push(c);
    else index.set(c.subject, [c]);
  }
  return index;
}

function validAt(cert: X509Certificate, now: Date): boolean {
  return new Date(cert.validFrom) <= now && now <= new Date(cert.validTo);
}
