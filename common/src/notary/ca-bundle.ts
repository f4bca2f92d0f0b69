/**
 * The one rule for a CA bundle a TLS client or server is given — the signer's `--notary-ca`,
 * `--registry-ca` and `KPACK_TRUST_*_CA`, the verifier's notary `ca:` and its listener's
 * `clientCA`. Node's TLS takes such a file without a word when it trusts less than it shows:
 * OpenSSL's reader, as Node calls it, adds nothing for a file without a certificate and stops
 * silently at the first block it cannot parse, dropping every certificate after it. The failure
 * then surfaces far away, as a misleading certificate error (or, for a listener's client CA, as
 * every client refused). Pure; each caller words the refusal for its own flag or field.
 */
import { X509Certificate } from 'node:crypto';
import { splitPemCertificates } from '../verify/anchor.js';

/**
 * Why a CA bundle's text would trust nothing, or less than it shows: "holds no PEM certificate",
 * "holds a PEM certificate that does not parse"; undefined when every block is a certificate.
 */
export function caBundleProblem(text: string): string | undefined {
  const certificates = splitPemCertificates(text);
  if (certificates.length === 0) return 'holds no PEM certificate';
  for (const pem of certificates) {
    try {
      new X509Certificate(pem);
    } catch {
      return 'holds a PEM certificate that does not parse';
    }
  }
  return undefined;
}
