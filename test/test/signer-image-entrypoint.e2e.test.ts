/**
 * The signer as its image starts it: the bundle (scripts/bundle-signer.mjs) under the Node flags
 * of the Dockerfile's ENTRYPOINT (`--use-openssl-ca`, which makes Node's own root store OpenSSL's),
 * with nothing from this machine's environment, against the real notary stack and its private CA.
 * The signer trusts `--notary-ca` first and Node's bundled roots only when a chain is refused
 * (common/src/notary/tls-trust.ts): with the CA it signs, without it the stack's certificate stays
 * refused.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSigningKey } from '@kpack-trust/common';
import {
  lookup,
  pushImage,
  repoRoot,
  runBareNode,
  signerImageEntrypoint,
  startStack,
  writeKeysDir,
  type NotaryStack,
  type PushedImage,
} from '@kpack-trust/e2e';

void describe("kpack-trust-signer as the signer image's ENTRYPOINT starts it", () => {
  const entrypoint = signerImageEntrypoint();
  let stack: NotaryStack;
  let image: PushedImage;
  let keysDir: string;
  let rootDir: string;

  /**
   * `node <the image's flags> <bundle> sign …` for `tag`, with the test's keys and an environment
   * of PATH and HOME alone.
   */
  const sign = (tag: string, notaryArgs: readonly string[]) =>
    runBareNode([
      ...entrypoint.nodeFlags,
      entrypoint.script,
      'sign',
      ...notaryArgs,
      '--image',
      `${image.gun}:${tag}`,
      '--digest',
      image.digest,
      '--keys-dir',
      keysDir,
      '--root-keys-dir',
      rootDir,
    ]);
  before(async () => {
    // The image's build makes the bundle from the compiled program; so does this test.
    execFileSync(process.execPath, [join(repoRoot(), 'scripts', 'bundle-signer.mjs')], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    stack = await startStack();
    image = await pushImage(stack, 'team/entrypoint', 'v1');
    const base = await stack.tempDir('entrypoint-keys');
    keysDir = await writeKeysDir(join(base, 'targets'), generateSigningKey(), 'targets');
    rootDir = await writeKeysDir(join(base, 'root'), generateSigningKey(), 'root');
  });

  after(async () => {
    await stack?.stop();
  });

  void it('starts Node with --use-openssl-ca, the flag the TLS trust relies on for its speed', () => {
    assert.ok(entrypoint.nodeFlags.includes('--use-openssl-ca'), entrypoint.nodeFlags.join(' '));
  });

  void it('signs with --notary-ca; notary lookup resolves the tag to the digest', async () => {
    const signed = await sign('v1', ['--notary-url', stack.notaryUrl, '--notary-ca', stack.caFile]);
    assert.equal(signed.code, 0, signed.stderr);
    const found = await lookup(stack, image.gun, 'v1', await stack.tempDir('entrypoint-lookup'));
    assert.equal(`sha256:${found.sha256Hex}`, image.digest);
  });

  void it("without --notary-ca the stack's private CA is refused, after the bundled roots too", async () => {
    const refused = await sign('v2', ['--notary-url', stack.notaryUrl]);
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.stderr,
      /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify the first certificate/,
    );
  });
});
