/**
 * Exit codes, one per kind of failure an operator (or kpack's build pod) acts on differently:
 * fix the input, fix credentials, wait for the server, or re-run the build.
 */
import { isTrustError } from '@kpack-trust/common';

/** The process exit codes of `kpack-trust-signer`. */
export const ExitCode = {
  /** Signed (or already signed: nothing had to change). */
  OK: 0,
  /** Anything not listed below: failed verification of the repository, an unexpected error. */
  FAILED: 1,
  /** Bad input: flags, report.toml, tags across repositories, keys, passphrases, unknown digest. */
  BAD_INPUT: 2,
  /** The notary server, its token service or the registry refused our credentials. */
  AUTH_FAILED: 3,
  /** The notary server or the registry could not be reached, or answered 5xx or 429 (retry later). */
  UNAVAILABLE: 4,
  /** Concurrent writers kept changing the repository; every attempt was refused as out of date. */
  CONFLICT: 5,
} as const;

/** One of {@link ExitCode}'s values. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit code for an error thrown by the signing flow. */
export function exitCodeFor(error: unknown): ExitCodeValue {
  if (!isTrustError(error)) return ExitCode.FAILED;
  switch (error.code) {
    case 'INPUT_INVALID':
    case 'REFERENCE_INVALID':
    case 'PRIVATE_KEY_INVALID':
    case 'KEY_STORE_INVALID':
    case 'CREDENTIALS_INVALID':
    case 'SIGNING_KEY_UNUSABLE':
    case 'MANIFEST_UNKNOWN':
    case 'KEY_INVALID':
    case 'CONFIG_INVALID':
      return ExitCode.BAD_INPUT;
    case 'AUTH_FAILED':
      return ExitCode.AUTH_FAILED;
    case 'HTTP_UNREACHABLE':
      return ExitCode.UNAVAILABLE;
    case 'PUBLISH_CONFLICT':
      return ExitCode.CONFLICT;
    case 'HTTP_STATUS': {
      const status = (error.facts as { status: number }).status;
      if (status === 401 || status === 403) return ExitCode.AUTH_FAILED;
      // 429 Too Many Requests is the server asking us to come back later, as a 503 does.
      if (status >= 500 || status === 429) return ExitCode.UNAVAILABLE;
      return ExitCode.FAILED;
    }
    default:
      return ExitCode.FAILED;
  }
}
