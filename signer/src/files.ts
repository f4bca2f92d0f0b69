/**
 * Reading the signer's local input (reports, key files, mounted Secrets): shared by the CLI's
 * entry point and the completion executable's, which is bundled on its own.
 */
import { readFile } from 'node:fs/promises';
import { TrustError } from '@kpack-trust/common';

/** A file's text; undefined when it does not exist, INPUT_INVALID when it cannot be read. */
export async function readTextFile(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'read error';
    if (code === 'ENOENT') return undefined;
    throw new TrustError(
      'INPUT_INVALID',
      { source: path, problem: `cannot read the file (${code})` },
      `Cannot read ${path} (${code}).`,
    );
  }
}
