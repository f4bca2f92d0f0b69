/** The Notary v1 trust core: the public surface of @kpack-trust/common. */
export * from './errors.js';
export * from './canonical/json.js';
export * from './keys/index.js';
export * from './metadata/models.js';
export * from './metadata/envelope.js';
export * from './metadata/write.js';
export * from './repository/edit.js';
export * from './verify/anchor.js';
export * from './verify/collection-verifier.js';
export * from './verify/resolve.js';
export * from './verify/updater.js';
export * from './reference/image-reference.js';
export * from './reference/notary-servers.js';
export * from './notary/remote.js';
export * from './notary/credentials.js';
export * from './notary/docker-config-file.js';
export * from './notary/http-client.js';
