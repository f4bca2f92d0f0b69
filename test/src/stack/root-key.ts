/**
 * The root key a verifier pins for a repository the stack's notary serves: the first root key
 * root.json lists, by its key id and by its canonical id (the hash of the public key alone, which
 * the notary CLI reuses for every GUN it initializes from one trust dir).
 */
import { NotaryHttpClient, parseEnvelope, parseRoot } from '@kpack-trust/common';
import type { NotaryStack } from './stack.js';

/** The key id and canonical id of `gun`'s first root key, read from the server's root.json. */
export async function rootKeyIds(
  stack: NotaryStack,
  gun: string,
): Promise<{ readonly id: string; readonly canonicalId: string }> {
  const client = new NotaryHttpClient({
    baseUrl: stack.notaryUrl,
    ca: stack.caPem,
    exclusiveCa: true,
  });
  try {
    const bytes = await client.fetchMetadata(gun, { role: 'root', maxBytes: 1 << 20 });
    const root = parseRoot(parseEnvelope(bytes, 'root').signed);
    const id = root.roles.root.keyIds[0];
    const canonicalId = id === undefined ? undefined : root.keys.get(id)?.canonicalId;
    if (id === undefined || canonicalId === undefined) {
      throw new Error(`${gun}: root.json names no root key`);
    }
    return { id, canonicalId };
  } finally {
    client.close();
  }
}
