/**
 * Assertions on TrustError: the exact code, and the facts a test names (others are not compared),
 * so a negative test fails when the right refusal comes for the wrong reason.
 */
import assert from 'node:assert/strict';
import {
  isTrustError,
  type TrustError,
  type TrustErrorCode,
  type TrustErrorFacts,
} from '../../src/errors.js';

/** Fails unless `err` is a TrustError with `code` whose facts include each of `facts`. */
export function assertTrustError<C extends TrustErrorCode>(
  err: unknown,
  code: C,
  facts: Partial<TrustErrorFacts[C]> = {},
): asserts err is TrustError<C> {
  if (!isTrustError(err, code)) {
    assert.fail(
      `expected ${code}, got ${isTrustError(err) ? `${err.code}: ${err.message}` : String(err)}`,
    );
  }
  for (const [k, v] of Object.entries(facts)) {
    assert.deepEqual((err.facts as Record<string, unknown>)[k], v, `fact ${k}`);
  }
}

/** Fails unless `promise` rejects with a TrustError that `assertTrustError` accepts. */
export async function rejectsWithTrustError<C extends TrustErrorCode>(
  promise: Promise<unknown>,
  code: C,
  facts: Partial<TrustErrorFacts[C]> = {},
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assertTrustError(err, code, facts);
    return true;
  });
}
