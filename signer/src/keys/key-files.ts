/**
 * Choosing and opening notary key files, shared by the keys-dir store and the Kubernetes Secret
 * store (both hold kpack's layout: `<key id>.key` files plus a `password`).
 *
 * kpack's shipped Notary step signs with the first `*.key` it finds. We keep that default, but a
 * notary key file says which role it belongs to in its PEM `role:` header (and, for everything but
 * root, its `gun:`), so when a directory holds several we take the one whose header names the role
 * we need, and only then fall back to a header-less file.
 */
import {
  PublicKey,
  checkRootCertificate,
  decodePrivateKeyPem,
  isTrustError,
  TrustError,
} from '@kpack-trust/common';
import type { KeyObject } from 'node:crypto';

/** One `*.key` entry of a directory or Secret: its name and PEM text. */
export interface KeyFileEntry {
  readonly name: string;
  readonly pem: string;
}

/** A passphrase to try, and where it came from (named in errors, never shown). */
export interface PassphraseCandidate {
  readonly value: string;
  readonly source: string;
}

/** A key file we opened, with its PEM headers. */
export interface OpenedKey {
  readonly privateKey: KeyObject;
  readonly entry: KeyFileEntry;
  readonly role?: string;
  readonly gun?: string;
}

// Roles whose keys never sign targets metadata; a file claiming one is not a targets/delegation key.
const BASE_ROLES: readonly string[] = ['root', 'targets', 'snapshot', 'timestamp'];

/**
 * The `role:` and `gun:` headers of a key file's first PEM block, read without decrypting it, so we
 * can pick among several files and decrypt only the one we use.
 */
export function keyFileHeaders(pem: string): { role?: string; gun?: string } {
  const lines = pem.split(/\r?\n/);
  const begin = lines.findIndex((line) => line.startsWith('-----BEGIN '));
  const headers: { role?: string; gun?: string } = {};
  if (begin === -1) return headers;
  // Go's encoding/pem: headers are the `Key: Value` lines right after BEGIN.
  for (const line of lines.slice(begin + 1)) {
    const colon = line.indexOf(':');
    if (colon === -1 || line.startsWith('-----')) break;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (value === '') continue;
    if (name === 'role') headers.role = value;
    if (name === 'gun') headers.gun = value;
  }
  return headers;
}

/**
 * Picks the key file for `role` among `entries` (already in the order kpack would see them: sorted
 * by name). Preference: a file whose `role:` header is exactly `role` and whose `gun:` header (if
 * any) is `gun`; then one with the right role and another GUN; then, as kpack does, the first file
 * with no `role:` header. `aliases` are further role headers accepted for a delegation
 * (`docker trust key generate alice` writes `role: alice` for what signs `targets/alice`).
 */
export function chooseKeyFile(
  entries: readonly KeyFileEntry[],
  role: string,
  gun: string,
  aliases: readonly string[] = [],
): KeyFileEntry | undefined {
  const described = entries.map((entry) => ({ entry, ...keyFileHeaders(entry.pem) }));
  const wanted = [role, ...aliases];
  const sameRole = described.filter((d) => d.role !== undefined && wanted.includes(d.role));
  return (
    sameRole.find((d) => d.gun === undefined || d.gun === gun)?.entry ??
    sameRole[0]?.entry ??
    described.find((d) => d.role === undefined)?.entry
  );
}

/**
 * Key files that may hold a delegation key: any whose `role:` header is not one of the four base
 * roles (header-less files included), in `entries` order.
 */
export function delegationCandidates(entries: readonly KeyFileEntry[]): KeyFileEntry[] {
  return entries.filter((entry) => {
    const { role } = keyFileHeaders(entry.pem);
    return role === undefined || !BASE_ROLES.includes(role);
  });
}

/** Short summary of what a directory or Secret holds, for "no usable key" errors. */
export function describeEntries(entries: readonly KeyFileEntry[]): string {
  if (entries.length === 0) return 'no *.key entries';
  return entries
    .map((entry) => {
      const { role } = keyFileHeaders(entry.pem);
      return role === undefined ? entry.name : `${entry.name} (role ${role})`;
    })
    .join(', ');
}

/**
 * A password file or Secret entry as passphrase candidates: its exact text, and the text without a
 * trailing line break (`echo pass > password` and `kubectl create secret --from-file` add one).
 */
