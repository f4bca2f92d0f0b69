/** Test support for the signer, shared with the end-to-end tests: an in-memory key store. */
export * from './memory-key-store.js';
