/** Keys, signatures, root certificates and private key files, as notary 0.7.0 makes and checks them. */
export { PublicKey, keyIdOf } from './public-key.js';
export type { KeyType, PublicKeyJson, SignatureMethod } from './public-key.js';
export { generateSigningKey, localSigner } from './signer.js';
export type { MetadataSigner } from './signer.js';
export { checkRootCertificate, createRootCertificate } from './root-certificate.js';
export { decodePrivateKeyPem, encodePrivateKeyPem } from './key-file.js';
