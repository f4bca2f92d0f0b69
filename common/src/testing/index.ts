/** Test support shared by every workspace: in-memory repositories, a fetcher over them, corruptions. */
export * from './fixture-repository.js';
export * from './memory-fetcher.js';
export * from './hash.js';
export * from './tls.js';
export * from './hostile-root.js';
