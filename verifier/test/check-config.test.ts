/**
 * `kpack-trust-verifier check-config`: a config `serve` would start with passes; each thing that
 * would stop `serve` (a rule it refuses, a file the config names that is missing, TLS files that
 * do not match or have expired) fails with its code, one corruption at a time.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCheckConfig } from '../src/cli/check-config.js';
import { runCli, type CliIo } from '../src/main.js';
import { createAuthority, type Pem } from './support/tls.js';

const RULES = `rules:
  - images: registry.example.com/team/*
    trust: { rootKeys: ['${'a'.repeat(64)}'] }
`;

let dir: string;
let serving: Pem;
let other: Pem;
let caPem: string;

/** Writes config.yaml (listen + notary with credentials + `rules`) and returns its path. */
function writeConfig(rules = RULES, extra = ''): string {
  const path = join(dir, 'config.yaml');
  writeFileSync(
    path,
    `listen:
  port: 8443
  tls: { cert: tls.crt, key: tls.key, clientCA: client-ca.crt }
notary:
  - registry: registry.example.com
    server: https://notary.example.com
    credentials: creds/config.json
${extra}${rules}`,
  );
  return path;
}

function errorOf(output: string): { code: string; message: string } {
  return (JSON.parse(output) as { error: { code: string; message: string } }).error;
}

describe('check-config', () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kpack-trust-check-config-'));
    const ca = await createAuthority();
    serving = await ca.issue('verifier', 'server');
    other = await ca.issue('other', 'server');
    caPem = ca.cert;
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Every file the config names, present and valid. */
  const fresh = (): void => {
    mkdirSync(join(dir, 'creds'), { recursive: true });
    writeFileSync(join(dir, 'tls.crt'), serving.cert);
    writeFileSync(join(dir, 'tls.key'), serving.key);
    writeFileSync(join(dir, 'client-ca.crt'), caPem);
    writeFileSync(join(dir, 'creds/config.json'), '{"auths":{}}');
  };

  it('passes a config serve would start with, and says what it checked', async () => {
    fresh();
    const result = await runCheckConfig(writeConfig());
    assert.equal(result.exitCode, 0, result.output);
    const summary = JSON.parse(result.output) as Record<string, unknown>;
    assert.equal(summary['valid'], true);
    assert.equal(summary['rules'], 1);
    assert.deepEqual(summary['notary'], [
      { registry: 'registry.example.com', server: 'https://notary.example.com' },
    ]);
    assert.equal((summary['tls'] as { checked: boolean }).checked, true);
  });

  it('refuses a rule with both allow and deny, as serve would', async () => {
    fresh();
    const result = await runCheckConfig(
      writeConfig('rules:\n  - images: "**"\n    allow: true\n    deny: true\n'),
    );
    assert.equal(result.exitCode, 1);
    assert.equal(errorOf(result.output).code, 'CONFIG_INVALID');
    assert.match(errorOf(result.output).message, /needs exactly one of/);
  });

  it('refuses a config whose notary credentials file is missing', async () => {
    fresh();
    rmSync(join(dir, 'creds/config.json'));
    const result = await runCheckConfig(writeConfig());
    assert.equal(result.exitCode, 1);
    assert.equal(errorOf(result.output).code, 'CONFIG_INVALID');
    assert.match(errorOf(result.output).message, /notary\[0\]\.credentials/);
  });

  it('refuses a missing serving certificate, unless told to skip the TLS files', async () => {
    fresh();
    rmSync(join(dir, 'tls.crt'));
    const result = await runCheckConfig(writeConfig());
    assert.equal(result.exitCode, 1);
    assert.equal(errorOf(result.output).code, 'TLS_FILES_INVALID');
    assert.match(
      errorOf(result.output).message,
      /listen\.tls\.cert .*tls\.crt cannot be read \(ENOENT\)/,
    );
    const skipped = await runCheckConfig(writeConfig(), { skipTls: true });
    assert.equal(skipped.exitCode, 0, skipped.output);
    assert.deepEqual((JSON.parse(skipped.output) as { tls: unknown }).tls, { checked: false });
  });

  it('refuses a key that is not the certificate’s', async () => {
    fresh();
    writeFileSync(join(dir, 'tls.key'), other.key);
    const result = await runCheckConfig(writeConfig());
    assert.equal(result.exitCode, 1);
    assert.equal(errorOf(result.output).code, 'TLS_FILES_INVALID');
    assert.match(errorOf(result.output).message, /is not the private key of the certificate/);
  });

  it('refuses an expired serving certificate', async () => {
    fresh();
    const later = new Date(Date.now() + 400 * 24 * 3600 * 1000);
    const result = await runCheckConfig(writeConfig(), { now: () => later });
    assert.equal(result.exitCode, 1);
    assert.equal(errorOf(result.output).code, 'TLS_FILES_INVALID');
    assert.match(errorOf(result.output).message, /expired on/);
  });

  it('refuses a client CA file that holds no certificate', async () => {
    fresh();
    writeFileSync(join(dir, 'client-ca.crt'), 'not a certificate\n');
    const result = await runCheckConfig(writeConfig());
    assert.equal(result.exitCode, 1);
    assert.equal(errorOf(result.output).code, 'TLS_FILES_INVALID');
    assert.match(
      errorOf(result.output).message,
      /listen\.tls\.clientCA .* holds no PEM certificate/,
    );
  });

  it('runs from the command line: 0 on stdout, 1 on stderr, 2 for a usage mistake', async () => {
    fresh();
    const io = (): CliIo & { out: string[]; err: string[] } => {
      const out: string[] = [];
      const err: string[] = [];
      return { out, err, stdout: (t) => out.push(t), stderr: (t) => err.push(t), env: {} };
    };
    const good = io();
    assert.equal(await runCli(['check-config', writeConfig()], good), 0);
    assert.match(good.out.join(''), /"valid": true/);
    const bad = io();
    rmSync(join(dir, 'tls.key'));
    assert.equal(await runCli(['check-config', writeConfig()], bad), 1);
    assert.match(bad.err.join(''), /"code": "TLS_FILES_INVALID"/);
    const usage = io();
    assert.equal(await runCli(['check-config'], usage), 2);
    assert.match(usage.err.join(''), /name exactly one config FILE/);
  });
});
