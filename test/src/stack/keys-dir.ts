/**
 * A keys directory in kpack's layout (`<key id>.key`, encrypted, beside a `password` file), as the
 * signer's `--keys-dir` / `--root-keys-dir` read it.
 */
import type { KeyObject } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PublicKey, encodePrivateKeyPem } from '@kpack-trust/common';
import { DEFAULT_PASSPHRASE } from './notary-cli.js';

/** Writes `key` for `role` into `dir` (made if missing) with DEFAULT_PASSPHRASE; returns `dir`. */
export async function writeKeysDir(dir: string, key: KeyObject, role: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, `${PublicKey.fromKeyObject(key).id}.key`),
    encodePrivateKeyPem(key, DEFAULT_PASSPHRASE, { role }),
  );
  await writeFile(join(dir, 'password'), DEFAULT_PASSPHRASE);
  return dir;
}