export function passwordCandidates(text: string, source: string): PassphraseCandidate[] {
  const trimmed = text.replace(/\r?\n$/, '');
  const out: PassphraseCandidate[] = [];
  if (text !== '') out.push({ value: text, source });
  if (trimmed !== text && trimmed !== '') out.push({ value: trimmed, source });
  return out;
}

/**
 * Decrypts `entry` with each candidate in turn. When none works the error names every source tried
 * (never a passphrase), so an operator can tell a wrong `password` from a wrong environment value.
 * `passphraseVariable` names the environment variable when the operator set one for this key's
 * role: then an unencrypted file is refused, since the passphrase is what keeps the stored key
 * alone from signing (operator guide §3.1).
 */
export function openKeyFile(
  entry: KeyFileEntry,
  candidates: readonly PassphraseCandidate[],
  source: string,
  hint: string,
  passphraseVariable?: string,
): OpenedKey {
  const opened = (value: string | undefined): OpenedKey => {
    const { privateKey, role, gun } = decodePrivateKeyPem(entry.pem, value, source);
    return {
      privateKey,
      entry,
      ...(role === undefined ? {} : { role }),
      ...(gun === undefined ? {} : { gun }),
    };
  };
  // An unencrypted file needs no passphrase, and its problems are not the passphrase's fault.
  if (!/^-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type:\s*4,ENCRYPTED/m.test(entry.pem)) {
    if (passphraseVariable !== undefined) {
      const problem = `the key is not encrypted, but ${passphraseVariable} is set`;
      throw new TrustError(
        'PRIVATE_KEY_INVALID',
        { source, problem },
        `${source}: ${problem}; whoever can read the stored key alone could sign with it. Encrypt it ` +
          `with that passphrase (the notary CLI's own key files are), or unset ${passphraseVariable}.`,
      );
    }
    return opened(undefined);
  }
  if (candidates.length === 0) {
    try {
      return opened(undefined);
    } catch (err) {
      if (!isTrustError(err, 'PRIVATE_KEY_INVALID')) throw err;
      throw new TrustError(
        'PRIVATE_KEY_INVALID',
        { source, problem: `${err.facts.problem}; ${hint}` },
        `${source}: ${err.facts.problem}; ${hint}`,
      );
    }
  }
  let last: TrustError<'PRIVATE_KEY_INVALID'> | undefined;
  for (const candidate of candidates) {
    try {
      return opened(candidate.value);
    } catch (err) {
      if (!isTrustError(err, 'PRIVATE_KEY_INVALID')) throw err;
      last = err;
    }
  }
  const sources = [...new Set(candidates.map((c) => c.source))].join(', ');
  const problem = `${last?.facts.problem ?? 'cannot be opened'} (passphrases tried: ${sources})`;
  throw new TrustError('PRIVATE_KEY_INVALID', { source, problem }, `${source}: ${problem}`);
}

/**
 * The stored root certificate (`root.crt`) to hand the publisher, checked against the root key.
 * A certificate for another key means the store is inconsistent: an error. One that notary would
 * refuse for this GUN (another CN — a root key shared by several images — or expired) is left out,
 * so the publisher makes a fresh one for the same key rather than publishing a root nobody trusts.
 */
export function rootCertificateFor(
  pem: string,
  privateKey: KeyObject,
  gun: string,
  now: Date,
  store: string,
): string | undefined {
  let certificateKey: PublicKey;
  try {
    certificateKey = PublicKey.fromCertificatePem(pem);
  } catch (err) {
    if (!isTrustError(err, 'KEY_INVALID')) throw err;
    const problem = `root.crt is not a usable certificate: ${err.facts.problem}`;
    throw new TrustError('KEY_STORE_INVALID', { store, problem }, `${store}: ${problem}`);
  }
  const keyId = PublicKey.fromKeyObject(privateKey).canonicalId;
  if (certificateKey.canonicalId !== keyId) {
    const problem = `root.crt certifies key ${certificateKey.canonicalId}, not the stored root key ${keyId}`;
    throw new TrustError('KEY_STORE_INVALID', { store, problem }, `${store}: ${problem}`);
  }
  try {
    checkRootCertificate(certificateKey, gun, now);
  } catch (err) {
    if (isTrustError(err, 'CERTIFICATE_INVALID')) return undefined;
    throw err;
  }
  return pem;
}
