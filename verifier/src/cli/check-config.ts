/**
 * `kpack-trust-verifier check-config`: is this config file one `serve` would start with? It loads
 * the file exactly as `serve` does (rules, notary entries, every CA bundle, pinned key and docker
 * credentials file it names) and then the listener's certificate, key and client CA, and never
 * opens a connection. The chart runs it as a pre-install/pre-upgrade hook, so a config new pods
 * would refuse (exit 2 at start, while old pods keep the old config) fails the upgrade instead.
 */
import { readFile } from 'node:fs/promises';
import { isTrustError } from '@kpack-trust/common';
import { loadConfig } from '../config/load.js';
import type { ListenTlsConfig } from '../config/types.js';
import { TlsFilesError, checkListenTlsFiles } from '../http/tls-files.js';

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
 * The checks `serve` makes at start (http/tls-files.ts), after reading each file with a message
 * that names it: expiry among them, since kube-apiserver refuses an expired serving certificate,
 * which with defaultAllow: false is a cluster-wide lockout.
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

  const { subject, notAfter } = checkListenTlsFiles(
    tls,
    { cert: certPem, key: keyPem, ...(clientCaPem === undefined ? {} : { clientCA: clientCaPem }) },
    now,
  );
  return { checked: true, subject, notAfter: notAfter.toISOString() };
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
