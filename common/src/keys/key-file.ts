/**
 * Private key files as the notary CLI and `docker trust` keep them (tuf/utils/pkcs8.go, x509.go):
 * PEM "ENCRYPTED PRIVATE KEY" with `role:` and `gun:` headers around PKCS#8 PBES2 with PBKDF2
 * over HMAC-SHA1 (the PRF is not read: notary always derives with SHA-1, so Node's own export with
 * HMAC-SHA256 decrypts to garbage there), 8-byte salt, 2048 iterations and AES-256-CBC.
 * Ed25519 keys use notary's own PKCS#8 form: OID 1.3.6.1.4.1.11591.15.1 around public‖seed‖public.
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  pbkdf2Sync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { TrustError } from '../errors.js';
import * as der from './der.js';
import { decodePem, encodePem, PemError, type PemBlock } from './pem.js';

const OID = {
  pbes2: '1.2.840.113549.1.5.13',
  pbkdf2: '1.2.840.113549.1.5.12',
  aes256Cbc: '2.16.840.1.101.3.4.1.42',
  notaryEd25519: '1.3.6.1.4.1.11591.15.1',
} as const;

// PRFs and ciphers we can read (others' tools write HMAC-SHA256 and AES-128); we write only SHA-1/AES-256.
const PRFS: ReadonlyMap<string, string> = new Map([
  ['1.2.840.113549.2.7', 'sha1'],
  ['1.2.840.113549.2.9', 'sha256'],
  ['1.2.840.113549.2.10', 'sha384'],
  ['1.2.840.113549.2.11', 'sha512'],
]);
const CIPHERS: ReadonlyMap<string, { name: string; keyLength: number }> = new Map([
  ['2.16.840.1.101.3.4.1.2', { name: 'aes-128-cbc', keyLength: 16 }],
  ['2.16.840.1.101.3.4.1.22', { name: 'aes-192-cbc', keyLength: 24 }],
  [OID.aes256Cbc, { name: 'aes-256-cbc', keyLength: 32 }],
]);

// What notary's convertTUFKeyToPKCS8Encrypted uses.
const ITERATIONS = 2048;
const SALT_BYTES = 8;
// A key file is configuration, but a hostile one should not pin a CPU for hours.
const MAX_ITERATIONS = 10_000_000;
const SIGNING_KEY_TYPES: readonly string[] = ['ec', 'ed25519', 'rsa'];

/** Writes notary/docker-trust private key files: PEM "ENCRYPTED PRIVATE KEY", PKCS#8 PBES2 (PBKDF2-SHA1, AES-256-CBC) with PEM headers `role: …` and (if given) `gun: …`. */
export function encodePrivateKeyPem(
  key: KeyObject,
  passphrase: string,
  headers: { role: string; gun?: string },
): string {
  const fail = (problem: string): TrustError =>
    new TrustError(
      'PRIVATE_KEY_INVALID',
      { source: `new ${headers.role} key file`, problem },
      `cannot write a ${headers.role} key file: ${problem}`,
    );
  if (key.type !== 'private') throw fail('not a private key');
  // Notary reads an empty passphrase as "not encrypted", so such a file could never be opened.
  if (passphrase === '') throw fail('the passphrase is empty');
  const pemHeaders = new Map<string, string>();
  for (const [name, value] of [
    ['role', headers.role],
    ['gun', headers.gun],
  ] as const) {
    if (value === undefined || (name === 'gun' && value === '')) continue;
    // Go trims header values and ends them at a newline; anything else would not read back.
    if (value === '' || value !== value.trim() || /[\r\n]/.test(value)) {
      throw fail(`the ${name} header value is empty or has surrounding space or a line break`);
    }
    pemHeaders.set(name, value);
  }
  const plain = privateKeyInfo(key, fail);
  const salt = randomBytes(SALT_BYTES);
  const iv = randomBytes(16);
  const secret = pbkdf2Sync(Buffer.from(passphrase, 'utf8'), salt, ITERATIONS, 32, 'sha1');
  const cipher = createCipheriv('aes-256-cbc', secret, iv);
  const encrypted = Buffer.concat([cipher.update(plain), cipher.final()]);
  // The PBKDF2 parameters carry no PRF: absent means HMAC-SHA1, which is all notary reads.
  const encryptedInfo = der.sequence(
    der.sequence(
      der.oid(OID.pbes2),
      der.sequence(
        der.sequence(
          der.oid(OID.pbkdf2),
          der.sequence(der.octetString(salt), der.integer(ITERATIONS)),
        ),
        der.sequence(der.oid(OID.aes256Cbc), der.octetString(iv)),
      ),
    ),
    der.octetString(encrypted),
  );
  return encodePem('ENCRYPTED PRIVATE KEY', encryptedInfo, pemHeaders);
}

