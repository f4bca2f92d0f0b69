import assert from 'node:assert/strict';
import {
  createDecipheriv,
  createPrivateKey,
  generateKeyPairSync,
  pbkdf2Sync,
  type KeyObject,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isTrustError } from '../src/errors.js';
import * as der from '../src/keys/der.js';
import { decodePem } from '../src/keys/pem.js';
import {
  PublicKey,
  decodePrivateKeyPem,
  encodePrivateKeyPem,
  generateSigningKey,
} from '../src/keys/index.js';
import { NOTARY_FIXTURES } from './support/fixtures.js';

const PASSPHRASE = 'correct horse battery staple';
const FIXTURES = NOTARY_FIXTURES;

function idOf(key: KeyObject): string {
  return PublicKey.fromKeyObject(key).id;
}

/** Node (OpenSSL) refuses notary's role/gun headers; a reader has to drop them first. */
function withoutHeaders(pem: string): string {
  return pem.replace(/^(-----BEGIN [^\n]+-----\n)(?:[^\n]*:[^\n]*\n)+\n/, '$1');
}

function invalidKey(source: string, problem: RegExp, secret?: string) {
  return (e: unknown): boolean =>
    isTrustError(e, 'PRIVATE_KEY_INVALID') &&
    e.facts.source === source &&
    problem.test(e.facts.problem) &&
    (secret === undefined || (!e.message.includes(secret) && !e.facts.problem.includes(secret)));
}

describe('encodePrivateKeyPem', () => {
  for (const type of ['ecdsa', 'ed25519', 'rsa'] as const) {
    it(`round trips a ${type} key with its role and gun`, () => {
      const key = generateSigningKey(type);
      const pem = encodePrivateKeyPem(key, PASSPHRASE, { role: 'targets', gun: 'example.com/x' });
      const decoded = decodePrivateKeyPem(pem, PASSPHRASE, 'targets.key');
      assert.equal(idOf(decoded.privateKey), idOf(key));
      assert.equal(decoded.role, 'targets');
      assert.equal(decoded.gun, 'example.com/x');
    });
  }

  it('writes the headers the way Go does: sorted, then a blank line', () => {
    const pem = encodePrivateKeyPem(generateSigningKey(), PASSPHRASE, {
      role: 'targets',
      gun: 'h:5000/a',
    });
    assert.match(
      pem,
      /^-----BEGIN ENCRYPTED PRIVATE KEY-----\ngun: h:5000\/a\nrole: targets\n\n[A-Za-z0-9+/]{64}\n/,
    );
    assert.match(pem, /\n-----END ENCRYPTED PRIVATE KEY-----\n$/);
    const root = encodePrivateKeyPem(generateSigningKey(), PASSPHRASE, { role: 'root' });
    assert.match(root, /^-----BEGIN ENCRYPTED PRIVATE KEY-----\nrole: root\n\n/);
    const decoded = decodePrivateKeyPem(root, PASSPHRASE, 'root.key');
    assert.equal(decoded.role, 'root');
    assert.equal('gun' in decoded, false);
  });

  it('uses PBES2 with PBKDF2-HMAC-SHA1 (no PRF), 8-byte salt, 2048 rounds, AES-256-CBC', () => {
    const pem = encodePrivateKeyPem(generateSigningKey(), PASSPHRASE, { role: 'targets' });
    const [block] = decodePem(pem).blocks;
    assert.ok(block);
    const [algorithm] = der.children(der.readElement(block.bytes));
    const [pbes2, params] = der.children(algorithm ?? assert.fail());
    assert.equal(der.readOid(pbes2 ?? assert.fail()), '1.2.840.113549.1.5.13');
    const [kdf, scheme] = der.children(params ?? assert.fail());
    const [kdfId, kdfParams] = der.children(kdf ?? assert.fail());
    assert.equal(der.readOid(kdfId ?? assert.fail()), '1.2.840.113549.1.5.12');
    const fields = der.children(kdfParams ?? assert.fail());
    assert.equal(fields.length, 2, 'salt and iteration count only: the PRF defaults to HMAC-SHA1');
    assert.equal(fields[0]?.content.length, 8);
    assert.equal(der.readSmallInteger(fields[1] ?? assert.fail()), 2048);
    const [cipherId, iv] = der.children(scheme ?? assert.fail());
    assert.equal(der.readOid(cipherId ?? assert.fail()), '2.16.840.1.101.3.4.1.42');
    assert.equal(iv?.content.length, 16);
  });

  it('is readable by Node once the notary headers are dropped', () => {
    for (const type of ['ecdsa', 'rsa'] as const) {
      const key = generateSigningKey(type);
      const pem = encodePrivateKeyPem(key, PASSPHRASE, { role: 'targets', gun: 'example.com/x' });
      assert.throws(() => createPrivateKey({ key: pem, passphrase: PASSPHRASE }));
      const read = createPrivateKey({ key: withoutHeaders(pem), passphrase: PASSPHRASE });
      assert.equal(idOf(read), idOf(key));
    }
  });

  it("stores ed25519 in notary's own PKCS#8 form: OID 1.3.6.1.4.1.11591.15.1, public‖seed‖public", () => {
    const key = generateSigningKey('ed25519');
    const pem = encodePrivateKeyPem(key, PASSPHRASE, { role: 'targets' });
    const [block] = decodePem(pem).blocks;
    assert.ok(block);
    // Decrypt by hand: PBKDF2-SHA1 then AES-256-CBC.
    const [algorithm, encrypted] = der.children(der.readElement(block.bytes));
    const [, params] = der.children(algorithm ?? assert.fail());
    const [kdf, scheme] = der.children(params ?? assert.fail());
    const [salt] = der.children(der.children(kdf ?? assert.fail())[1] ?? assert.fail());
    const iv = der.children(scheme ?? assert.fail())[1];
    const secret = pbkdf2Sync(PASSPHRASE, salt?.content ?? assert.fail(), 2048, 32, 'sha1');
    const decipher = createDecipheriv('aes-256-cbc', secret, iv?.content ?? assert.fail());
    const plain = Buffer.concat([
      decipher.update(encrypted?.content ?? assert.fail()),
      decipher.final(),
    ]);
    const [version, keyAlgorithm, privateKey] = der.children(der.readElement(plain));
    assert.equal(der.readSmallInteger(version ?? assert.fail()), 0);
    assert.equal(
      der.readOid(der.children(keyAlgorithm ?? assert.fail())[0] ?? assert.fail()),
      '1.3.6.1.4.1.11591.15.1',
    );
    const jwk = key.export({ format: 'jwk' });
    const pub = Buffer.from(jwk.x ?? '', 'base64url');
    const seed = Buffer.from(jwk.d ?? '', 'base64url');
    assert.deepEqual(privateKey?.content, Buffer.concat([pub, seed, pub]));
  });

  it('refuses what notary could not read back', () => {
    const key = generateSigningKey();
    const fails = (problem: RegExp) => (e: unknown) =>
      isTrustError(e, 'PRIVATE_KEY_INVALID') && problem.test(e.facts.problem);
    assert.throws(
      () => encodePrivateKeyPem(key, '', { role: 'targets' }),
      fails(/passphrase is empty/),
    );
    assert.throws(
      () => encodePrivateKeyPem(key, PASSPHRASE, { role: 'a\nb' }),
      fails(/role header/),
    );
    assert.throws(
      () => encodePrivateKeyPem(key, PASSPHRASE, { role: ' targets' }),
      fails(/role header/),
    );
    assert.throws(() => encodePrivateKeyPem(key, PASSPHRASE, { role: '' }), fails(/role header/));
    assert.throws(
      () => encodePrivateKeyPem(key, PASSPHRASE, { role: 'targets', gun: 'x\r' }),
      fails(/gun header/),
    );
    const pub = PublicKey.fromKeyObject(key);
    assert.ok(pub);
    assert.throws(
      () =>
        encodePrivateKeyPem(
          generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
          PASSPHRASE,
          { role: 'targets' },
        ),
      fails(/not a private key/),
    );
    assert.throws(
      () =>
        encodePrivateKeyPem(generateKeyPairSync('x25519').privateKey, PASSPHRASE, {
          role: 'targets',
        }),
      fails(/cannot sign/),
    );
  });
});

