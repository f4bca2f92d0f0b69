/** The trust cache and the notary clients it fetches through. */
export * from './cache.js';
export * from './notary-clients.js';
