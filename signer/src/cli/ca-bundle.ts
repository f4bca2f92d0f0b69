/**
 * The one rule for a CA bundle file, shared by `sign --notary-ca/--registry-ca` and kpack-completion's
 * `KPACK_TRUST_NOTARY_CA`/`KPACK_TRUST_REGISTRY_CA`: an empty or mistaken file would otherwise be
 * ignored by Node's TLS (no certificate added) and surface later as a misleading certificate error
 * from the server. Pure; each entry point words the refusal for its own flag or variable.
 */
import { X509Certificate } from 'node:crypto';
import { splitPemCertificates } from '@kpack-trust/common';

/** Why a CA bundle's text is unusable, or undefined when it holds only PEM certificates that parse. */
export function caBundleProblem(text: string): string | undefined {
  const certificates = splitPemCertificates(text);
  if (certificates.length === 0) return 'the file holds no PEM certificate';
  return certificates.every(parsesAsCertificate)
    ? undefined
    : 'a PEM certificate in the file does not parse';
}

function parsesAsCertificate(pem: string): boolean {
  try {
    new X509Certificate(pem);
    return true;
  } catch {
    return false;
  }
}
