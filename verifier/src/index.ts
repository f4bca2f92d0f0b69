/** The verifier: an ImagePolicyWebhook backend that admits only Notary-signed digests. */
export const COMPONENT = 'verifier';
export * from './review.js';
export * from './config/index.js';
export * from './policy/index.js';
export * from './trust/index.js';
export { runCheck, type CheckOptions, type CheckResult } from './cli/check.js';
