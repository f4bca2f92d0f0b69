/**
 * A hostile root.json as an attacker-run notary server would serve it, for tests and benchmarks of
 * the bounded work of trust anchoring: near the 1 MiB root download limit, with a root key whose
 * certificate bundle carries a long chain of junk CA certificates named like the CA the verifier
 * pins (the worst case for a naive chain walk), thousands of junk keys, and a high version with
 * every older `<n>.root.json` served too, each signed by the attacker's own root key so the chain
 * of roots is internally consistent and only the trust anchor can refuse it.
 *
 * Everything is written as JSON directly, never through PublicKey, so building a fixture does not
 * warm the key memo of the process that then measures the verification.
 */
import {
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  type KeyObject,
} from 'node:crypto';
import { canonicalString, goHtmlEscape, type JsonValue } from '../canonical/json.js';
import * as der from '../keys/der.js';
import { encodePem } from '../keys/pem.js';
import { keyIdOf } from '../keys/public-key.js';
import { formatExpires } from '../metadata/write.js';
import { createTestCa } from './tls.js';

/** What to build; every field has a default that makes the 1 MiB case of issue 11. */
export interface HostileRootOptions {
  readonly gun: string;
  readonly now: Date;
  /** Size each root file is padded towards with junk keys; default just under 1 MiB. */
  readonly bytes?: number;
  /** Junk CA certificates bundled behind each root key's leaf; default 600. */
  readonly junkCas?: number;
  /** Whether the junk CAs carry the pinned CA's name (the chain search must look at them); default true. */
  readonly junkCasNamedLikePin?: boolean;
  /** Root-role keys, each a certificate bundle of its own leaf and the junk CAs; default 1. */
  readonly rootKeys?: number;
  /** Junk ecdsa keys listed besides; default: as many as fill `bytes` (the rest is padding). */
  readonly junkKeys?: number;
  /** The version `root.json` claims; default 1000. */
  readonly version?: number;
  /** How many older versions are served as `<n>.root.json` below it; default 64. */
  readonly olderVersions?: number;
}

/** The built files and the CA an operator pins (which issued nothing in them). */
export interface HostileRoot {
  readonly gun: string;
  /** PEM of the CA the verifier pins: the junk CAs carry its name, not its key. */
  readonly pinnedCaPem: string;
  /** `root.json` and `<n>.root.json` for each older version served. */
  readonly files: ReadonlyMap<string, Buffer>;
  /** The version root.json claims. */
  readonly version: number;
}

const DAY_MS = 24 * 3600 * 1000;
const PINNED_CA_NAME = 'Corp Notary Root CA';

/** Builds the hostile files; takes a few seconds at the default size. */
export function buildHostileRoot(options: HostileRootOptions): HostileRoot {
  const version = options.version ?? 1000;
  const targetBytes = options.bytes ?? (1 << 20) - 4096;
  const olderVersions = Math.min(options.olderVersions ?? 64, version - 1);
  const pinned = createTestCa({ commonName: PINNED_CA_NAME });
  const notBefore = new Date(options.now.getTime() - DAY_MS);
  const notAfter = new Date(options.now.getTime() + 365 * DAY_MS);

  // junk[i] is signed by junk[i-1]'s key and each leaf by the last one: walking the bundle in order
  // finds each parent only after trying every earlier certificate.
  const issuerName = name(options.junkCasNamedLikePin === false ? 'Junk CA' : PINNED_CA_NAME);
  const junk: string[] = [];
  let signer = newKey();
  for (let i = 0; i < (options.junkCas ?? 600); i++) {
    const key = newKey();
    junk.push(certificate(issuerName, issuerName, key, signer, true, notBefore, notAfter));
    signer = key;
  }
  const keys: Record<string, JsonValue> = {};
  const rootKeyIds: string[] = [];
  let rootKey: KeyObject | undefined;
  for (let i = 0; i < (options.rootKeys ?? 1); i++) {
    const key = newKey();
    rootKey ??= key;
    const leaf = certificate(
      name(options.gun),
      issuerName,
      key,
      signer,
      false,
      notBefore,
      notAfter,
    );
    const bundle = Buffer.from([leaf, ...junk].join(''), 'utf8').toString('base64');
    const keyJson = { keytype: 'ecdsa-x509', keyval: { private: null, public: bundle } };
    const id = keyIdOf(keyJson);
    keys[id] = keyJson;
    rootKeyIds.push(id);
  }
  if (!rootKey) throw new Error('a hostile root needs a root key');
  const rootKeyId = rootKeyIds[0] ?? '';
  let size = JSON.stringify(keys).length + 1024;
  let junkKeys = 0;
  while (options.junkKeys === undefined ? size < targetBytes : junkKeys < options.junkKeys) {
    const spki = createPublicKey(newKey())
      .export({ format: 'der', type: 'spki' })
      .toString('base64');
    const keyJson = { keytype: 'ecdsa', keyval: { private: null, public: spki } };
    const id = keyIdOf(keyJson);
    keys[id] = keyJson;
    size += id.length + JSON.stringify(keyJson).length + 4;
    junkKeys++;
  }
  // Unknown fields are ignored by notary (and by us) but still parsed and signed over.
  const padding = 'x'.repeat(Math.max(0, targetBytes - size));
  // The other roles' keys: the first root key (the attacker holds it anyway).
  const role = { keyids: [rootKeyId], threshold: 1 };
  const rootRole = { keyids: rootKeyIds, threshold: 1 };
  const files = new Map<string, Buffer>();
  for (let v = version - olderVersions; v <= version; v++) {
    const signed = {
      _type: 'Root',
      consistent_snapshot: false,
      expires: formatExpires(new Date(options.now.getTime() + 365 * DAY_MS)),
      keys,
      padding,
      roles: { root: rootRole, targets: role, snapshot: role, timestamp: role },
      version: v,
    };
    const canonical = canonicalString(signed);
    const sig = sign('sha256', Buffer.from(canonical, 'utf8'), {
      key: rootKey,
      dsaEncoding: 'ieee-p1363',
    }).toString('base64');
    const bytes = Buffer.from(
      goHtmlEscape(
        `{"signed":${canonical},"signatures":[{"keyid":"${rootKeyId}","method":"ecdsa","sig":"${sig}"}]}`,
      ),
      'utf8',
    );
    files.set(`${v}.root.json`, bytes);
    if (v === version) files.set('root.json', bytes);
  }
  return { gun: options.gun, pinnedCaPem: pinned.certPem, files, version };
}

