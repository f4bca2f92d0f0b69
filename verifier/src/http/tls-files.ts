/**
 * The one check of the listener's TLS files, shared by `serve` (at start and before installing a
 * rotated pair) and `check-config` (the chart's hook), so the two cannot drift apart. Pure: it
 * takes the bytes already read and the time, and never touches the file system.
 *
 * It exists because Node's TLS accepts some unusable files without a word: `createSecureContext`
 * adds nothing for a client CA file without a certificate (or with a garbled one, and every
 * certificate after it), which with `requestCert` fails every mTLS handshake — the apiserver's
 * included, so `defaultAllow: true` would fail open cluster-wide — and serves an expired
 * certificate that kube-apiserver refuses.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { caBundleProblem } from '@kpack-trust/common';
import type { ListenTlsConfig } from '../config/types.js';

/** Why the listener's TLS files are unusable, named the way the operator will look for them. */
export class TlsFilesError extends Error {
  /** The code `check-config` prints and `serve`'s start-failed line carries. */
  readonly code = 'TLS_FILES_INVALID' as const;
}

/** The listener's TLS files as read: PEM text or bytes. */
export interface ListenTlsContents {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  readonly clientCA?: string | Buffer;
}

/** What the check found in a usable serving certificate. */
export interface CheckedServingCertificate {
  readonly subject: string;
  readonly notAfter: Date;
}

/**
 * Throws TlsFilesError unless the files make a listener the apiserver can use at `now`: the
 * certificate parses, the key is its key, it has not expired, OpenSSL takes the pair, and a client
 * CA file holds at least one certificate and nothing but certificates that parse.
 */
export function checkListenTlsFiles(
  paths: ListenTlsConfig,
  contents: ListenTlsContents,
  now: Date,
): CheckedServingCertificate {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(contents.cert);
  } catch {
    throw new TlsFilesError(`listen.tls.cert ${paths.cert} is not a PEM certificate`);
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(contents.key));
  } catch {
    throw new TlsFilesError(`listen.tls.key ${paths.key} is not a PEM private key`);
  }
  if (!matches) {
    throw new TlsFilesError(
      `listen.tls.key ${paths.key} is not the private key of the certificate in ${paths.cert}`,
    );
  }
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now.getTime()) {
    throw new TlsFilesError(
      `listen.tls.cert ${paths.cert} expired on ${notAfter.toISOString()}; kube-apiserver will refuse it`,
    );
  }
  if (contents.clientCA !== undefined) {
    const problem = caBundleProblem(contents.clientCA.toString());
    if (problem !== undefined) {
      throw new TlsFilesError(`listen.tls.clientCA ${paths.clientCA ?? ''} ${problem}`);
    }
  }
  // The same call the listener makes: whatever OpenSSL refuses here, the listener would refuse too.
  try {
    createSecureContext({
      cert: contents.cert,
      key: contents.key,
      ...(contents.clientCA === undefined ? {} : { ca: contents.clientCA }),
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new TlsFilesError(`listen.tls files are refused by TLS (${reason})`);
  }
  return { subject: leaf.subject, notAfter };
}
