/**
 * kpack-trust-verifier as kube-apiserver meets it: the built `serve` command as its own process,
 * over HTTPS on a free loopback port, with a certificate from the notary stack's CA.
 */
import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { NotaryStack } from '../stack/index.js';
import { httpsOk, launchDaemon, type Daemon } from '../stack/processes.js';

/** A running verifier process. */
export interface VerifierProcess {
  /** `https://127.0.0.1:<port>`; the apiserver POSTs to `${url}/image-policy`. */
  readonly url: string;
  readonly port: number;
  /** The CA that issued its serving certificate (the stack's). */
  readonly caPem: string;
  readonly caFile: string;
  readonly logFile: string;
  /** ImageReviews it has answered so far, from its own `kpack_trust_verifier_reviews_total`. */
  reviewCount(): Promise<number>;
  /** Its `/metrics` exposition. */
  metrics(): Promise<string>;
  /** POSTs one ImageReview itself and returns the status the verifier answers. */
  review(
    images: readonly string[],
    namespace?: string,
  ): Promise<{ allowed: boolean; reason?: string }>;
  /** SIGTERM, then SIGKILL after a grace period. */
  stop(): Promise<void>;
}

/** The verifier's entry point, built by `npm run build`. */
function verifierMain(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!existsSync(join(dir, 'verifier', 'package.json'))) {
    const parent = join(dir, '..');
    if (parent === dir) throw new Error('cannot find the kpack-trust repository root');
    dir = parent;
  }
  return join(dir, 'verifier', 'dist', 'src', 'main.js');
}

function httpsCall(
  url: string,
  ca: string,
  method: 'GET' | 'POST',
  body?: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        ca,
        agent: false,
        timeout: 30_000,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Starts `kpack-trust-verifier serve` with `rules` (YAML list items, each starting `  - `) and the
 * stack's notary server; `extra` is more top-level YAML.
 */
export async function startVerifierProcess(
  stack: NotaryStack,
  options: { readonly rules: string; readonly extra?: string },
): Promise<VerifierProcess> {
  const workDir = await stack.tempDir('verifier-process');
  const { certFile, keyFile } = stack.certificates.server;
  const daemon: Daemon = await launchDaemon({
    name: 'kpack-trust-verifier',
    binary: process.execPath,
    workDir,
    prepare: async (port) => {
      const config = join(workDir, `verifier-${port}.yaml`);
      await writeFile(
        config,
        [
          `listen: { port: ${port}, host: 127.0.0.1, tls: { cert: ${JSON.stringify(certFile)}, key: ${JSON.stringify(keyFile)} } }`,
          'notary:',
          `  - registry: "${stack.registryHost}"`,
          `    server: ${stack.notaryUrl}`,
          `    ca: ${JSON.stringify(stack.caFile)}`,
          ...(options.extra === undefined ? [] : [options.extra.trimEnd()]),
          'rules:',
          options.rules.trimEnd(),
          '',
        ].join('\n'),
      );
      return [verifierMain(), 'serve', '--config', config];
    },
    probe: (port) => httpsOk(`https://127.0.0.1:${port}/readyz`, stack.caPem),
  });
  const url = `https://127.0.0.1:${daemon.port}`;
  const metrics = async (): Promise<string> => {
    const { status, text } = await httpsCall(`${url}/metrics`, stack.caPem, 'GET');
    if (status !== 200) throw new Error(`GET ${url}/metrics answered ${status}`);
    return text;
  };
  return {
    url,
    port: daemon.port,
    caPem: stack.caPem,
    caFile: stack.caFile,
    logFile: daemon.logFile,
    metrics,
    reviewCount: async () => {
      const text = await metrics();
      let total = 0;
      for (const [, value] of text.matchAll(
        /^kpack_trust_verifier_reviews_total\{[^}]*\} (\d+)$/gm,
      )) {
        total += Number(value);
      }
      return total;
    },
    review: async (images, namespace = 'default') => {
      const { status, text } = await httpsCall(
        `${url}/image-policy`,
        stack.caPem,
        'POST',
        JSON.stringify({
          apiVersion: 'imagepolicy.k8s.io/v1alpha1',
          kind: 'ImageReview',
          spec: { containers: images.map((image) => ({ image })), annotations: {}, namespace },
        }),
      );
      if (status !== 200) throw new Error(`the verifier answered ${status}: ${text}`);
      const parsed = JSON.parse(text) as { status: { allowed: boolean; reason?: string } };
      return parsed.status;
    },
    stop: () => daemon.stop(),
  };
}
