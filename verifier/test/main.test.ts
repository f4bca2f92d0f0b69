/**
 * The `kpack-trust-verifier` program: the command line in-process, and `serve` as a real child
 * process — started from the compiled dist/src/main.js (or through tsx when the tests run from
 * source) and stopped with SIGTERM while a review is in flight.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { runCli, type CliIo } from '../src/main.js';
import { httpsCall } from './support/https-client.js';
import { reviewBody } from './support/stub-reviewer.js';
import { createAuthority, type TestAuthority } from './support/tls.js';

const compiled = fileURLToPath(import.meta.url).includes('/dist/');
const MAIN = fileURLToPath(
  new URL(compiled ? '../src/main.js' : '../src/main.ts', import.meta.url),
);
const NODE_ARGS = compiled ? [MAIN] : ['--import', 'tsx', MAIN];

let ca: TestAuthority;
let dir: string;

before(async () => {
  ca = await createAuthority();
  const server = await ca.issue('verifier', 'server');
  dir = await mkdtemp(join(tmpdir(), 'verifier-main-'));
  await writeFile(join(dir, 'tls.crt'), server.cert);
  await writeFile(join(dir, 'tls.key'), server.key);
});
after(() => rm(dir, { recursive: true, force: true }));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  assert.ok(address !== null && typeof address === 'object');
  return address.port;
}

async function writeConfig(name: string, port: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(
    path,
    [
      `listen: { port: ${port}, host: 127.0.0.1, tls: { cert: tls.crt, key: tls.key } }`,
      'rules:',
      '  - images: "docker.io/library/*"',
      '    allow: true',
      '',
    ].join('\n'),
  );
  return path;
}

function captureIo(): CliIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: (t) => out.push(t), stderr: (t) => err.push(t), env: {} };
}

describe('command line', () => {
  it('--help for the program and each command exits 0 with the usage on stdout', async () => {
    for (const [argv, mentions] of [
      [['--help'], /Commands:\n {2}serve --config FILE/],
      [['serve', '--help'], /Usage: kpack-trust-verifier serve --config FILE/],
      [['check', '-h'], /Exit status: 0 allowed, 1 denied, 2 error/],
    ] as const) {
      const io = captureIo();
      assert.equal(await runCli(argv, io), 0, argv.join(' '));
      assert.match(io.out.join(''), mentions);
      assert.deepEqual(io.err, []);
    }
  });

  it('exits 2 with the mistake and one line pointing at --help, not the whole usage', async () => {
    const program = 'Run "kpack-trust-verifier --help" for the usage.';
    const serve = 'Run "kpack-trust-verifier serve --help" for the usage.';
    const check = 'Run "kpack-trust-verifier check --help" for the usage.';
    for (const [argv, message, pointer] of [
      [[], 'no command given; the commands are "serve", "check" and "check-config"', program],
      [['verify'], 'unknown command "verify"', program],
      [['serve'], '--config FILE is required', serve],
      [
        ['serve', '--config', 'x', '--log-level', 'loud'],
        '--log-level must be debug, info, warn or error, not "loud"',
        serve,
      ],
      [
        ['serve', '--config', 'x', '--drain-seconds=-1'],
        '--drain-seconds must be a number of seconds up to 600, not "-1"',
        serve,
      ],
      [
        ['serve', '--config', 'x', '--drain-seconds', '601'],
        '--drain-seconds must be a number of seconds up to 600, not "601"',
        serve,
      ],
      [['serve', '--config', 'x', 'extra'], /^Unexpected argument 'extra'/, serve],
      [['check', '--config', 'x'], 'name at least one IMAGE', check],
      [['check', 'alpine'], '--config FILE is required', check],
      [['check', '--bogus', 'alpine'], /^Unknown option '--bogus'/, check],
    ] as const) {
      const io = captureIo();
      assert.equal(await runCli(argv, io), 2, argv.join(' '));
      assert.deepEqual(io.out, []);
      const lines = io.err.join('').split('\n');
      assert.equal(lines.length, 3, io.err.join(''));
      const [first = '', second, last] = lines;
      assert.ok(first.startsWith('kpack-trust-verifier: '), first);
      if (typeof message === 'string') assert.equal(first, `kpack-trust-verifier: ${message}`);
      else assert.match(first.slice('kpack-trust-verifier: '.length), message);
      assert.equal(second, pointer);
      assert.equal(last, '');
    }
  });

  it('--version prints the version in verifier/package.json, in process and as a program', async () => {
    const manifest = JSON.parse(
      await readFile(
        new URL(compiled ? '../../package.json' : '../package.json', import.meta.url),
        'utf8',
      ),
    ) as { version: string };
    assert.match(manifest.version, /^\d+\.\d+\.\d+/);
    const io = captureIo();
    assert.equal(await runCli(['--version'], io), 0);
    assert.deepEqual(io.out, [`${manifest.version}\n`]);
    assert.deepEqual(io.err, []);

    const child = spawnSync(process.execPath, [...NODE_ARGS, '--version'], { encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stdout, `${manifest.version}\n`);
  });

  it('runs through the bin/ entry npm links, which calls main()', () => {
    const bin = fileURLToPath(
      new URL(
        compiled ? '../../bin/kpack-trust-verifier.js' : '../bin/kpack-trust-verifier.js',
        import.meta.url,
      ),
    );
    const help = spawnSync(bin, ['--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^Usage: kpack-trust-verifier <command>/);
    const none = spawnSync(bin, [], { encoding: 'utf8' });
    assert.equal(none.status, 2);
    assert.equal(
      none.stderr,
      'kpack-trust-verifier: no command given; the commands are "serve", "check" and "check-config"\nRun "kpack-trust-verifier --help" for the usage.\n',
    );
  });

  it('check prints the decision as JSON and exits 0 when allowed, 1 when denied', async () => {
    const config = await writeConfig('check.yaml', 8443);
    const allowed = captureIo();
    assert.equal(await runCli(['check', '--config', config, 'alpine:3'], allowed), 0);
    assert.equal((JSON.parse(allowed.out.join('')) as { allowed: boolean }).allowed, true);

    const denied = captureIo();
    const code = await runCli(
      ['check', '--config', config, '--namespace', 'team', 'registry.test/app:1'],
      denied,
    );
    assert.equal(code, 1);
    const decision = JSON.parse(denied.out.join('')) as {
      allowed: boolean;
      namespace: string;
      reason: string;
    };
    assert.equal(decision.allowed, false);
    assert.equal(decision.namespace, 'team');
    assert.match(decision.reason, /^registry\.test\/app:1: no policy rule matches/);
  });

  it('check and check-config warn about an image pattern that matches nothing, on stderr and in the JSON', async () => {
    const config = join(dir, 'never.yaml');
    await writeFile(
      config,
      [
        'listen: { port: 8443, host: 127.0.0.1, tls: { cert: tls.crt, key: tls.key } }',
        'rules:',
        '  - images: "library/*"',
        '    allow: true',
        '',
      ].join('\n'),
    );
    const warning =
      `${config}: rules[0].images "library/*" never matches: it has no registry host, and images ` +
      'are matched by their normalized name, which starts with one ("nginx" is ' +
      'docker.io/library/nginx); write "docker.io/library/*" for Docker Hub, or name the registry';

    const check = captureIo();
    // The rule the operator meant does not apply: the image is denied, and the warning says why.
    assert.equal(await runCli(['check', '--config', config, 'nginx'], check), 1);
    assert.deepEqual(check.err, [`kpack-trust-verifier: warning: ${warning}\n`]);
    assert.deepEqual((JSON.parse(check.out.join('')) as { warnings: string[] }).warnings, [
      warning,
    ]);

    const checkConfig = captureIo();
    assert.equal(await runCli(['check-config', '--skip-tls', config], checkConfig), 0);
    assert.deepEqual(checkConfig.err, [`kpack-trust-verifier: warning: ${warning}\n`]);
    const summary = JSON.parse(checkConfig.out.join('')) as { valid: boolean; warnings: string[] };
    assert.equal(summary.valid, true);
    assert.deepEqual(summary.warnings, [warning]);

    const clean = captureIo();
    const cleanConfig = await writeConfig('clean.yaml', 8443);
    assert.equal(await runCli(['check-config', '--skip-tls', cleanConfig], clean), 0);
    assert.deepEqual(clean.err, []);
    assert.ok(!('warnings' in (JSON.parse(clean.out.join('')) as object)));
  });

  it('check exits 2 for an invalid config', async () => {
    const config = join(dir, 'invalid.yaml');
    await writeFile(config, 'listen: 3\n');
    const io = captureIo();
    assert.equal(await runCli(['check', '--config', config, 'alpine'], io), 2);
  });
});

interface Child {
  readonly process: ChildProcessWithoutNullStreams;
  readonly events: Record<string, unknown>[];
  readonly exit: Promise<number | null>;
  waitFor(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
}

function start(args: readonly string[]): Child {
  const child = spawn(process.execPath, [...NODE_ARGS, ...args], { stdio: 'pipe' });
  const events: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let buffered = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      events.push(JSON.parse(line) as Record<string, unknown>);
      for (const wake of waiters.splice(0)) wake();
    }
  });
  child.stderr.resume();
  const exit = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      resolve(code);
    }),
  );
  const waitFor = async (event: string, timeoutMs = 20_000): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = events.find((e) => e['event'] === event);
      if (found) return found;
      if (Date.now() > deadline || child.exitCode !== null) {
        throw new Error(`no ${event} log line; saw ${JSON.stringify(events)}`);
      }
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  };
  return { process: child, events, exit, waitFor };
}

describe('serve as a process', () => {
  it('finishes an in-flight review on SIGTERM, refuses new connections, and exits 0', async () => {
    const port = await freePort();
    const config = await writeConfig('serve.yaml', port);
    const child = start(['serve', '--config', config]);
    try {
      const listening = await child.waitFor('server.listening');
      assert.equal(listening['port'], port);

      // A review whose body is only half sent when SIGTERM arrives.
      const body = Buffer.from(JSON.stringify(reviewBody(['alpine:3.20'])));
      const socket = connect({ host: '127.0.0.1', port, ca: ca.cert, servername: 'localhost' });
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', resolve);
        socket.once('error', reject);
      });
      let response = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (response += chunk));
      const closed = new Promise<void>((resolve) =>
        socket.on('close', () => {
          resolve();
        }),
      );
      socket.write(
        `POST /image-policy HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length}\r\n\r\n`,
      );
      socket.write(body.subarray(0, 20));
      await new Promise((resolve) => setTimeout(resolve, 200));

      child.process.kill('SIGTERM');
      await child.waitFor('server.shutting-down');
      await new Promise((resolve) => setTimeout(resolve, 200));
      await assert.rejects(httpsCall({ port, ca: ca.cert }), { code: 'ECONNREFUSED' });

      socket.end(body.subarray(20));
      await closed;
      const [head = '', payload = ''] = response.split('\r\n\r\n');
      assert.match(head, /^HTTP\/1\.1 200 OK/);
      assert.match(head, /\r\nConnection: close/i);
      assert.deepEqual(JSON.parse(payload), {
        apiVersion: 'imagepolicy.k8s.io/v1alpha1',
        kind: 'ImageReview',
        status: {
          allowed: true,
          auditAnnotations: { 'image-0-rule': 'docker.io/library/*' },
        },
      });

      assert.equal(await child.exit, 0);
      await child.waitFor('server.stopped');
      const decision = child.events.find((e) => e['event'] === 'image.decision');
      assert.equal(decision?.['image'], 'alpine:3.20');
      assert.equal(decision?.['result'], 'exempt');
    } finally {
      child.process.kill('SIGKILL');
    }
  });

  it('ignores SIGHUP during the drain, and exits at a second SIGTERM with its logs written', async () => {
    const port = await freePort();
    const config = await writeConfig('serve-twice.yaml', port);
    const child = start(['serve', '--config', config, '--drain-seconds', '30']);
    try {
      await child.waitFor('server.listening');
      child.process.kill('SIGTERM');
      await child.waitFor('server.shutting-down');
      child.process.kill('SIGHUP');
      await child.waitFor('config.reload-skipped');
      assert.equal(child.process.exitCode, null, 'SIGHUP during the drain must not kill it');
      assert.equal(child.process.signalCode, null);

      child.process.kill('SIGTERM');
      assert.equal(await child.exit, 143);
      // 'exit' can come before the last of stdout has been read.
      if (!child.process.stdout.readableEnded) {
        await new Promise((resolve) => child.process.stdout.once('end', resolve));
      }
      const forced = await child.waitFor('server.forced-exit');
      assert.equal(forced['signal'], 'SIGTERM');
      assert.equal(child.events.filter((e) => e['event'] === 'config.reloaded').length, 0);
    } finally {
      child.process.kill('SIGKILL');
    }
  });

  it('exits 2 and logs why when it cannot start: invalid config, missing TLS files', async () => {
    const invalid = join(dir, 'invalid-serve.yaml');
    await writeFile(
      invalid,
      'listen: { port: 8443, tls: { cert: tls.crt, key: tls.key } }\nrules: nope\n',
    );
    const first = start(['serve', '--config', invalid]);
    assert.equal(await first.exit, 2);
    const configFailure = await first.waitFor('server.start-failed');
    assert.equal((configFailure['error'] as { code?: string }).code, 'CONFIG_INVALID');

    const missingTls = join(dir, 'missing-tls.yaml');
    await writeFile(
      missingTls,
      'listen: { port: 8443, tls: { cert: missing.crt, key: missing.key } }\nrules: []\n',
    );
    const second = start(['serve', '--config', missingTls]);
    assert.equal(await second.exit, 2);
    const tlsFailure = await second.waitFor('server.start-failed');
    const error = tlsFailure['error'] as { code?: string; message?: string };
    assert.equal(error.code, 'ENOENT');
    assert.match(String(error.message), /^listen\.tls: cannot use the certificate .*missing\.crt/);

    // Node's TLS would take a client CA file without a certificate and trust no one.
    await writeFile(join(dir, 'empty-ca.crt'), 'not a certificate\n');
    const emptyCa = join(dir, 'empty-ca.yaml');
    await writeFile(
      emptyCa,
      'listen: { port: 8443, tls: { cert: tls.crt, key: tls.key, clientCA: empty-ca.crt } }\nrules: []\n',
    );
    const third = start(['serve', '--config', emptyCa]);
    let stderr = '';
    third.process.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    assert.equal(await third.exit, 2);
    const caFailure = await third.waitFor('server.start-failed');
    const caError = caFailure['error'] as { code?: string; message?: string };
    assert.equal(caError.code, 'TLS_FILES_INVALID');
    assert.match(
      String(caError.message),
      /listen\.tls\.clientCA .*empty-ca\.crt holds no PEM certificate/,
    );
    assert.match(stderr, /cannot serve: .*empty-ca\.crt holds no PEM certificate/);
  });
});
