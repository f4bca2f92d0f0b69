import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isTrustError } from '../src/errors.js';
import * as der from '../src/keys/der.js';
import { decodePem } from '../src/keys/pem.js';
import {
  PublicKey,
  checkRootCertificate,
  createRootCertificate,
  generateSigningKey,
  type PublicKeyJson,
} from '../src/keys/index.js';
import { buildCertificate, type CertificateSpec } from './support/certificates.js';
import { NOTARY_FIXTURES } from './support/fixtures.js';

const DAY = 24 * 60 * 60 * 1000;
const NOW = new Date(Date.UTC(2026, 5, 15, 12, 0, 0));
const GUN = 'example.com/x';

/** The ecdsa-x509 root certificate `notary init example.com/x` made (see fixtures/notary-0.7.0). */
function notaryCertificate(): Buffer {
  const root = JSON.parse(readFileSync(new URL('root.json', NOTARY_FIXTURES), 'utf8')) as {
    signed: { keys: Record<string, PublicKeyJson> };
  };
  const key = Object.values(root.signed.keys).find((k) => k.keytype === 'ecdsa-x509');
  assert.ok(key);
  const [block] = decodePem(Buffer.from(key.keyval.public, 'base64').toString('utf8')).blocks;
  assert.ok(block);
  return block.bytes;
}

/** The TBSCertificate fields by name. */
function tbsFields(certificate: Buffer): Record<string, der.DerElement> {
  const [tbs, algorithm] = der.children(der.readElement(certificate));
  assert.ok(tbs && algorithm);
  const names = [
    'version',
    'serial',
    'signature',
    'issuer',
    'validity',
    'subject',
    'spki',
    'extensions',
  ];
  const fields = der.children(tbs);
  assert.equal(fields.length, names.length);
  const entries: [string, der.DerElement][] = names.map((n, k) => [n, fields[k] ?? assert.fail()]);
  entries.push(['outerAlgorithm', algorithm]);
  return Object.fromEntries(entries);
}

function pemBytes(pem: string): Buffer {
  const [block] = decodePem(pem).blocks;
  assert.ok(block);
  return block.bytes;
}

describe('createRootCertificate', () => {
  it('matches the certificate notary init makes, field for field', async () => {
    const ours = tbsFields(pemBytes(await createRootCertificate(GUN, generateSigningKey())));
    const theirs = tbsFields(notaryCertificate());
    // Everything but the serial, validity dates, key and signature is byte-identical.
    for (const field of [
      'version',
      'signature',
      'issuer',
      'subject',
      'extensions',
      'outerAlgorithm',
    ]) {
      assert.deepEqual(ours[field]?.encoded, theirs[field]?.encoded, field);
    }
    for (const field of ['serial', 'validity', 'spki']) {
      assert.equal(ours[field]?.tag, theirs[field]?.tag, field);
    }
    const validityTags = (f: Record<string, der.DerElement>): number[] =>
      der.children(f['validity'] ?? assert.fail()).map((e) => e.tag);
    assert.deepEqual(validityTags(ours), validityTags(theirs));
  });

  it('is self-signed, CN=GUN only, not a CA, code signing, valid 10 × 365 days', async () => {
    const privateKey = generateSigningKey();
    const notBefore = new Date(Date.UTC(2026, 1, 3, 4, 5, 6, 789));
    const cert = new X509Certificate(await createRootCertificate(GUN, privateKey, { notBefore }));
    assert.equal(cert.subject, `CN=${GUN}`);
    assert.equal(cert.issuer, `CN=${GUN}`);
    assert.equal(cert.ca, false);
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.3']);
    assert.equal(cert.verify(cert.publicKey), true);
    assert.equal(new Date(cert.validFrom).getTime(), Date.UTC(2026, 1, 3, 4, 5, 6));
    assert.equal(new Date(cert.validTo).getTime(), Date.UTC(2026, 1, 3, 4, 5, 6) + 3650 * DAY);
    assert.equal(
      PublicKey.fromCertificatePem(cert.toString()).canonicalId,
      PublicKey.fromKeyObject(privateKey).id,
    );
  });

  it('honours years, and switches to GeneralizedTime from 2050 as Go does', async () => {
    const notBefore = new Date(Date.UTC(2045, 0, 1));
    const pem = await createRootCertificate(GUN, generateSigningKey(), { notBefore, years: 6 });
    const [start, end] = der.children(tbsFields(pemBytes(pem))['validity'] ?? assert.fail());
    assert.equal(start?.tag, der.Tag.UTC_TIME);
    assert.equal(end?.tag, der.Tag.GENERALIZED_TIME);
    assert.equal(der.readTime(end ?? assert.fail()).getTime(), notBefore.getTime() + 6 * 365 * DAY);
  });

  it('writes the CN as UTF8String when a GUN has characters PrintableString lacks', async () => {
    const pem = await createRootCertificate('example.com/my_app', generateSigningKey());
    const subject = tbsFields(pemBytes(pem))['subject'] ?? assert.fail();
    const value = der.children(
      der.children(der.children(subject)[0] ?? assert.fail())[0] ?? assert.fail(),
    )[1];
    assert.equal(value?.tag, der.Tag.UTF8_STRING);
    assert.equal(new X509Certificate(pem).subject, 'CN=example.com/my_app');
  });

  it('draws a fresh positive serial of at most 128 bits each time', async () => {
    const key = generateSigningKey();
    const serials = await Promise.all(
      [1, 2, 3].map(
        async () => new X509Certificate(await createRootCertificate(GUN, key)).serialNumber,
      ),
    );
    assert.equal(new Set(serials).size, 3);
    for (const s of serials) assert.ok(BigInt(`0x${s}`) > 0n && BigInt(`0x${s}`) < 2n ** 128n);
  });

  it('needs a P-256 private key, and says so by rejecting', async () => {
    const invalid = (e: unknown): boolean => isTrustError(e, 'KEY_INVALID');
    await assert.rejects(createRootCertificate(GUN, generateSigningKey('ed25519')), invalid);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    await assert.rejects(createRootCertificate(GUN, p384), invalid);
    const publicOnly = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    await assert.rejects(createRootCertificate(GUN, publicOnly), invalid);
  });
});