function privateKeyInfo(key: KeyObject, fail: (problem: string) => TrustError): Buffer {
  switch (key.asymmetricKeyType) {
    case 'ec':
    case 'rsa':
      return key.export({ format: 'der', type: 'pkcs8' });
    case 'ed25519': {
      const { d, x } = key.export({ format: 'jwk' });
      if (d === undefined || x === undefined) throw fail('ed25519 key has no JWK form');
      const pub = Buffer.from(x, 'base64url');
      return der.sequence(
        der.integer(0),
        der.sequence(der.oid(OID.notaryEd25519)),
        der.octetString(Buffer.concat([pub, Buffer.from(d, 'base64url'), pub])),
      );
    }
    default:
      throw fail(`${key.asymmetricKeyType ?? 'unknown'} keys cannot sign notary metadata`);
  }
}

/** Reads such a file (and unencrypted "PRIVATE KEY"/"EC PRIVATE KEY" too). Wrong passphrase/garbage → PRIVATE_KEY_INVALID (never includes the passphrase or key bytes in the message). */
export function decodePrivateKeyPem(
  pem: string,
  passphrase: string | undefined,
  source: string,
): { privateKey: KeyObject; role?: string; gun?: string } {
  const fail = (problem: string): TrustError =>
    new TrustError('PRIVATE_KEY_INVALID', { source, problem }, `${source}: ${problem}`);
  let blocks: PemBlock[];
  try {
    blocks = decodePem(pem).blocks;
  } catch (err) {
    if (err instanceof PemError) throw fail(err.message);
    throw err;
  }
  const [block, extra] = blocks;
  if (!block) throw fail('no PEM block found');
  if (extra) throw fail('more than one PEM block; a key file holds one key');
  const privateKey = readBlock(block, passphrase, fail);
  if (!SIGNING_KEY_TYPES.includes(privateKey.asymmetricKeyType ?? '')) {
    throw fail(`${privateKey.asymmetricKeyType ?? 'unknown'} keys cannot sign notary metadata`);
  }
  const role = block.headers.get('role');
  const gun = block.headers.get('gun');
  return {
    privateKey,
    ...(role !== undefined && role !== '' ? { role } : {}),
    ...(gun !== undefined && gun !== '' ? { gun } : {}),
  };
}

function readBlock(
  block: PemBlock,
  passphrase: string | undefined,
  fail: (problem: string) => TrustError,
): KeyObject {
  switch (block.type) {
    case 'ENCRYPTED PRIVATE KEY': {
      if (passphrase === undefined || passphrase === '') {
        throw fail('the key is encrypted and no passphrase was given');
      }
      const plain = decrypt(block.bytes, passphrase, fail);
      // A wrong passphrase usually breaks the padding, but 1 in 256 times yields garbage instead.
      return readPrivateKeyInfo(plain, () => fail('wrong passphrase, or the key file is corrupt'));
    }
    case 'PRIVATE KEY':
      return readPrivateKeyInfo(block.bytes, () => fail('not a valid PKCS#8 private key'));
    case 'EC PRIVATE KEY':
    case 'RSA PRIVATE KEY': {
      const procType = block.headers.get('Proc-Type') ?? '';
      try {
        if (procType.includes('ENCRYPTED')) {
          if (passphrase === undefined || passphrase === '') {
            throw fail('the key is encrypted and no passphrase was given');
          }
          // Legacy OpenSSL encryption: hand Node the block with only the headers it understands.
          const legacy = new Map([
            ['Proc-Type', procType],
            ['DEK-Info', block.headers.get('DEK-Info') ?? ''],
          ]);
          return createPrivateKey({
            key: encodePem(block.type, block.bytes, legacy),
            format: 'pem',
            passphrase,
          });
        }
        const type = block.type === 'EC PRIVATE KEY' ? 'sec1' : 'pkcs1';
        return createPrivateKey({ key: block.bytes, format: 'der', type });
      } catch (err) {
        if (err instanceof TrustError) throw err;
        throw fail(
          procType.includes('ENCRYPTED')
            ? 'wrong passphrase, or the key file is corrupt'
            : `not a valid ${block.type}`,
        );
      }
    }
    case 'ED25519 PRIVATE KEY':
      // Notary's pre-PKCS#8 form: the raw public‖seed‖public bytes.
      return notaryEd25519(block.bytes, () => fail('not a valid ED25519 PRIVATE KEY'));
    default:
      throw fail(`unsupported PEM block "${block.type}"`);
  }
}

function decrypt(bytes: Buffer, passphrase: string, fail: (problem: string) => TrustError): Buffer {
  let params: {
    salt: Buffer;
    iterations: number;
    prf: string;
    cipher: string;
    keyLength: number;
    iv: Buffer;
  };
  try {
    params = pbes2Parameters(bytes);
  } catch (err) {
    if (err instanceof der.DerError) throw fail(`not a PKCS#8 PBES2 encrypted key: ${err.message}`);
    throw err;
  }
  if (params.iterations < 1 || params.iterations > MAX_ITERATIONS) {
    throw fail(`PBKDF2 iteration count ${params.iterations} is out of range`);
  }
  const secret = pbkdf2Sync(
    Buffer.from(passphrase, 'utf8'),
    params.salt,
    params.iterations,
    params.keyLength,
    params.prf,
  );
  try {
    const decipher = createDecipheriv(params.cipher, secret, params.iv);
    const [, encrypted] = der.children(der.readElement(bytes));
    return Buffer.concat([
      decipher.update(encrypted?.content ?? Buffer.alloc(0)),
      decipher.final(),
    ]);
  } catch {
    throw fail('wrong passphrase, or the key file is corrupt');
  }
}

