/**
 * Part of `npm run bench:sign`, not a signer: the floor of what any Node program spends to sign one
 * tag into an existing repository, so the benchmark can say how much of the goal's budget Node
 * itself already uses. It does only what every signer must and nothing it should:
 * - reads the notary CA, one encrypted key file (kpack's `<id>.key` + `password`) and decrypts it;
 * - over one keep-alive TLS connection trusting that CA, GETs root, timestamp, snapshot and
 *   targets by name and parses them;
 * - makes one ECDSA signature over the targets' signed part;
 * - and, in place of the publish, GETs the timestamp once more (the publish's work on the server,
 *   notary-signer signing the snapshot and timestamp, is left out: a floor may only be too low).
 * It verifies nothing — no root pin, no signatures, no hashes, no expiry — which is why it is a
 * floor and nothing else may copy it. CommonJS, one file, Node's built-ins only: the cheapest way
 * Node 20 starts a program.
 *
 *   node test/dist/bench/sign-floor.cjs <notary-url> <ca-file> <gun> <key-file> <password-file>
 */
import { sign, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, get } from 'node:https';

const [notaryUrl, caFile, gun, keyFile, passwordFile] = process.argv.slice(2);
if (passwordFile === undefined) {
  throw new Error('usage: sign-floor <notary-url> <ca-file> <gun> <key-file> <password-file>');
}
const ca = readFileSync(caFile ?? '');
// notary's key files carry PEM headers (`role: targets`) that OpenSSL's PEM reader refuses: the
// base64 body alone is the encrypted PKCS#8 DER.
const der = Buffer.from(
  readFileSync(keyFile ?? '', 'utf8')
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('-----') && !line.includes(':'))
    .join(''),
  'base64',
);
const key = createPrivateKey({
  key: der,
  format: 'der',
  type: 'pkcs8',
  passphrase: readFileSync(passwordFile, 'utf8').trim(),
});
const url = new URL(notaryUrl ?? '');
const agent = new Agent({ keepAlive: true, ca });
const base = `/v2/${gun ?? ''}/_trust/tuf/`;

function fetchJson(name: string): Promise<{ signed: unknown }> {
  return new Promise((resolve, reject) => {
    get({ host: url.hostname, port: url.port, path: base + name, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${name}: HTTP ${String(res.statusCode)}`));
        else resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as { signed: unknown });
      });
    }).on('error', reject);
  });
}

async function main(): Promise<void> {
  await fetchJson('root.json');
  await fetchJson('timestamp.json');
  await fetchJson('snapshot.json');
  const targets = await fetchJson('targets.json');
  sign('sha256', Buffer.from(JSON.stringify(targets.signed)), { key, dsaEncoding: 'ieee-p1363' });
  await fetchJson('timestamp.json');
  agent.destroy();
}

main().catch((error: unknown) => {
  process.stderr.write(`sign-floor: ${String(error)}\n`);
  process.exitCode = 1;
});