describe('checkRootCertificate', () => {
  const ecKey = generateSigningKey();
  const keyFor = (spec: Partial<CertificateSpec>): PublicKey =>
    PublicKey.fromCertificatePem(buildCertificate({ signingKey: ecKey, ...spec }));
  const rejects = (key: PublicKey, gun: string, problem: RegExp): void => {
    assert.throws(
      () => {
        checkRootCertificate(key, gun, NOW);
      },
      (e: unknown) =>
        isTrustError(e, 'CERTIFICATE_INVALID') &&
        e.facts.gun === gun &&
        e.facts.keyId === key.id &&
        problem.test(e.facts.problem),
    );
  };

  it('accepts the baseline certificate, and our own and notary-made ones', async () => {
    checkRootCertificate(keyFor({}), GUN, NOW);
    const ours = PublicKey.fromCertificatePem(
      await createRootCertificate(GUN, ecKey, { notBefore: NOW }),
    );
    checkRootCertificate(ours, GUN, NOW);
    const notary = PublicKey.fromCertificatePem(notaryPem());
    checkRootCertificate(notary, GUN, new Date(Date.UTC(2030, 0, 1)));
  });

  it('CN ≠ GUN', () => {
    rejects(keyFor({}), 'example.com/other', /CN "example.com\/x" does not match/);
  });

  it('a CN ending in * is a prefix of the GUN (trustpinning.MatchCNToGun)', () => {
    const wildcard = keyFor({ commonNames: ['example.com/*'] });
    checkRootCertificate(wildcard, 'example.com/x/y', NOW);
    rejects(wildcard, 'example.org/x', /does not match/);
  });

  it('the last CN counts when there are several, as in Go', () => {
    rejects(keyFor({ commonNames: [GUN, 'other'] }), GUN, /CN "other"/);
    checkRootCertificate(keyFor({ commonNames: ['other', GUN] }), GUN, NOW);
  });

  it('CA:TRUE', () => {
    rejects(keyFor({ ca: true }), GUN, /is a CA/);
  });

  it('expired, and not yet valid beyond the one-day leeway', () => {
    rejects(keyFor({ notAfter: new Date(NOW.getTime() - 1000) }), GUN, /expired at/);
    checkRootCertificate(keyFor({ notAfter: NOW }), GUN, NOW);
    rejects(keyFor({ notBefore: new Date(NOW.getTime() + DAY + 1000) }), GUN, /not valid until/);
    checkRootCertificate(keyFor({ notBefore: new Date(NOW.getTime() + DAY - 1000) }), GUN, NOW);
  });

  it('an inverted validity window', () => {
    const notBefore = new Date(NOW.getTime() - 2 * DAY);
    rejects(keyFor({ notBefore, notAfter: new Date(notBefore.getTime() - 1000) }), GUN, /window/);
  });

  it('SHA-1 signatures, ECDSA and RSA', () => {
    rejects(keyFor({ hash: 'sha1' }), GUN, /SHA-1/);
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rsa = (hash: 'sha1' | 'sha256'): PublicKey =>
      PublicKey.fromCertificatePem(buildCertificate({ signingKey: privateKey, hash }));
    checkRootCertificate(rsa('sha256'), GUN, NOW);
    rejects(rsa('sha1'), GUN, /SHA-1 with RSA/);
  });

  it('RSA keys under 2048 bits', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    rejects(
      PublicKey.fromCertificatePem(buildCertificate({ signingKey: privateKey })),
      GUN,
      /1024 bits/,
    );
  });

  it('a bundle that does not start with its only leaf', () => {
    const leaf = buildCertificate({ signingKey: ecKey });
    const ca = buildCertificate({ signingKey: generateSigningKey(), ca: true });
    checkRootCertificate(PublicKey.fromCertificatePem(leaf + ca), GUN, NOW);
    rejects(PublicKey.fromCertificatePem(ca + leaf), GUN, /is a CA/);
    rejects(
      PublicKey.fromCertificatePem(leaf + buildCertificate({ signingKey: ecKey })),
      GUN,
      /more than one leaf/,
    );
  });

  it('a key without a certificate', () => {
    rejects(PublicKey.fromKeyObject(ecKey), GUN, /carries no certificate/);
  });
});

function notaryPem(): string {
  const bytes = notaryCertificate();
  return `-----BEGIN CERTIFICATE-----\n${bytes.toString('base64')}\n-----END CERTIFICATE-----\n`;
}