function pbes2Parameters(bytes: Buffer): {
  salt: Buffer;
  iterations: number;
  prf: string;
  cipher: string;
  keyLength: number;
  iv: Buffer;
} {
  const [algorithm, encrypted] = der.children(
    der.expectTag(der.readElement(bytes), der.Tag.SEQUENCE, 'EncryptedPrivateKeyInfo'),
  );
  der.expectTag(encrypted, der.Tag.OCTET_STRING, 'encryptedData');
  const [schemeId, schemeParams] = der.children(
    der.expectTag(algorithm, der.Tag.SEQUENCE, 'encryptionAlgorithm'),
  );
  if (der.readOid(der.expectTag(schemeId, der.Tag.OID, 'scheme')) !== OID.pbes2) {
    throw new der.DerError('only PBES2 is supported');
  }
  const [kdf, scheme] = der.children(
    der.expectTag(schemeParams, der.Tag.SEQUENCE, 'PBES2 parameters'),
  );
  const [kdfId, kdfParams] = der.children(
    der.expectTag(kdf, der.Tag.SEQUENCE, 'keyDerivationFunc'),
  );
  if (der.readOid(der.expectTag(kdfId, der.Tag.OID, 'key derivation')) !== OID.pbkdf2) {
    throw new der.DerError('only PBKDF2 is supported');
  }
  const fields = der.children(der.expectTag(kdfParams, der.Tag.SEQUENCE, 'PBKDF2 parameters'));
  const salt = der.expectTag(fields[0], der.Tag.OCTET_STRING, 'salt').content;
  const iterations = der.readSmallInteger(der.expectTag(fields[1], der.Tag.INTEGER, 'iterations'));
  let rest = fields.slice(2);
  let statedKeyLength: number | undefined;
  if (rest[0]?.tag === der.Tag.INTEGER) {
    statedKeyLength = der.readSmallInteger(rest[0]);
    rest = rest.slice(1);
  }
  let prf = 'sha1';
  if (rest[0]) {
    const [prfId] = der.children(der.expectTag(rest[0], der.Tag.SEQUENCE, 'prf'));
    const name = PRFS.get(der.readOid(der.expectTag(prfId, der.Tag.OID, 'prf')));
    if (name === undefined) throw new der.DerError('unsupported PBKDF2 pseudo-random function');
    prf = name;
  }
  const [cipherId, ivElement] = der.children(
    der.expectTag(scheme, der.Tag.SEQUENCE, 'encryptionScheme'),
  );
  const cipher = CIPHERS.get(der.readOid(der.expectTag(cipherId, der.Tag.OID, 'cipher')));
  if (!cipher) throw new der.DerError('only AES-CBC encryption is supported');
  const iv = der.expectTag(ivElement, der.Tag.OCTET_STRING, 'iv').content;
  if (iv.length !== 16) throw new der.DerError('the AES-CBC IV must be 16 bytes');
  if (statedKeyLength !== undefined && statedKeyLength !== cipher.keyLength) {
    throw new der.DerError('the PBKDF2 key length does not fit the cipher');
  }
  return { salt, iterations, prf, cipher: cipher.name, keyLength: cipher.keyLength, iv };
}

function readPrivateKeyInfo(bytes: Buffer, fail: () => TrustError): KeyObject {
  try {
    const [, algorithm, privateKey] = der.children(
      der.expectTag(der.readElement(bytes), der.Tag.SEQUENCE, 'PrivateKeyInfo'),
    );
    const [algorithmId] = der.children(der.expectTag(algorithm, der.Tag.SEQUENCE, 'algorithm'));
    if (der.readOid(der.expectTag(algorithmId, der.Tag.OID, 'algorithm')) === OID.notaryEd25519) {
      return notaryEd25519(der.expectTag(privateKey, der.Tag.OCTET_STRING, 'key').content, fail);
    }
    return createPrivateKey({ key: bytes, format: 'der', type: 'pkcs8' });
  } catch (err) {
    if (err instanceof TrustError) throw err;
    throw fail();
  }
}

/** Notary's 96-byte ed25519 private form: public key, then Go's 64-byte private key (seed‖public). */
function notaryEd25519(bytes: Buffer, fail: () => TrustError): KeyObject {
  if (bytes.length !== 96) throw fail();
  const pub = bytes.subarray(0, 32);
  let key: KeyObject;
  try {
    key = createPrivateKey({
      key: {
        kty: 'OKP',
        crv: 'Ed25519',
        d: bytes.subarray(32, 64).toString('base64url'),
        x: pub.toString('base64url'),
      },
      format: 'jwk',
    });
  } catch {
    throw fail();
  }
  // Both stored copies of the public key must be the one the seed yields.
  const derived = Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x ?? '', 'base64url');
  if (!derived.equals(pub) || !derived.equals(bytes.subarray(64))) throw fail();
  return key;
}
