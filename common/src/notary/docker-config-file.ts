/**
 * Reads a docker `config.json` from disk — the only file access of the notary client, kept apart so
 * the credential matching in credentials.ts stays pure.
 */
import { readFile } from 'node:fs/promises';
import { TrustError } from '../errors.js';
import { dockerConfigCredentials, type CredentialSource } from './credentials.js';

/**
 * The credentials of the docker config file at `path`. A missing or unreadable file is an error
 * (CREDENTIALS_INVALID), not "no credentials": a caller that names a file expects it to be used.
 */
export async function loadDockerConfig(path: string): Promise<CredentialSource> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'read error';
    throw new TrustError(
      'CREDENTIALS_INVALID',
      { source: path, problem: `cannot read the file (${code})` },
      `Cannot use ${path}: cannot read the file (${code}).`,
      { cause: error },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // No cause: V8's parse errors quote the text around the fault, which may be a password.
    throw new TrustError(
      'CREDENTIALS_INVALID',
      { source: path, problem: 'the file is not JSON' },
      `Cannot use ${path}: the file is not JSON.`,
    );
  }
  return dockerConfigCredentials(parsed, path);
}
