/**
 * A child process for stalled-handshake.test.ts: one NotaryHttpClient, built as the signer builds
 * it (a private CA, Node started with --use-openssl-ca so the client handshakes through the
 * narrow-then-wide agent), fetches root.json from a server that accepts TCP and never answers the
 * TLS handshake. It prints one JSON line, `{"code","problem","ms"}`, when the fetch settles and
 * then only sets process.exitCode, as the signer's main does: the process ends only if nothing of
 * the request is left holding the event loop.
 *
 *   node --use-openssl-ca stalled-handshake-client.js <port> <deadline|abort|close>
 *   (the CA's PEM in STALLED_HANDSHAKE_CA)
 *
 * deadline: timeoutMs 300 is what gives up. abort: the caller's signal gives up after 300 ms under a
 * 60 s deadline. close: close() after 300 ms under a 60 s deadline.
 */
import { isTrustError } from '../../src/errors.js';
import { NotaryHttpClient } from '../../src/notary/http-client.js';

const [portText, mode] = process.argv.slice(2);
const ca = process.env['STALLED_HANDSHAKE_CA'];
if (
  portText === undefined ||
  ca === undefined ||
  !['deadline', 'abort', 'close'].includes(mode ?? '')
) {
  throw new Error(
    'usage: stalled-handshake-client <port> <deadline|abort|close>, CA in STALLED_HANDSHAKE_CA',
  );
}
const GIVE_UP_MS = 300;
const client = new NotaryHttpClient({
  baseUrl: `https://127.0.0.1:${portText}`,
  ca,
  timeoutMs: mode === 'deadline' ? GIVE_UP_MS : 60_000,
});
const controller = new AbortController();
// Timers that would keep the process alive by themselves are unref'd: only the client may.
if (mode === 'abort')
  setTimeout(() => {
    controller.abort();
  }, GIVE_UP_MS).unref();
if (mode === 'close')
  setTimeout(() => {
    client.close();
  }, GIVE_UP_MS).unref();
const started = Date.now();
try {
  await client.fetchMetadata('127.0.0.1:5000/demo/app', {
    role: 'root',
    maxBytes: 1024,
    signal: controller.signal,
  });
  process.stdout.write(
    `${JSON.stringify({ code: 'NONE', problem: 'answered', ms: Date.now() - started })}\n`,
  );
} catch (error) {
  const code = isTrustError(error) ? error.code : String(error);
  const problem = isTrustError(error, 'HTTP_UNREACHABLE') ? error.facts.problem : '';
  process.stdout.write(`${JSON.stringify({ code, problem, ms: Date.now() - started })}\n`);
}
process.exitCode = 7;
