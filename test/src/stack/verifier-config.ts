/**
 * A kpack-trust-verifier configuration file for the loopback stack: the stack's notary server, with
 * its CA, serving its registry, and the rules a test gives.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NotaryStack } from './stack.js';

/** What a test puts in the configuration besides the stack's notary server. */
export interface StackVerifierConfig {
  /** The `rules:` list items, as YAML (each starting with `  - `). */
  readonly rules: string;
  /** More top-level YAML (e.g. `cache: { ttlSeconds: 0 }`). */
  readonly extra?: string;
  /** The file to write; default a new `verifier.yaml` in a fresh directory of the stack's. */
  readonly file?: string;
}

/** Writes the configuration and returns its path. `listen` names TLS files no test serves from. */
export async function writeVerifierConfig(
  stack: NotaryStack,
  config: StackVerifierConfig,
): Promise<string> {
  const file = config.file ?? join(await stack.tempDir('verifier'), 'verifier.yaml');
  const lines = [
    'listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }',
    'notary:',
    `  - registry: "${stack.registryHost}"`,
    `    server: ${stack.notaryUrl}`,
    `    ca: ${JSON.stringify(stack.caFile)}`,
    '    timeoutMs: 5000',
    ...(config.extra === undefined ? [] : [config.extra.trimEnd()]),
    'rules:',
    config.rules.trimEnd(),
    '',
  ];
  await writeFile(file, lines.join('\n'));
  return file;
}
