/**
 * A server that accepts TCP and never answers the TLS handshake (a proxy whose backend is dead),
 * met by the client as the signer runs it: Node started with --use-openssl-ca, so connections go
 * through the agent that hands its socket over only once the handshake is done. Giving up — the
 * request's deadline, the caller's abort, close() — must close that connection, or the process
 * never exits and a kpack Build stays Running. Each scenario runs in its own `node` so that "the
 * process exits" is what is asserted.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createTestCa } from '../src/testing/tls.js';

const compiled = fileURLToPath(import.meta.url).includes('/dist/');
const CHILD = fileURLToPath(
  new URL(`./support/stalled-handshake-client.${compiled ? 'js' : 'ts'}`, import.meta.url),
);
const NODE_ARGS = compiled ? [] : ['--import', 'tsx'];
/** How long the child may live on after its fetch settled: exiting takes a few ms. */
const EXIT_GRACE_MS = 3_000;
/** The child's own start-up (tsx compiles on the fly) on a busy 2-core machine. */
const START_MS = 20_000;

interface Outcome {
  readonly code: string;
  readonly problem: string;
  readonly ms: number;
}

/** The server side: every accepted socket, and a promise per socket that resolves on its close. */
let server: Server;
let port: number;
const accepted: { socket: Socket; closed: Promise<void> }[] = [];

before(async () => {
  server = createServer((socket) => {
    // Reads the ClientHello and never writes a byte back.
    socket.resume();
    const closed = new Promise<void>((resolve) =>
      socket.once('close', () => {
        resolve();
      }),
    );
    accepted.push({ socket, closed });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(() => {
  for (const { socket } of accepted) socket.destroy();
  server.close();
});

/** Runs the child in `mode`; resolves with its outcome once it exited, or fails if it does not. */
async function runClient(mode: 'deadline' | 'abort' | 'close'): Promise<Outcome> {
  const ca = createTestCa({ commonName: 'private notary CA' });
  const child = spawn(
    process.execPath,
    [...NODE_ARGS, '--use-openssl-ca', CHILD, String(port), mode],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, STALLED_HANDSHAKE_CA: ca.certPem },
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let settledAt: number | undefined;
  const settled = new Promise<void>((resolve) => {
    child.stdout.on('data', () => {
      if (stdout.includes('\n')) {
        settledAt ??= Date.now();
        resolve();
      }
    });
  });
  const timeout = (ms: number, what: string): Promise<never> =>
    new Promise((_, reject) =>
      setTimeout(() => {
        reject(new Error(what));
      }, ms).unref(),
    );
  try {
    await Promise.race([settled, exited, timeout(START_MS, `the ${mode} fetch never settled`)]);
    const code = await Promise.race([
      exited,
      timeout(EXIT_GRACE_MS, `the child still runs ${EXIT_GRACE_MS} ms after its fetch settled`),
    ]);
    assert.equal(code, 7, `child exit ${String(code)}: ${stderr}`);
    assert.ok(settledAt !== undefined);
  } finally {
    child.kill('SIGKILL');
  }
  return JSON.parse(stdout.trim()) as Outcome;
}

/** Every connection the server accepted was closed by the client (within `ms`). */
async function allClosed(from: number, ms = 2_000): Promise<void> {
  const mine = accepted.slice(from);
  assert.ok(mine.length >= 1, 'the client never connected');
  await Promise.race([
    Promise.all(mine.map((a) => a.closed)),
    new Promise((_, reject) =>
      setTimeout(() => {
        reject(new Error('a stalled connection was left open'));
      }, ms).unref(),
    ),
  ]);
}

void describe('a TLS handshake that never completes (--use-openssl-ca)', () => {
  void it('the request deadline fails the fetch, closes the connection and lets the process exit', async () => {
    const from = accepted.length;
    const outcome = await runClient('deadline');
    assert.deepEqual(
      { code: outcome.code, problem: outcome.problem },
      { code: 'HTTP_UNREACHABLE', problem: 'no complete answer within 300 ms' },
    );
    assert.ok(outcome.ms >= 250 && outcome.ms < 5_000, `settled after ${outcome.ms} ms`);
    await allClosed(from);
  });

  void it("the caller's abort fails the fetch, closes the connection and lets the process exit", async () => {
    const from = accepted.length;
    const outcome = await runClient('abort');
    assert.deepEqual(
      { code: outcome.code, problem: outcome.problem },
      { code: 'HTTP_UNREACHABLE', problem: 'the request was aborted' },
    );
    assert.ok(outcome.ms < 5_000, `settled after ${outcome.ms} ms`);
    await allClosed(from);
  });

  void it('close() fails the pending fetch, closes the connection and lets the process exit', async () => {
    const from = accepted.length;
    const outcome = await runClient('close');
    assert.deepEqual(
      { code: outcome.code, problem: outcome.problem },
      {
        code: 'HTTP_UNREACHABLE',
        problem: 'ABORT_ERR: TLS handshake abandoned: the agent was destroyed',
      },
    );
    assert.ok(outcome.ms < 5_000, `settled after ${outcome.ms} ms`);
    await allClosed(from);
  });
});
