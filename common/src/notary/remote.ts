/**
 * The edges of the trust core that touch a notary server, as interfaces: the pure verification
 * workflow and the signer's publisher depend only on these, and the HTTP implementation (or a test
 * double serving crafted bytes) is injected.
 */
import type { PublicKeyJson } from '../keys/public-key.js';

/** What to fetch: a role's current file, a numbered version, or the file with a given checksum. */
export interface MetadataRequest {
  /** `root`, `timestamp`, `snapshot`, `targets`, or a delegation such as `targets/releases`. */
  readonly role: string;
  /** `<version>.<role>.json` — used for root rotation. */
  readonly version?: number;
  /** `<role>.<sha256 hex>.json` — the checksum the parent role states (consistent download). */
  readonly sha256Hex?: string;
  /** Abort the download and fail with DOWNLOAD_TOO_LARGE beyond this many bytes. */
  readonly maxBytes: number;
  /**
   * Aborts the request (connect, headers, body) when it fires: the caller's deadline stops the work,
   * not only the waiting. The fetch then rejects with the signal's reason when that is a TrustError,
   * else with HTTP_UNREACHABLE.
   */
  readonly signal?: AbortSignal;
}

/** Reads Notary v1 metadata of one GUN. A missing file fails with HTTP_STATUS and status 404. */
export interface MetadataFetcher {
  fetchMetadata(gun: string, request: MetadataRequest): Promise<Uint8Array>;
}

/** One changed role's complete signed document, as the publish POST carries it. */
export interface PublishFile {
  readonly role: string;
  readonly bytes: Uint8Array;
}

/** Writes to a notary server: server-held keys and the atomic multi-role publish. */
export interface MetadataPublisher {
  /**
   * GET `<role>.key`: the public half of the server-held key. Until a published root lists one,
   * each call creates a new key.
   */
  fetchServerKey(gun: string, role: 'timestamp' | 'snapshot'): Promise<PublicKeyJson>;
  /** POST all changed roles in one multipart request; a concurrent writer fails with status 400 VERSION. */
  publish(gun: string, files: readonly PublishFile[]): Promise<void>;
}
