/** The trust cache, the circuit breakers and the notary clients it fetches through. */
export * from './cache.js';
export * from './circuit-breaker.js';
export * from './notary-clients.js';
