/**
 * Signing metadata: a small async interface so a remote or HSM signer can stand in for a local key,
 * and the local implementation producing exactly the signature forms notary 0.7.0 verifies.
 */
import { constants, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { TrustError } from '../errors.js';
import { PublicKey, type SignatureMethod } from './public-key.js';

/** Signs metadata bytes; async so a remote/HSM signer can implement it. */
export interface MetadataSigner {
  readonly publicKey: PublicKey;
  readonly method: SignatureMethod;
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** publicKey defaults to fromKeyObject; for root, pass the ecdsa-x509 cert key. */
export function localSigner(privateKey: KeyObject, publicKey?: PublicKey): MetadataSigner {
  if (privateKey.type !== 'private') {
    throw new TrustError(
      'KEY_INVALID',
      { keyId: publicKey?.id ?? '', keyType: publicKey?.type ?? '', problem: 'not a private key' },
      'a signer needs a private key',
    );
  }
  const own = PublicKey.fromKeyObject(createPublicKey(privateKey));
  const key = publicKey ?? own;
  // An x509 key's canonical id is the id of its bare public key, so this also matches certificates.
  if (key.canonicalId !== own.canonicalId) {
    throw new TrustError(
      'KEY_INVALID',
      {
        keyId: key.id,
        keyType: key.type,
        problem: 'the private key does not belong to this public key',
      },
      `the private key ${own.canonicalId} does not belong to public key ${key.id}`,
    );
  }
  switch (own.type) {
    case 'ecdsa':
      // r‖s (IEEE P1363) over SHA-256, the only ECDSA form notary 0.7.0 accepts.
      return signer(key, 'ecdsa', (data) =>
        sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' }),
      );
    case 'ed25519':
      return signer(key, 'eddsa', (data) => sign(null, data, privateKey));
    default:
      // RSA: PSS with SHA-256 and a 32-byte salt, what notary's RSAPSSVerifier demands.
      return signer(key, 'rsapss', (data) =>
        sign('sha256', data, {
          key: privateKey,
          padding: constants.RSA_PKCS1_PSS_PADDING,
          saltLength: 32,
        }),
      );
  }
}

function signer(
  publicKey: PublicKey,
  method: SignatureMethod,
  signSync: (data: Uint8Array) => Buffer,
): MetadataSigner {
  return {
    publicKey,
    method,
    sign: (data) =>
      new Promise((resolve) => {
        resolve(new Uint8Array(signSync(data)));
      }),
  };
}

/** Default ecdsa P-256, the only type the notary and docker CLIs generate; rsa is 3072-bit. */
export function generateSigningKey(type: 'ecdsa' | 'ed25519' | 'rsa' = 'ecdsa'): KeyObject {
  switch (type) {
    case 'ecdsa':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    case 'ed25519':
      return generateKeyPairSync('ed25519').privateKey;
    case 'rsa':
      return generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
  }
}