describe('decodePrivateKeyPem', () => {
  it('reads the targets key file the notary CLI wrote, and its id is the file name', () => {
    const id = '07cd825ecbda7811bd53a010fa5fc247bd016e626bb051729b5275cb64920186';
    const pem = readFileSync(new URL(`${id}.key`, FIXTURES), 'utf8');
    const decoded = decodePrivateKeyPem(pem, 'targpass123', `${id}.key`);
    assert.equal(idOf(decoded.privateKey), id);
    assert.equal(decoded.role, 'targets');
    assert.equal(decoded.gun, 'example.com/x');
  });

  it('reads the root key file the notary CLI wrote; its id is the canonical id of the root.json cert key', () => {
    const id = 'dfb1451bf5539d73d0748e116ed80bc1e23d87fe37d1e0119b2cb85a9112e89c';
    const pem = readFileSync(new URL(`${id}.key`, FIXTURES), 'utf8');
    const decoded = decodePrivateKeyPem(pem, 'rootpass123', `${id}.key`);
    assert.equal(idOf(decoded.privateKey), id);
    assert.equal(decoded.role, 'root');
    assert.equal(decoded.gun, undefined);
  });

  it('wrong passphrase → PRIVATE_KEY_INVALID that names the source, never the passphrase', () => {
    const pem = encodePrivateKeyPem(generateSigningKey(), PASSPHRASE, { role: 'targets' });
    const wrong = 'hunter2-wrong-passphrase';
    assert.throws(
      () => decodePrivateKeyPem(pem, wrong, 'secret/key'),
      invalidKey('secret/key', /wrong passphrase/, wrong),
    );
    // Enough wrong passphrases that some decrypt with valid padding into garbage (1 in 256 each).
    for (let i = 0; i < 600; i++) {
      assert.throws(
        () => decodePrivateKeyPem(pem, `guess-${i}`, 'k'),
        invalidKey('k', /wrong passphrase/, `guess-${i}`),
      );
    }
  });

  it('an encrypted key without a passphrase', () => {
    const pem = encodePrivateKeyPem(generateSigningKey(), PASSPHRASE, { role: 'targets' });
    assert.throws(() => decodePrivateKeyPem(pem, undefined, 'k'), invalidKey('k', /no passphrase/));
    assert.throws(() => decodePrivateKeyPem(pem, '', 'k'), invalidKey('k', /no passphrase/));
  });

  it('a corrupted ciphertext byte', () => {
    const pem = encodePrivateKeyPem(generateSigningKey(), PASSPHRASE, { role: 'targets' });
    const [block] = decodePem(pem).blocks;
    assert.ok(block);
    const bytes = Buffer.from(block.bytes);
    const last = bytes.length - 1;
    bytes[last] = (bytes[last] ?? 0) ^ 0xff;
    const b64 = bytes.toString('base64').replace(/.{64}/g, '$&\n');
    const broken = `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${b64}\n-----END ENCRYPTED PRIVATE KEY-----\n`;
    assert.throws(
      () => decodePrivateKeyPem(broken, PASSPHRASE, 'k'),
      invalidKey('k', /wrong passphrase|corrupt/),
    );
  });

  it('garbage, a truncated block, two blocks, an unsupported block type', () => {
    const pem = encodePrivateKeyPem(generateSigningKey(), PASSPHRASE, { role: 'targets' });
    assert.throws(
      () => decodePrivateKeyPem('hello', PASSPHRASE, 'k'),
      invalidKey('k', /no PEM block/),
    );
    assert.throws(
      () => decodePrivateKeyPem(pem.slice(0, 200), PASSPHRASE, 'k'),
      invalidKey('k', /no END line/),
    );
    assert.throws(
      () => decodePrivateKeyPem(pem + pem, PASSPHRASE, 'k'),
      invalidKey('k', /more than one/),
    );
    const cert = pem.replaceAll('ENCRYPTED PRIVATE KEY', 'CERTIFICATE');
    assert.throws(
      () => decodePrivateKeyPem(cert, PASSPHRASE, 'k'),
      invalidKey('k', /unsupported PEM block "CERTIFICATE"/),
    );
    const notDer =
      '-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n';
    assert.throws(
      () => decodePrivateKeyPem(notDer, PASSPHRASE, 'k'),
      invalidKey('k', /not a PKCS#8 PBES2/),
    );
  });

  it("reads Node's own PBES2 export (HMAC-SHA256), unencrypted PKCS#8 and SEC1, and legacy encrypted SEC1", () => {
    const key = generateSigningKey();
    const id = idOf(key);
    const forms = [
      {
        pem: key.export({
          format: 'pem',
          type: 'pkcs8',
          cipher: 'aes-256-cbc',
          passphrase: PASSPHRASE,
        }),
        pass: PASSPHRASE,
      },
      { pem: key.export({ format: 'pem', type: 'pkcs8' }), pass: undefined },
      { pem: key.export({ format: 'pem', type: 'sec1' }), pass: undefined },
      {
        pem: key.export({
          format: 'pem',
          type: 'sec1',
          cipher: 'aes-128-cbc',
          passphrase: PASSPHRASE,
        }),
        pass: PASSPHRASE,
      },
    ];
    for (const { pem, pass } of forms) {
      const decoded = decodePrivateKeyPem(pem.toString(), pass, 'k');
      assert.equal(idOf(decoded.privateKey), id);
      assert.equal(decoded.role, undefined);
    }
    const legacy = key
      .export({ format: 'pem', type: 'sec1', cipher: 'aes-128-cbc', passphrase: PASSPHRASE })
      .toString();
    assert.match(legacy, /Proc-Type: 4,ENCRYPTED/);
    assert.throws(
      () => decodePrivateKeyPem(legacy, 'Tr0ub4dor', 'k'),
      invalidKey('k', /wrong passphrase/, 'Tr0ub4dor'),
    );
    assert.throws(
      () => decodePrivateKeyPem(legacy, undefined, 'k'),
      invalidKey('k', /no passphrase/),
    );
  });

  it('refuses keys that cannot sign notary metadata', () => {
    const x25519 = generateKeyPairSync('x25519')
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString();
    assert.throws(
      () => decodePrivateKeyPem(x25519, undefined, 'k'),
      invalidKey('k', /x25519 keys cannot sign/),
    );
  });
});
