import assert from 'node:assert/strict';
import {
  constants,
  createHash,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { canonicalBytes } from '../src/canonical/json.js';
import { isTrustError } from '../src/errors.js';
import {
  PublicKey,
  createRootCertificate,
  generateSigningKey,
  keyIdOf,
  localSigner,
  type PublicKeyJson,
} from '../src/keys/index.js';
import { buildCertificate } from './support/certificates.js';
import { NOTARY_FIXTURES } from './support/fixtures.js';

const FIXTURES = NOTARY_FIXTURES;
const CONTEXT = { role: 'root', field: 'signed.keys.k' };

interface Signed {
  signed: unknown;
  signatures: { keyid: string; method: string; sig: string }[];
}

function fixture(name: string): Signed {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as Signed;
}

const notaryRoot = fixture('root.json');
const notaryKeys = (notaryRoot.signed as { keys: Record<string, PublicKeyJson> }).keys;

function notaryKey(id: string): PublicKey {
  return PublicKey.fromJson(notaryKeys[id], CONTEXT);
}

function flipBit(bytes: Uint8Array, index = 0): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[index] = (copy[index] ?? 0) ^ 0x01;
  return copy;
}

function keyJson(keytype: string, pub: Uint8Array | string): PublicKeyJson {
  const value = typeof pub === 'string' ? pub : Buffer.from(pub).toString('base64');
  return { keytype, keyval: { public: value, private: null } };
}

function spki(key: KeyObject): Buffer {
  const pub = key.type === 'public' ? key : createPublicKey(key);
  return pub.export({ format: 'der', type: 'spki' });
}

const data = Buffer.from('{"_type":"Targets","version":2}');

describe('key ids', () => {
  it('is the sha256 of the canonical key JSON, private null included (hashed by hand)', () => {
    const pub = spki(generateSigningKey()).toString('base64');
    const byHand = createHash('sha256')
      .update(`{"keytype":"ecdsa","keyval":{"private":null,"public":"${pub}"}}`)
      .digest('hex');
    assert.equal(keyIdOf(keyJson('ecdsa', pub)), byHand);
    assert.equal(PublicKey.fromJson(keyJson('ecdsa', pub), CONTEXT).id, byHand);
  });

  it('matches every key id in a root.json written by notary 0.7.0', () => {
    const types = Object.entries(notaryKeys).map(([id, json]) => {
      const key = PublicKey.fromJson(json, CONTEXT);
      assert.equal(key.id, id);
      assert.deepEqual(key.toJson(), json);
      return key.type;
    });
    assert.deepEqual(types.sort(), ['ecdsa', 'ecdsa', 'ecdsa-x509', 'ed25519']);
  });

  it('gives an ecdsa-x509 key the canonical id notary names its private key file by', () => {
    const root = notaryKey('807565267f058df81e17dbb073852bb25c74eca53310878506483988ad022ed9');
    assert.equal(root.type, 'ecdsa-x509');
    assert.equal(
      root.canonicalId,
      'dfb1451bf5539d73d0748e116ed80bc1e23d87fe37d1e0119b2cb85a9112e89c',
    );
    assert.ok(root.certificate);
    const bare = createHash('sha256')
      .update(
        `{"keytype":"ecdsa","keyval":{"private":null,"public":"${spki(root.certificate.publicKey).toString('base64')}"}}`,
      )
      .digest('hex');
    assert.equal(root.canonicalId, bare);
  });

  it('keeps canonicalId equal to id for bare keys', () => {
    for (const type of ['ecdsa', 'ed25519'] as const) {
      const key = PublicKey.fromKeyObject(generateSigningKey(type));
      assert.equal(key.canonicalId, key.id);
      assert.equal(key.certificate, undefined);
    }
  });

  it('computes the id over re-encoded base64, as Go decodes keyval.public into bytes', () => {
    const pub = spki(generateSigningKey()).toString('base64');
    const wrapped = `${pub.slice(0, 40)}\n${pub.slice(40)}`;
    const key = PublicKey.fromJson(keyJson('ecdsa', wrapped), CONTEXT);
    assert.equal(key.publicValue, pub);
    assert.equal(key.id, keyIdOf(keyJson('ecdsa', pub)));
  });
});

