/** The Notary v1 trust core: the public surface of @kpack-trust/common. */
export * from './errors.js';
export * from './canonical/json.js';