/** A root certificate for `gun` issued by a fresh CA through `intermediates` CAs, bundled leaf first with the intermediates in reverse order (a chain search must not rely on order). */
export function caIssuedRootCertificate(
  gun: string,
  now: Date,
  intermediates = 1,
): { readonly caPem: string; readonly bundlePem: string; readonly privateKey: KeyObject } {
  const notBefore = new Date(now.getTime() - DAY_MS);
  const notAfter = new Date(now.getTime() + 365 * DAY_MS);
  const caKey = newKey();
  const caName = name('Issuing Test CA');
  const caPem = certificate(caName, caName, caKey, caKey, true, notBefore, notAfter);
  const chain: string[] = [];
  let issuer = { name: caName, key: caKey };
  for (let i = 0; i < intermediates; i++) {
    const key = newKey();
    const subject = name(`Intermediate Test CA ${i + 1}`);
    chain.unshift(certificate(subject, issuer.name, key, issuer.key, true, notBefore, notAfter));
    issuer = { name: subject, key };
  }
  const privateKey = newKey();
  const leaf = certificate(
    name(gun),
    issuer.name,
    privateKey,
    issuer.key,
    false,
    notBefore,
    notAfter,
  );
  return { caPem, bundlePem: [leaf, ...chain.reverse()].join(''), privateKey };
}

function newKey(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}

function name(commonName: string): Buffer {
  return der.sequence(der.set(der.sequence(der.oid('2.5.4.3'), der.directoryString(commonName))));
}

/** A P-256 certificate with the given names, CA flag and signer; no key identifiers. */
function certificate(
  subject: Buffer,
  issuer: Buffer,
  subjectKey: KeyObject,
  issuerKey: KeyObject,
  ca: boolean,
  notBefore: Date,
  notAfter: Date,
): string {
  const algorithm = der.sequence(der.oid('1.2.840.10045.4.3.2'));
  const extensions = der.sequence(
    der.sequence(
      der.oid('2.5.29.19'),
      der.boolean(true),
      der.octetString(ca ? der.sequence(der.boolean(true)) : der.sequence()),
    ),
  );
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)),
    der.integer(Buffer.concat([Buffer.from([0x01]), randomBytes(15)])),
    algorithm,
    issuer,
    der.sequence(der.time(notBefore), der.time(notAfter)),
    subject,
    createPublicKey(subjectKey).export({ format: 'der', type: 'spki' }),
    der.explicit(3, extensions),
  );
  const signature = sign('sha256', tbs, issuerKey);
  return encodePem('CERTIFICATE', der.sequence(tbs, algorithm, der.bitString(signature)));
}
