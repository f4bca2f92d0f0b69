/**
 * `kpack-trust-verifier check-config`: is this config file one `serve` would start with? It loads
 * the file exactly as `serve` does (rules, notary entries, every CA bundle, pinned key and docker
 * credentials file it names) and then the listener's certificate, key and client CA, and never
 * opens a connection. The chart runs it as a pre-install/pre-upgrade hook, so a config new pods
 * would refuse (exit 2 at start, while old pods keep the old config) fails the upgrade instead.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { isTrustError } from '@kpack-trust/common';
import { loadConfig } from '../config/load.js';
import type { ListenTlsConfig } from '../config/types.js';

/** What the command prints and how it exits. */
export interface CheckConfigResult {
  /** 0 the config is usable, 1 it is not. */
  readonly exitCode: 0 | 1;
  /** Pretty-printed JSON, newline-terminated. */
  readonly output: string;
  /** The config's warnings (patterns that match nothing), also in the JSON; for stderr. */
  readonly warnings?: readonly string[];
}

/** Options of the check. */
export interface CheckConfigOptions {
  /** Leave the listener's TLS files out (they do not exist yet when a chart is first installed). */
  readonly skipTls?: boolean;
  /** The clock certificate validity is judged by; the command line uses the system clock. */
  readonly now?: () => Date;
}

/** Why the listener's TLS files are unusable, named the way the operator will look for them. */
class TlsFilesError extends Error {}

/** Checks the config at `configPath` and, unless skipped, the TLS files its listen section names. */
export async function runCheckConfig(
  configPath: string,
  options: CheckConfigOptions = {},
): Promise<CheckConfigResult> {
  try {
    const config = await loadConfig(configPath);
    const tls = options.skipTls
      ? { checked: false }
      : await checkListenTls(config.listen.tls, (options.now ?? (() => new Date()))());
    const summary = {
      valid: true,
      config: configPath,
      rules: config.rules.length,
      notary: config.notary.map((entry) => ({ registry: entry.registry, server: entry.server })),
      exemptNamespaces: config.exemptNamespaces,
      tls,
      ...(config.warnings.length === 0 ? {} : { warnings: config.warnings }),
    };
    return {
      exitCode: 0,
      output: `${JSON.stringify(summary, null, 2)}\n`,
      ...(config.warnings.length === 0 ? {} : { warnings: config.warnings }),
    };
  } catch (error) {
    const code = isTrustError(error)
      ? error.code
      : error instanceof TlsFilesError
        ? 'TLS_FILES_INVALID'
        : 'INTERNAL';
    const message = error instanceof Error ? error.message : String(error);
    const document = { valid: false, config: configPath, error: { code, message } };
    return { exitCode: 1, output: `${JSON.stringify(document, null, 2)}\n` };
  }
}

/**
 * The checks `serve` would fail on at start, plus expiry: kube-apiserver refuses an expired serving
 * certificate, which with defaultAllow: false is a cluster-wide lockout.
 */
async function checkListenTls(
  tls: ListenTlsConfig,
  now: Date,
): Promise<{ checked: true; subject: string; notAfter: string }> {
  const read = async (what: string, path: string): Promise<string> => {
    try {
      return await readFile(path, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'read error';
      throw new TlsFilesError(`listen.tls.${what} ${path} cannot be read (${code})`);
    }
  };
  const certPem = await read('cert', tls.cert);
  const keyPem = await read('key', tls.key);
  const clientCaPem = tls.clientCA === undefined ? undefined : await read('clientCA', tls.clientCA);

  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch {
    throw new TlsFilesError(`listen.tls.cert ${tls.cert} is not a PEM certificate`);
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) {
      throw new TlsFilesError(
        `listen.tls.key ${tls.key} is not the private key of the certificate in ${tls.cert}`,
      );
    }
  } catch (error) {
    if (error instanceof TlsFilesError) throw error;
    throw new TlsFilesError(`listen.tls.key ${tls.key} is not a PEM private key`);
  }
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now.getTime()) {
    throw new TlsFilesError(
      `listen.tls.cert ${tls.cert} expired on ${notAfter.toISOString()}; kube-apiserver will refuse it`,
    );
  }
  // The same call `serve` makes: whatever OpenSSL refuses here, the listener would refuse too.
  try {
    createSecureContext({
      cert: certPem,
      key: keyPem,
      ...(clientCaPem === undefined ? {} : { ca: clientCaPem }),
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new TlsFilesError(`listen.tls files are refused by TLS (${reason})`);
  }
  if (clientCaPem !== undefined && !clientCaPem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new TlsFilesError(`listen.tls.clientCA ${tls.clientCA ?? ''} holds no PEM certificate`);
  }
  return { checked: true, subject: leaf.subject, notAfter: notAfter.toISOString() };
}

/** `kpack-trust-verifier check-config --help`. */
export const CHECK_CONFIG_USAGE = `Usage: kpack-trust-verifier check-config [--skip-tls] FILE

Loads FILE as "serve" would (rules, notary entries, and every CA bundle, pinned key and docker
credentials file it names), then the listener's certificate, key and client CA (parsed, matched,
not expired), without any network access, and prints a JSON summary, or the first problem on
stderr.

Options:
  --skip-tls         do not check the listen.tls files (at a first install they do not exist yet)
  -h, --help         this text

Exit status: 0 usable, 1 not usable, 2 usage error.
`;
