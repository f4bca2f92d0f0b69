/**
 * One table of notary URLs through every entry point that takes one: `sign --notary-url`,
 * kpack's `-notary-v1-url` in `kpack-completion`, and the controller's `kpack-trust.io/notary-url`.
 * Each must accept exactly the URLs the others accept, and none may echo a refused URL.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseArguments } from '../src/cli/args.js';
import { notaryUrlProblem, type NotaryUrlProblem } from '../src/cli/notary-url.js';
import { ANNOTATIONS, signingDecision } from '../src/controller/kpack.js';
import { runKpackCompletion } from '../src/kpack/completion.js';

/** Every URL with the one verdict all entry points must reach. */
const TABLE: readonly (readonly [string, NotaryUrlProblem | undefined])[] = [
  ['https://notary.example', undefined],
  ['https://notary.example:4443/', undefined],
  ['https://notary.example/prefix', undefined],
  ['https://127.0.0.1:4443', undefined],
  ['http://notary.example', 'not-https'],
  ['HTTP://notary.example:4443', 'not-https'],
  ['notary.example:4443', 'not-a-url'],
  ['notary.internal', 'not-a-url'],
  ['ftp://notary.example', 'not-a-url'],
  ['https://builder:s3cret@notary.example', 'credentials'],
  ['https://builder@notary.example', 'credentials'],
  ['http://builder:s3cret@notary.example', 'credentials'],
  ['https://notary.example/?token=s3cret', 'query-or-fragment'],
  ['https://notary.example/#s3cret', 'query-or-fragment'],
];

/** `sign` with only the URL varying: refused means INPUT_INVALID naming --notary-url. */
function signVerdict(url: string): string {
  try {
    parseArguments(['sign', '--notary-url', url, '--report', 'r', '--keys-dir', '/k']);
    return 'accepted';
  } catch (err) {
    const { code, message } = err as { code?: string; message: string };
    assert.equal(code, 'INPUT_INVALID', message);
    assert.match(message, /^--notary-url /);
    return message;
  }
}

/**
 * `kpack-completion` with kpack's vector, offline: a refused URL fails on the URL; an accepted
 * one gets past it and fails on the next step (no report.toml in this empty file system).
 */
async function completionVerdict(url: string): Promise<string> {
  const stderr: string[] = [];
  const never = (): never => {
    throw new Error('no network in this test');
  };
  const code = await runKpackCompletion([`-notary-v1-url=${url}`, '-dockerconfig=registry'], {
    env: { KPACK_TRUST_ROOT_KEY_ID: 'a'.repeat(64) },
    stdout: () => undefined,
    stderr: (line) => stderr.push(line),
    readTextFile: () => Promise.resolve(undefined),
    connectNotary: never,
    connectRegistry: never,
    now: () => new Date(),
    runProgram: () => Promise.resolve(0),
  });
  assert.equal(code, 2, stderr.join('\n'));
  assert.equal(stderr.length, 1);
  const line = stderr[0] ?? '';
  if (/report\.toml does not exist/.test(line)) return 'accepted';
  assert.match(line, /error: -notary-v1-url .*\[CONFIG_INVALID\]/);
  return line;
}

/** The controller's decision for an opted-in Image naming the URL (allowed by the operator). */
function controllerVerdict(url: string): string {
  const decision = signingDecision(
    {
      namespace: 'team',
      name: 'app',
      uid: 'u',
      apiVersion: 'kpack.io/v1alpha2',
      annotations: { [ANNOTATIONS.sign]: 'true', [ANNOTATIONS.notaryUrl]: url },
    },
    // The allowlist is a second, separate rule: here it lets every URL of the table through.
    { optInNamespaces: [], allowedNotaryUrls: TABLE.map(([u]) => u) },
  );
  if (decision.kind === 'sign') return 'accepted';
  assert.equal(decision.kind, 'invalid');
  assert.match(decision.problem, /^kpack-trust\.io\/notary-url: /);
  return decision.problem;
}

describe('one notary URL rule for sign, kpack-completion and the controller', () => {
  for (const [url, problem] of TABLE) {
    it(`${problem ?? 'accepted'}: ${url}`, async () => {
      assert.equal(notaryUrlProblem(url), problem);
      const verdicts = {
        sign: signVerdict(url),
        completion: await completionVerdict(url),
        controller: controllerVerdict(url),
      };
      for (const [entry, verdict] of Object.entries(verdicts)) {
        if (problem === undefined) {
          assert.equal(verdict, 'accepted', `${entry} refused ${url}`);
        } else {
          assert.notEqual(verdict, 'accepted', `${entry} accepted ${url}`);
          // A refused URL may hold a secret: no entry point repeats it.
          assert.ok(!verdict.includes(url), `${entry} echoed ${url}: ${verdict}`);
          assert.ok(!verdict.includes('s3cret'), `${entry} echoed a secret: ${verdict}`);
        }
      }
    });
  }
});
