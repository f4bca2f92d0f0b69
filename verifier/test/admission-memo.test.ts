/**
 * The admission webhooks' parse memo answers a body only when it is, byte for byte, one it parsed
 * before with nothing but `request.uid`'s value changed: the scan that proves where the uid is
 * agrees with JSON.parse (duplicate keys, escaped keys, nested uids), every other byte counts, and
 * uids it cannot cut out safely (escapes, odd bytes, odd spacing, decoys) are never memoised.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdmissionMemo, requestUidSpan } from '../src/http/admission-memo.js';

const UID = '705ab4f5-6393-11e8-b7cc-42010a800001';
const OTHER_UID = '0c7b3a9e-2f4d-4b8a-9a3e-5d1f2c6b7e80';

/** A compact AdmissionReview as the apiserver encodes it, with `uidToken` as written (quoted). */
function body(uidToken = JSON.stringify(UID), image = 'registry.test/demo/app:v1'): string {
  return (
    `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":${uidToken},` +
    `"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1",` +
    `"resource":"pods"},"namespace":"default","operation":"CREATE","object":{"metadata":` +
    `{"name":"app","uid":"not-the-request-uid","annotations":{"note":"\\"uid\\":\\"x\\""}},` +
    `"spec":{"containers":[{"name":"app","image":${JSON.stringify(image)}}]}},"oldObject":null}}`
  );
}

/** The uid JSON.parse reads from a body, and the one the scan finds, as text. */
function uids(text: string): { parsed: unknown; scanned: string | undefined } {
  const bytes = Buffer.from(text);
  const document = JSON.parse(text) as { request?: { uid?: unknown } };
  const span = requestUidSpan(bytes);
  return {
    parsed: document.request?.uid,
    scanned:
      span === undefined
        ? undefined
        : (JSON.parse(`"${bytes.toString('utf8', span.start, span.end)}"`) as string),
  };
}

describe('requestUidSpan agrees with JSON.parse', () => {
  const cases: Record<string, string> = {
    'the apiserver encoding': body(),
    'a uid written with escapes': body('"705ab4f5\\u002d6393"'),
    'duplicate uid keys (the last wins)': body().replace(
      `"uid":"${UID}"`,
      `"uid":"first","uid":"${UID}"`,
    ),
    'duplicate request keys (the last wins)': `{"request":{"uid":"decoy"},${body().slice(1)}`,
    'a later request without a uid': `${body().slice(0, -1)},"request":{"kind":{}}}`,
    'a later request that is not an object': `${body().slice(0, -1)},"request":[{"uid":"a"}]}`,
    'a later uid that is not a string': body().replace(
      `"uid":"${UID}",`,
      `"uid":"${UID}","uid":7,`,
    ),
    'an escaped key spelling uid': body().replace('"uid":', '"u\\u0069d":'),
    'an escaped key spelling request': body().replace('"request":', '"requ\\u0065st":'),
    'a key spelling uid with a quote in it': body().replace('"uid":', '"\\"uid":'),
    'spaces and newlines between tokens': JSON.stringify(JSON.parse(body()), null, 2),
    'a decoy marker in a key before the request': `{"x\\"uid":"decoy",${body().slice(1)}`,
    'non-ASCII text around it': body().replace('"app"', '"äpp ✓"'),
    'a top-level array': `[${body()}]`,
  };
  for (const [name, text] of Object.entries(cases)) {
    it(name, () => {
      const { parsed, scanned } = uids(text);
      assert.equal(scanned, typeof parsed === 'string' ? parsed : undefined);
    });
  }

  it('finds no uid in a review whose only "uid" is nested in the object', () => {
    const text = body().replace(`"uid":"${UID}",`, '');
    assert.equal((JSON.parse(text) as { request: { uid?: string } }).request.uid, undefined);
    assert.equal(requestUidSpan(Buffer.from(text)), undefined);
  });

  it('agrees on randomly shuffled reviews with duplicate keys at every level', () => {
    // A fixed generator, so a failure is reproducible.
    let seed = 20261206;
    const random = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const pick = <T>(list: readonly T[]): T => list[random(list.length)] as T;
    const scalar = (): string =>
      pick([
        '"uid"',
        '"x\\"uid\\":\\"y"',
        '"re\\u0071uest"',
        '1.5e3',
        'true',
        'null',
        '"u-1"',
        '"u-2"',
      ]);
    // Keys near the top are mostly the ones that matter, so most reviews have a request.uid.
    const key = (depth: number): string =>
      depth === 0
        ? pick(['"request"', '"requ\\u0065st"', '"request"', '"other"'])
        : pick(['"uid"', '"u\\u0069d"', '"request"', '"other"', '"uid "']);
    const value = (depth: number): string => {
      const shape = depth > 3 ? 0 : random(depth === 0 ? 2 : 4);
      if (shape === 0) return depth === 0 ? object(depth + 1) : scalar();
      if (shape === 1 && depth > 0) {
        return `[${Array.from({ length: random(3) }, () => value(depth + 1)).join(`,${space()}`)}]`;
      }
      return object(depth + 1);
    };
    const object = (depth: number): string =>
      `{${Array.from({ length: random(5) }, () => `${key(depth)}${space()}:${value(depth)}`).join(`,${space()}`)}}`;
    const space = (): string => pick(['', '', ' ', '\n\t']);
    let found = 0;
    for (let i = 0; i < 3000; i++) {
      const text = object(0);
      const { parsed, scanned } = uids(text);
      assert.equal(scanned, typeof parsed === 'string' ? parsed : undefined, text);
      if (scanned !== undefined) found++;
    }
    assert.ok(found > 100, `only ${found} generated reviews had a string request.uid`);
  });
});