describe('PublicKey.fromKeyObject / fromCertificatePem', () => {
  it('encodes ecdsa and rsa as DER SubjectPublicKeyInfo and ed25519 as the raw 32 bytes', () => {
    const ec = generateSigningKey('ecdsa');
    assert.equal(PublicKey.fromKeyObject(ec).publicValue, spki(ec).toString('base64'));
    const ed = generateSigningKey('ed25519');
    const raw = Buffer.from(PublicKey.fromKeyObject(ed).publicValue, 'base64');
    assert.equal(raw.length, 32);
    assert.deepEqual(raw, spki(ed).subarray(-32));
    const { privateKey: rsa } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rsaKey = PublicKey.fromKeyObject(createPublicKey(rsa));
    assert.equal(rsaKey.type, 'rsa');
    assert.equal(rsaKey.publicValue, spki(rsa).toString('base64'));
  });

  it('refuses keys notary cannot use', () => {
    const { privateKey } = generateKeyPairSync('x25519');
    assert.throws(
      () => PublicKey.fromKeyObject(privateKey),
      (e: unknown) => isTrustError(e, 'KEY_INVALID'),
    );
    const p224 = generateKeyPairSync('ec', { namedCurve: 'secp224r1' }).privateKey;
    assert.throws(
      () => PublicKey.fromKeyObject(p224),
      (e: unknown) => isTrustError(e, 'KEY_INVALID'),
    );
  });

  it('stores the certificate PEM text as keyval.public and ids it by its bare key', async () => {
    const privateKey = generateSigningKey();
    const pem = await createRootCertificate('example.com/x', privateKey);
    const key = PublicKey.fromCertificatePem(pem.replace(/\n/g, '\r\n'));
    assert.equal(key.type, 'ecdsa-x509');
    assert.equal(Buffer.from(key.publicValue, 'base64').toString('utf8'), pem);
    assert.deepEqual(key.toJson(), keyJson('ecdsa-x509', Buffer.from(pem)));
    assert.notEqual(key.id, key.canonicalId);
    assert.equal(key.canonicalId, PublicKey.fromKeyObject(privateKey).id);
  });

  it('types an RSA certificate rsa-x509', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const key = PublicKey.fromCertificatePem(buildCertificate({ signingKey: privateKey }));
    assert.equal(key.type, 'rsa-x509');
    assert.equal(key.canonicalId, PublicKey.fromKeyObject(privateKey).id);
  });

  it('refuses a PEM without a certificate', () => {
    assert.throws(
      () => PublicKey.fromCertificatePem('not a certificate'),
      (e: unknown) =>
        isTrustError(e, 'KEY_INVALID') && e.facts.problem === 'no PEM certificate found',
    );
  });
});

