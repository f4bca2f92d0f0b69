/**
 * The README's demo, run as a test: signer and verifier CLIs as child processes against the real
 * stack. Each image must get the decision the demo promises, and a denial must say why.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runDemo } from '../src/demo/demo.js';

describe('the end-to-end demo', () => {
  it('admits the signed tag and its digest and denies the other three, each with a reason', async () => {
    const rows = await runDemo();
    assert.deepEqual(
      rows.map((r) => [
        r.image.replace(/^127\.0\.0\.1:\d+\//, '').replace(/[0-9a-f]{64}/, 'H'),
        r.allowed,
      ]),
      [
        ['demo/app:v1', true],
        ['demo/app@sha256:H', true],
        ['demo/app:unsigned', false],
        ['demo/other:v1', false],
        ['demo/app@sha256:H', false],
      ],
    );
    for (const r of rows.filter((row) => !row.allowed)) {
      assert.ok(r.reason.startsWith(r.image), `the reason names the image: ${r.reason}`);
    }
    assert.match(rows[2]?.reason ?? '', /not signed/);
    assert.match(rows[3]?.reason ?? '', /not signed by a pinned root key/);
    assert.match(rows[4]?.reason ?? '', /no signed tag .* points to sha256:/);
  });
});