/** Offers a body twice, as two reviews of one pod: the memo keeps only a body seen before. */
function rememberTwice<Plan>(
  memo: AdmissionMemo<Plan>,
  text: string | Buffer,
  uid: string,
  plan: Plan,
): boolean {
  const bytes = Buffer.from(text);
  memo.remember('mutate', bytes, uid, plan);
  return memo.remember('mutate', bytes, uid, plan);
}

describe('AdmissionMemo', () => {
  const plan = { meaning: 'the pod of body()' };

  it('keeps a body only when it is seen a second time', () => {
    const memo = new AdmissionMemo<typeof plan>();
    assert.equal(memo.remember('mutate', Buffer.from(body()), UID, plan), false);
    assert.equal(memo.lookup('mutate', Buffer.from(body())), undefined);
    assert.equal(memo.size, 0);
    assert.equal(memo.remember('mutate', Buffer.from(body()), UID, plan), true);
    assert.equal(memo.lookup('mutate', Buffer.from(body()))?.plan, plan);
  });

  it('answers the same body under another uid with that uid and the remembered plan', () => {
    const memo = new AdmissionMemo<typeof plan>();
    assert.equal(rememberTwice(memo, body(), UID, plan), true);
    const hit = memo.lookup('mutate', Buffer.from(body(JSON.stringify(OTHER_UID))));
    assert.equal(hit?.uid, OTHER_UID);
    assert.equal(hit.plan, plan);
  });

  it('misses when any single byte outside the uid differs', () => {
    const memo = new AdmissionMemo<typeof plan>();
    const original = Buffer.from(body());
    rememberTwice(memo, original, UID, plan);
    const uidAt = original.indexOf(UID);
    let checked = 0;
    for (let i = 0; i < original.length; i++) {
      if (i >= uidAt && i < uidAt + UID.length) continue;
      const changed = Buffer.from(original);
      changed[i] = (changed[i] as number) ^ 0x01;
      assert.equal(memo.lookup('mutate', changed), undefined, `byte ${i} changed`);
      checked++;
    }
    assert.equal(checked, original.length - UID.length);
    // Two same-length images, one character apart: not the same pod.
    assert.equal(
      memo.lookup('mutate', Buffer.from(body(JSON.stringify(UID), 'registry.test/demo/app:v9'))),
      undefined,
    );
  });

  it('misses bodies one byte longer or shorter around the uid', () => {
    const memo = new AdmissionMemo<typeof plan>();
    rememberTwice(memo, body(), UID, plan);
    assert.equal(memo.lookup('mutate', Buffer.from(` ${body()}`)), undefined);
    assert.equal(memo.lookup('mutate', Buffer.from(`${body()} `)), undefined);
    assert.equal(memo.lookup('mutate', Buffer.from(body().slice(0, -1))), undefined);
  });

  it('keeps the webhooks apart', () => {
    const memo = new AdmissionMemo<typeof plan>();
    rememberTwice(memo, body(), UID, plan);
    assert.equal(memo.lookup('validate', Buffer.from(body())), undefined);
  });

  it('never remembers a body whose uid it cannot cut out provably', () => {
    const memo = new AdmissionMemo<typeof plan>();
    const refused: Record<string, [string, string]> = {
      'a uid with escapes': [body('"705ab4f5\\u002d6393"'), '705ab4f5-6393'],
      'a uid with a space': [body('"705ab4f5 6393"'), '705ab4f5 6393'],
      'a uid with non-ASCII text': [body('"uid-ä"'), 'uid-ä'],
      'duplicate uid keys': [body().replace(`"uid":"${UID}"`, `"uid":"first","uid":"${UID}"`), UID],
      'duplicate request keys': [`{"request":{"uid":"${UID}"},${body().slice(1)}`, UID],
      'a decoy marker before the request': [`{"x\\"uid":"${UID}",${body().slice(1)}`, UID],
      'spacing other than the apiserver compact encoding': [
        JSON.stringify(JSON.parse(body()), null, 1),
        UID,
      ],
      'a uid over 128 characters': [body(JSON.stringify('u'.repeat(129))), 'u'.repeat(129)],
      'a uid the caller did not parse': [body(), OTHER_UID],
    };
    for (const [name, [text, uid]] of Object.entries(refused)) {
      assert.equal(rememberTwice(memo, text, uid, plan), false, name);
    }
    assert.equal(memo.size, 0);
  });

  it('misses a body whose uid has escapes, odd bytes, or a length parseAdmissionReview refuses', () => {
    const memo = new AdmissionMemo<typeof plan>();
    rememberTwice(memo, body(), UID, plan);
    for (const token of ['"705ab4f5\\u002d6393"', '"a b"', '""', JSON.stringify('u'.repeat(129))]) {
      assert.equal(memo.lookup('mutate', Buffer.from(body(token))), undefined, token);
    }
    assert.equal(
      memo.lookup('mutate', Buffer.from(body(JSON.stringify('u'.repeat(128)))))?.uid,
      'u'.repeat(128),
    );
  });

  it('bounds entries, body bytes in all, and the size of a body it keeps', () => {
    const memo = new AdmissionMemo<number>({ maxEntries: 4, maxBytes: 4000, maxBodyBytes: 600 });
    for (let i = 0; i < 10; i++) {
      const text = body(JSON.stringify(UID), `registry.test/demo/app:v${i}`);
      assert.equal(rememberTwice(memo, text, UID, i), true);
      assert.ok(memo.size <= 4);
    }
    assert.equal(
      memo.lookup('mutate', Buffer.from(body(JSON.stringify(UID), 'registry.test/demo/app:v9')))
        ?.plan,
      9,
    );
    assert.equal(
      memo.lookup('mutate', Buffer.from(body(JSON.stringify(UID), 'registry.test/demo/app:v0'))),
      undefined,
      'the oldest was dropped',
    );
    const large = body(JSON.stringify(UID), `registry.test/demo/${'a'.repeat(300)}:v1`);
    assert.ok(Buffer.byteLength(large) > 600);
    assert.equal(rememberTwice(memo, large, UID, 0), false);

    const byBytes = new AdmissionMemo<number>({
      maxEntries: 100,
      maxBytes: 1200,
      maxBodyBytes: 600,
    });
    for (let i = 0; i < 10; i++) {
      rememberTwice(byBytes, body(JSON.stringify(UID), `r.test/a:v${i}`), UID, i);
    }
    assert.ok(byBytes.size <= 3, `${byBytes.size} entries of ~420 bytes in 1,200`);
    assert.throws(
      () => new AdmissionMemo({ maxEntries: 0, maxBytes: 1, maxBodyBytes: 1 }),
      RangeError,
    );
  });
});