describe('PublicKey.fromJson rejects one defect at a time', () => {
  const good = keyJson('ecdsa', spki(generateSigningKey()));
  const malformed = (field: string) => (e: unknown) =>
    isTrustError(e, 'METADATA_MALFORMED') && e.facts.role === 'root' && e.facts.field === field;
  const invalid = (keyType: string) => (e: unknown) =>
    isTrustError(e, 'KEY_INVALID') &&
    e.facts.keyType === keyType &&
    /^[0-9a-f]{64}$/.test(e.facts.keyId);

  it('accepts the good key, and a missing keyval.private', () => {
    PublicKey.fromJson(good, CONTEXT);
    PublicKey.fromJson({ keytype: 'ecdsa', keyval: { public: good.keyval.public } }, CONTEXT);
  });

  it('shape problems are METADATA_MALFORMED with the field path', () => {
    assert.throws(() => PublicKey.fromJson(null, CONTEXT), malformed('signed.keys.k'));
    assert.throws(() => PublicKey.fromJson([good], CONTEXT), malformed('signed.keys.k'));
    assert.throws(
      () => PublicKey.fromJson({ ...good, keytype: 1 }, CONTEXT),
      malformed('signed.keys.k.keytype'),
    );
    assert.throws(
      () => PublicKey.fromJson({ keytype: 'ecdsa' }, CONTEXT),
      malformed('signed.keys.k.keyval'),
    );
    assert.throws(
      () => PublicKey.fromJson({ keytype: 'ecdsa', keyval: { public: 5, private: null } }, CONTEXT),
      malformed('signed.keys.k.keyval.public'),
    );
    assert.throws(
      () =>
        PublicKey.fromJson(
          { keytype: 'ecdsa', keyval: { ...good.keyval, private: 'AAAA' } },
          CONTEXT,
        ),
      malformed('signed.keys.k.keyval.private'),
    );
    assert.throws(
      () => PublicKey.fromJson(keyJson('ecdsa', good.keyval.public.slice(1)), CONTEXT),
      malformed('signed.keys.k.keyval.public'),
    );
    assert.throws(
      () => PublicKey.fromJson(keyJson('ecdsa', `${good.keyval.public.slice(0, -4)}A-B=`), CONTEXT),
      malformed('signed.keys.k.keyval.public'),
    );
  });

  it('content problems are KEY_INVALID with the computed id and key type', () => {
    assert.throws(
      () => PublicKey.fromJson({ ...good, keytype: 'ECDSA' }, CONTEXT),
      invalid('ECDSA'),
    );
    assert.throws(() => PublicKey.fromJson({ ...good, keytype: 'rsa' }, CONTEXT), invalid('rsa'));
    assert.throws(
      () => PublicKey.fromJson({ ...good, keytype: 'ed25519' }, CONTEXT),
      invalid('ed25519'),
    );
    assert.throws(
      () => PublicKey.fromJson({ ...good, keytype: 'ecdsa-x509' }, CONTEXT),
      invalid('ecdsa-x509'),
    );
    const withTrailer = Buffer.concat([
      Buffer.from(good.keyval.public, 'base64'),
      Buffer.from([0]),
    ]);
    assert.throws(
      () => PublicKey.fromJson(keyJson('ecdsa', withTrailer), CONTEXT),
      invalid('ecdsa'),
    );
    const p224 = generateKeyPairSync('ec', { namedCurve: 'secp224r1' }).publicKey;
    assert.throws(
      () => PublicKey.fromJson(keyJson('ecdsa', spki(p224)), CONTEXT),
      invalid('ecdsa'),
    );
    const ed = Buffer.from(
      PublicKey.fromKeyObject(generateSigningKey('ed25519')).publicValue,
      'base64',
    );
    assert.throws(
      () => PublicKey.fromJson(keyJson('ed25519', ed.subarray(1)), CONTEXT),
      invalid('ed25519'),
    );
  });

  it('an x509 key must hold certificates of its own key type', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rsaPem = buildCertificate({ signingKey: privateKey });
    PublicKey.fromJson(keyJson('rsa-x509', Buffer.from(rsaPem)), CONTEXT);
    assert.throws(
      () => PublicKey.fromJson(keyJson('ecdsa-x509', Buffer.from(rsaPem)), CONTEXT),
      invalid('ecdsa-x509'),
    );
    const block = rsaPem
      .replace('CERTIFICATE', 'PUBLIC KEY')
      .replace('END CERTIFICATE', 'END PUBLIC KEY');
    assert.throws(
      () => PublicKey.fromJson(keyJson('rsa-x509', Buffer.from(block)), CONTEXT),
      invalid('rsa-x509'),
    );
    assert.throws(
      () => PublicKey.fromJson(keyJson('rsa-x509', Buffer.from(`junk\n${rsaPem}`)), CONTEXT),
      invalid('rsa-x509'),
    );
  });
});

describe('signatures notary 0.7.0 made', () => {
  it('verifies the ecdsa signature on root.json over the canonical bytes of signed', () => {
    const [sig] = notaryRoot.signatures;
    assert.ok(sig);
    assert.equal(sig.method, 'ecdsa');
    const key = notaryKey(sig.keyid);
    const bytes = canonicalBytes(notaryRoot.signed);
    const raw = Buffer.from(sig.sig, 'base64');
    assert.equal(raw.length, 64);
    assert.equal(key.verify('ecdsa', bytes, raw), true);
    assert.equal(key.verify('ecdsa', bytes, flipBit(raw, 63)), false);
    assert.equal(key.verify('ecdsa', flipBit(bytes, 10), raw), false);
  });

  it("verifies the server's eddsa signature on timestamp.json", () => {
    const timestamp = fixture('timestamp.json');
    const [sig] = timestamp.signatures;
    assert.ok(sig);
    assert.equal(sig.method, 'eddsa');
    const key = notaryKey(sig.keyid);
    assert.equal(key.type, 'ed25519');
    const raw = Buffer.from(sig.sig, 'base64');
    assert.equal(key.verify('eddsa', canonicalBytes(timestamp.signed), raw), true);
    assert.equal(key.verify('eddsa', canonicalBytes(timestamp.signed), flipBit(raw, 5)), false);
  });
});

