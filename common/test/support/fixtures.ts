/**
 * Location of the captured notary 0.7.0 fixtures, whether a test runs from source (tsx) or compiled
 * (dist/test): fixtures are data and are not copied into dist.
 */
const compiled = new URL('.', import.meta.url).pathname.includes('/dist/');

/** Directory URL of common/test/fixtures/notary-0.7.0/. */
export const NOTARY_FIXTURES = compiled
  ? new URL('../../../test/fixtures/notary-0.7.0/', import.meta.url)
  : new URL('../fixtures/notary-0.7.0/', import.meta.url);
