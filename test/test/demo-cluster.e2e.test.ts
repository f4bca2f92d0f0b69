/**
 * `bash scripts/demo.sh --cluster` as a test: after the demo's table, the real kube-apiserver's
 * ImagePolicyWebhook plugin asks the demo's verifier, and kubectl shows the signed image admitted
 * and the unsigned one refused in the apiserver's own words, carrying the verifier's reason.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runDemoWith } from '../src/demo/demo.js';

void describe('the demo with --cluster', () => {
  void it('admits the signed image and shows the apiserver refusing the unsigned one', async () => {
    const { rows, cluster } = await runDemoWith({ cluster: true });
    assert.equal(rows.length, 5);
    assert.ok(cluster);
    assert.equal(cluster.version.code, 0, cluster.version.stderr);
    assert.match(cluster.version.stdout, /^Server Version: v1\.\d+\.\d+$/m);
    // The signer's key Secrets are in the real apiserver, one per role and image.
    assert.equal(cluster.secrets.code, 0, cluster.secrets.stderr);
    assert.deepEqual(
      cluster.secrets.stdout
        .trim()
        .split('\n')
        .slice(1)
        .map((line) => {
          const cols = line.trim().split(/\s+/);
          return [cols[0], cols[1], cols.at(-1)];
        })
        .sort(),
      [
        ['app-notary-root', 'Opaque', 'root'],
        ['app-notary-targets', 'Opaque', 'targets'],
        ['other-notary-root', 'Opaque', 'root'],
        ['other-notary-targets', 'Opaque', 'targets'],
      ],
    );
    assert.equal(cluster.signed.code, 0, cluster.signed.stderr);
    assert.match(cluster.storedImage, /^127\.0\.0\.1:\d+\/demo\/app:v1$/);
    assert.notEqual(cluster.unsigned.code, 0);
    const denied = rows.find((r) => r.image === cluster.unsignedImage);
    assert.ok(denied, 'the table has a row for the unsigned image');
    assert.ok(
      cluster.unsigned.stderr.includes(
        `(Forbidden): pods "unsigned" is forbidden: image policy webhook backend denied one or more images: ${denied.reason}`,
      ),
      cluster.unsigned.stderr,
    );
  });
});
