import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalString, compareUtf8, goHtmlEscape, parseJson } from '../src/canonical/json.js';
import { isTrustError } from '../src/errors.js';

describe('canonical JSON (Go notary encoder)', () => {
  it('writes no whitespace and sorts keys', () => {
    assert.equal(
      canonicalString({ b: 1, a: [true, null, 'x'], c: {} }),
      '{"a":[true,null,"x"],"b":1,"c":{}}',
    );
  });

  it('escapes only quote and backslash; everything else raw UTF-8', () => {
    const s = canonicalString({ 'tag<>&"\\\'/é€😀\u2028': 'v' });
    assert.equal(s, '{"tag<>&\\"\\\\\'/é€😀\u2028":"v"}');
  });

  it('sorts by UTF-8 byte order, not UTF-16 code units', () => {
    // U+FF5E (3 UTF-8 bytes, EF BD 9E) sorts before U+1F600 (F0 9F 98 80) in UTF-8, but after
    // it in UTF-16 (0xFF5E > 0xD83D).
    const keys = ['\u{1F600}', '\uFF5E', 'a', '\uE000'];
    assert.deepEqual([...keys].sort(compareUtf8), ['a', '\uE000', '\uFF5E', '\u{1F600}']);
    assert.deepEqual([...keys].sort(), ['a', '\u{1F600}', '\uE000', '\uFF5E']);
    assert.equal(canonicalString({ '\u{1F600}': 1, '\uFF5E': 2 }), '{"\uFF5E":2,"\u{1F600}":1}');
  });

  it('omits undefined object members like an absent Go field', () => {
    assert.equal(canonicalString({ a: undefined, b: 2 }), '{"b":2}');
  });

  it('refuses control characters, which notary can never publish', () => {
    assert.throws(
      () => canonicalString({ targets: { 'a\nb': 1 } }),
      (e: unknown) => isTrustError(e, 'NOT_CANONICALIZABLE') && e.facts.path === '$.targets',
    );
  });

  it('refuses non-integers and unsafe integers', () => {
    assert.throws(
      () => canonicalString({ x: 1.5 }),
      (e: unknown) => isTrustError(e, 'NOT_CANONICALIZABLE') && e.facts.path === '$.x',
    );
    assert.throws(
      () => canonicalString([2 ** 53]),
      (e: unknown) => isTrustError(e, 'NOT_CANONICALIZABLE'),
    );
  });

  it('HTML-escapes the way Go json.Marshal does', () => {
    assert.equal(
      goHtmlEscape('{"a<b>&\u2028\u2029":"é"}'),
      '{"a\\u003cb\\u003e\\u0026\\u2028\\u2029":"é"}',
    );
  });

  it('parsing HTML-escaped wire bytes and re-canonicalizing restores the signed bytes', () => {
    const signed = { targets: { '<tag>&': { length: 3 } } };
    const wire = goHtmlEscape(canonicalString(signed));
    assert.notEqual(wire, canonicalString(signed));
    assert.equal(canonicalString(parseJson(Buffer.from(wire), 'targets')), canonicalString(signed));
  });

  it('reports unparseable bytes as malformed metadata of the role', () => {
    assert.throws(
      () => parseJson(Buffer.from('{"signed":'), 'snapshot'),
      (e: unknown) => isTrustError(e, 'METADATA_MALFORMED') && e.facts.role === 'snapshot',
    );
  });
});
