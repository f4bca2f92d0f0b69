/**
 * Counting the costly steps of judging untrusted metadata. A hostile server chooses how much work
 * its bytes ask for; every such step is bounded, and tests and benchmarks pass a meter to assert
 * the bounds hold (counting, unlike timing, is exact on a busy machine).
 */

/** Counts of the costly steps one update performed; pass one in through UpdateOptions.work. */
export interface WorkMeter {
  /** Signature checks over metadata (each PublicKey.verify). */
  metadataSignatureChecks: number;
  /** Signature checks of one certificate by another while looking for a chain to a pinned CA. */
  certificateSignatureChecks: number;
  /** Public keys parsed from metadata (memoised parses included): each imports a key or certificates. */
  keysParsed: number;
  /** root.json files fetched and opened (envelope parsed), including older versions searched. */
  rootsRead: number;
}

/** A meter at zero. */
export function newWorkMeter(): WorkMeter {
  return { metadataSignatureChecks: 0, certificateSignatureChecks: 0, keysParsed: 0, rootsRead: 0 };
}