describe('sign / verify', () => {
  const cases = [
    { type: 'ecdsa', method: 'ecdsa', length: 64 },
    { type: 'ed25519', method: 'eddsa', length: 64 },
    { type: 'rsa', method: 'rsapss', length: 384 },
  ] as const;
  const keys = new Map(cases.map((c) => [c.type, generateSigningKey(c.type)]));

  for (const { type, method, length } of cases) {
    describe(`${type} (${method})`, () => {
      const privateKey = keys.get(type);
      assert.ok(privateKey);
      const signer = localSigner(privateKey);

      it('round trips with the method notary expects for the key type', async () => {
        assert.equal(signer.method, method);
        assert.equal(signer.publicKey.id, PublicKey.fromKeyObject(privateKey).id);
        const sig = await signer.sign(data);
        assert.equal(sig.length, length);
        assert.equal(signer.publicKey.verify(method, data, sig), true);
      });

      it('rejects a flipped bit in the signature', async () => {
        const sig = await signer.sign(data);
        assert.equal(signer.publicKey.verify(method, data, flipBit(sig, sig.length - 1)), false);
      });

      it('rejects a flipped bit in the data', async () => {
        const sig = await signer.sign(data);
        assert.equal(signer.publicKey.verify(method, flipBit(data, 3), sig), false);
      });

      it('rejects a truncated or empty signature', async () => {
        const sig = await signer.sign(data);
        assert.equal(signer.publicKey.verify(method, data, sig.subarray(0, sig.length - 1)), false);
        assert.equal(signer.publicKey.verify(method, data, new Uint8Array(0)), false);
      });

      it('rejects a signature by another key of the same type', async () => {
        const other = localSigner(generateSigningKey(type));
        assert.equal(signer.publicKey.verify(method, data, await other.sign(data)), false);
      });

      it('rejects every method notary does not allow for the key type', async () => {
        const sig = await signer.sign(data);
        const allowed: readonly string[] = type === 'rsa' ? ['rsapss', 'rsapkcs1v15'] : [method];
        for (const wrong of [
          'ecdsa',
          'eddsa',
          'rsapss',
          'rsapkcs1v15',
          'pycrypto-pkcs#1 pss',
          'none',
          '',
        ]) {
          if (allowed.includes(wrong)) continue;
          assert.equal(signer.publicKey.verify(wrong, data, sig), false, wrong);
        }
      });

      it('lower-cases the method as notary does when decoding a signature', async () => {
        assert.equal(
          signer.publicKey.verify(method.toUpperCase(), data, await signer.sign(data)),
          true,
        );
      });
    });
  }

  it('rejects an ASN.1 DER ecdsa signature (v0.7.0 takes only r‖s)', () => {
    const privateKey = generateSigningKey('ecdsa');
    const key = PublicKey.fromKeyObject(privateKey);
    const derSig = sign('sha256', data, { key: privateKey, dsaEncoding: 'der' });
    assert.equal(key.verify('ecdsa', data, derSig), false);
    const p1363 = sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    assert.equal(key.verify('ecdsa', data, p1363), true);
  });

  it('accepts rsapkcs1v15 (SHA-256) for an rsa key, and PSS only with a 32-byte salt', () => {
    const privateKey = keys.get('rsa');
    assert.ok(privateKey);
    const key = PublicKey.fromKeyObject(privateKey);
    const pkcs1 = sign('sha256', data, { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
    assert.equal(key.verify('rsapkcs1v15', data, pkcs1), true);
    assert.equal(key.verify('rsapss', data, pkcs1), false);
    const pss = (saltLength: number): Buffer =>
      sign('sha256', data, {
        key: privateKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength,
      });
    assert.equal(key.verify('rsapss', data, pss(32)), true);
    assert.equal(key.verify('rsapss', data, pss(20)), false);
    assert.equal(key.verify('rsapss', data, pss(64)), false);
  });

  it('rejects RSA keys shorter than 2048 bits even with a valid signature', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const key = PublicKey.fromKeyObject(privateKey);
    const sig = sign('sha256', data, { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
    assert.equal(key.verify('rsapkcs1v15', data, sig), false);
  });

  it('signs for an ecdsa-x509 root key with the method ecdsa', async () => {
    const privateKey = generateSigningKey();
    const cert = PublicKey.fromCertificatePem(
      await createRootCertificate('example.com/x', privateKey),
    );
    const signer = localSigner(privateKey, cert);
    assert.equal(signer.publicKey, cert);
    assert.equal(signer.method, 'ecdsa');
    assert.equal(cert.verify('ecdsa', data, await signer.sign(data)), true);
  });

  it('refuses a public key that does not belong to the private key', () => {
    const other = PublicKey.fromKeyObject(generateSigningKey());
    assert.throws(
      () => localSigner(generateSigningKey(), other),
      (e: unknown) => isTrustError(e, 'KEY_INVALID') && e.facts.keyId === other.id,
    );
    assert.throws(
      () => localSigner(createPublicKey(generateSigningKey())),
      (e: unknown) => isTrustError(e, 'KEY_INVALID'),
    );
  });
});
