import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DecisionLog,
  combineObservers,
  createJsonLogger,
  onceEvery,
  type LogLevel,
} from '../src/http/logger.js';
import { VerifierMetrics, classifyReason, type ImageDecisionEvent } from '../src/http/metrics.js';
import type { DecisionObserver } from '../src/review.js';

const NOW = new Date('2025-01-02T03:04:05.678Z');

function collect(level?: LogLevel) {
  const lines: string[] = [];
  const logger = createJsonLogger({
    write: (line) => lines.push(line),
    now: () => NOW,
    ...(level ? { level } : {}),
  });
  return {
    logger,
    lines,
    parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

function decision(overrides: Partial<ImageDecisionEvent>): ImageDecisionEvent {
  return {
    image: 'registry.test/team/app:1',
    namespace: 'default',
    result: 'denied',
    reason: '',
    durationMs: 1.5,
    ...overrides,
  };
}

describe('classifyReason', () => {
  const denials: [string, string][] = [
    ['not a valid image reference (path component "A" must be lowercase)', 'reference_invalid'],
    ['no policy rule matches registry.test/x in namespace "default"', 'no_rule'],
    ['rule "prod" requires a digest reference (registry.test/x@sha256:…)', 'digest_required'],
    ['denied by rule "blocked"', 'rule_deny'],
    [
      `tag "1" is signed for sha256:${'a'.repeat(64)}, not for the referenced sha256:${'b'.repeat(64)}`,
      'digest_mismatch',
    ],
    ['1 of the required signers signed "1", 2 needed (targets/qa: not signed)', 'signers_not_met'],
    [
      'not signed in notary https://notary.test (no target "1" in targets/releases or targets)',
      'not_signed',
    ],
    [
      'notary https://notary.test is unavailable for registry.test/x (timed out)',
      'notary_unavailable',
    ],
    [
      'notary https://notary.test is missing trust data for registry.test/x (HTTP 404)',
      'notary_unavailable',
    ],
    [
      'no trust data for h:1/x from notary https://h:1 (not signed there, or the server did not serve it)',
      'no_trust_data',
    ],
    ['internal error while checking notary https://notary.test for registry.test/x', 'internal'],
    [
      'trust data for registry.test/x from notary https://notary.test failed verification: whatever',
      'verification_failed',
    ],
    ['something nobody anticipated', 'other'],
  ];
  for (const [reason, expected] of denials) {
    it(`${expected}: ${reason.slice(0, 50)}`, () => {
      assert.equal(classifyReason(decision({ reason })), expected);
      assert.equal(classifyReason(decision({ reason, result: 'would-deny' })), expected);
    });
  }

  it('prefers the outcome code when the event carries a known one', () => {
    const reason = 'trust data for x from notary y failed verification: timestamp expired';
    const withCode = (code: string): ImageDecisionEvent => ({ ...decision({ reason }), code });
    assert.equal(classifyReason(withCode('EXPIRED')), 'expired');
    assert.equal(classifyReason(withCode('VERSION_ROLLBACK')), 'version_rollback');
    assert.equal(classifyReason(withCode('SIGNERS_NOT_MET')), 'signers_not_met');
    assert.equal(
      classifyReason(withCode(`registry.test/${'x'.repeat(30)}`)),
      'verification_failed',
    );
    const withErrorCode = {
      ...decision({ reason }),
      errorCode: 'HTTP_UNREACHABLE',
    } as ImageDecisionEvent;
    assert.equal(classifyReason(withErrorCode), 'http_unreachable');
  });

  it('classifies admissions by result when there is no code', () => {
    assert.equal(
      classifyReason(decision({ result: 'allowed', reason: 'signed by targets' })),
      'signed',
    );
    assert.equal(classifyReason(decision({ result: 'break-glass', reason: 'x' })), 'break_glass');
    assert.equal(
      classifyReason(
        decision({
          result: 'exempt',
          reason: 'namespace "kube-system" is exempt from image policy',
        }),
      ),
      'namespace_exempt',
    );
    assert.equal(
      classifyReason(
        decision({ result: 'exempt', reason: 'admitted without verification by rule "hub"' }),
      ),
      'rule_allow',
    );
  });
});

describe('VerifierMetrics', () => {
  it('counts notary fetches, errors by code and cache hits, with bounded labels', async () => {
    const metrics = new VerifierMetrics({
      defaultMetrics: false,
      notaryServers: ['https://notary.test'],
    });
    metrics.notaryFetched({
      server: 'https://notary.test',
      gun: 'registry.test/a',
      ok: true,
      durationMs: 12,
    });
    metrics.notaryFetched({
      server: 'https://notary.test',
      gun: 'registry.test/b',
      ok: false,
      errorCode: 'HTTP_UNREACHABLE',
      durationMs: 10_000,
    });
    metrics.notaryFetched({
      server: 'https://notary.test',
      gun: 'registry.test/c',
      ok: false,
      errorCode: 'free text from somewhere',
      durationMs: 5,
    });
    // Servers the config does not name (a pod's own host:port) share one label value.
    for (const server of ['https://10.0.0.1:22', 'https://attacker.example:1']) {
      metrics.notaryFetched({
        server,
        gun: 'h/x',
        ok: false,
        errorCode: 'HTTP_UNREACHABLE',
        durationMs: 1,
      });
    }
    metrics.cacheLookup({ hit: true });
    metrics.cacheLookup({ hit: true });
    metrics.cacheLookup({ hit: false });
    metrics.imageDecided(
      decision({ reason: 'not signed in notary x', image: 'registry.test/secret/app:1' }),
    );
    const { body } = await metrics.exposition();
    const lines = body.split('\n');
    for (const line of [
      'kpack_trust_verifier_notary_fetch_errors_total{server="https://notary.test",code="HTTP_UNREACHABLE"} 1',
      'kpack_trust_verifier_notary_fetch_errors_total{server="https://notary.test",code="OTHER"} 1',
      'kpack_trust_verifier_notary_fetch_duration_seconds_count{server="https://notary.test",outcome="ok"} 1',
      'kpack_trust_verifier_notary_fetch_duration_seconds_count{server="https://notary.test",outcome="error"} 2',
      'kpack_trust_verifier_notary_fetch_duration_seconds_bucket{le="10",server="https://notary.test",outcome="error"} 2',
      'kpack_trust_verifier_notary_fetch_errors_total{server="implicit",code="HTTP_UNREACHABLE"} 2',
      'kpack_trust_verifier_cache_lookups_total{result="hit"} 2',
      'kpack_trust_verifier_cache_lookups_total{result="miss"} 1',
      'kpack_trust_verifier_image_decisions_total{result="denied",reason="not_signed"} 1',
    ]) {
      assert.ok(lines.includes(line), `missing: ${line}`);
    }
    assert.ok(!body.includes('registry.test/'), 'neither GUNs nor images become label values');
    assert.ok(!/10\.0\.0\.1|attacker/.test(body), 'nor unconfigured servers');
  });

  it('counts hot counters between scrapes without losing or repeating any', async () => {
    const metrics = new VerifierMetrics({ defaultMetrics: false });
    const hits = async (): Promise<string | undefined> =>
      /^kpack_trust_verifier_cache_lookups_total\{result="hit"\} (\d+)$/m.exec(
        (await metrics.exposition()).body,
      )?.[1];
    metrics.cacheLookup({ hit: true });
    metrics.reviewAnswered('allowed', 0.001);
    metrics.httpResponse('review', 200);
    assert.equal(await hits(), '1');
    assert.equal(await hits(), '1', 'a second scrape adds nothing');
    metrics.cacheLookup({ hit: true });
    metrics.cacheLookup({ hit: false });
    metrics.reviewAnswered('allowed', 0.001);
    metrics.reviewAnswered('error', 0.001);
    metrics.httpResponse('review', 200);
    metrics.httpResponse('review', 500);
    const { body } = await metrics.exposition();
    for (const line of [
      'kpack_trust_verifier_cache_lookups_total{result="hit"} 2',
      'kpack_trust_verifier_cache_lookups_total{result="miss"} 1',
      'kpack_trust_verifier_reviews_total{outcome="allowed"} 2',
      'kpack_trust_verifier_reviews_total{outcome="error"} 1',
      'kpack_trust_verifier_review_duration_seconds_count{outcome="allowed"} 2',
      'kpack_trust_verifier_http_responses_total{route="review",code="200"} 2',
      'kpack_trust_verifier_http_responses_total{route="review",code="500"} 1',
    ]) {
      assert.ok(body.split('\n').includes(line), `missing: ${line}`);
    }
  });

  it('registers the default process metrics unless told not to', async () => {
    const withDefaults = await new VerifierMetrics().exposition();
    assert.match(withDefaults.body, /^process_cpu_user_seconds_total /m);
    assert.match(withDefaults.body, /^nodejs_eventloop_lag_seconds /m);
    const without = await new VerifierMetrics({ defaultMetrics: false }).exposition();
    assert.doesNotMatch(without.body, /process_cpu_user_seconds_total/);
  });
});

describe('createJsonLogger', () => {
  it('writes one JSON object per line: time, level, event first, then the fields', () => {
    const { logger, lines } = collect();
    logger.info('server.listening', { port: 8443, host: '*' });
    assert.deepEqual(lines, [
      '{"time":"2025-01-02T03:04:05.678Z","level":"info","event":"server.listening","port":8443,"host":"*"}',
    ]);
  });

  it('never lets fields overwrite time, level or event, and drops undefined fields', () => {
    const { logger, parsed } = collect();
    logger.warn('x', {
      time: 'forged',
      level: 'debug',
      event: 'other',
      digest: undefined,
      ok: false,
    });
    assert.deepEqual(parsed(), [{ time: NOW.toISOString(), level: 'warn', event: 'x', ok: false }]);
  });

  it('drops lines below the level', () => {
    const { logger, parsed } = collect('warn');
    logger.debug('a');
    logger.info('b');
    logger.warn('c');
    logger.error('d');
    assert.deepEqual(
      parsed().map((l) => l['event']),
      ['c', 'd'],
    );
  });

  it('bounds long strings and serialises errors with their code', () => {
    const { logger, parsed } = collect();
    const error = Object.assign(new Error('boom'), { code: 'CONFIG_INVALID' });
    logger.error('e', { image: 'a'.repeat(10_000), error });
    const [line] = parsed();
    assert.equal(line?.['image'], `${'a'.repeat(2048)}…(10000 chars)`);
    assert.deepEqual(line?.['error'], { name: 'Error', message: 'boom', code: 'CONFIG_INVALID' });
  });

  it('survives a cyclic value', () => {
    const { logger, parsed } = collect();
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    logger.info('cyclic', { cyclic });
    const [line] = parsed();
    assert.equal(line?.['event'], 'cyclic');
    assert.match(String(line?.['logError']), /circular/i);
  });
});

describe('onceEvery', () => {
  it('opens on the first call, then stays shut until the interval has passed', async () => {
    const due = onceEvery(50);
    assert.deepEqual([due(), due(), due()], [true, false, false]);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.deepEqual([due(), due()], [true, false]);
  });
});

describe('DecisionLog and combineObservers', () => {
  it('logs one line per image decision with image, digest, rule, result, reason, duration, namespace', () => {
    const { logger, parsed } = collect();
    new DecisionLog(logger).imageDecided({
      image: 'registry.test/team/app:1',
      namespace: 'team',
      digest: `sha256:${'c'.repeat(64)}`,
      role: 'targets/releases',
      rule: 'team',
      result: 'allowed',
      reason: 'signed by targets/releases in notary https://notary.test',
      durationMs: 0.123456,
    });
    assert.deepEqual(parsed(), [
      {
        time: NOW.toISOString(),
        level: 'info',
        event: 'image.decision',
        image: 'registry.test/team/app:1',
        namespace: 'team',
        digest: `sha256:${'c'.repeat(64)}`,
        role: 'targets/releases',
        rule: 'team',
        result: 'allowed',
        reason: 'signed by targets/releases in notary https://notary.test',
        durationMs: 0.123,
      },
    ]);
  });

  it('logs a memoised decision exactly as any other, serializing its fields once per memo', () => {
    const { logger, lines } = collect();
    const log = new DecisionLog(logger);
    const fields = {
      image: 'registry.test/team/app:1',
      namespace: 'team',
      digest: `sha256:${'c'.repeat(64)}`,
      role: 'targets',
      rule: 'team',
      result: 'allowed' as const,
      reason: 'signed by "targets" in notary https://notary.test',
    };
    const memo = { ...fields };
    log.imageDecided({ ...fields, durationMs: 0.123456 });
    log.imageDecided({ ...fields, durationMs: 0.123456, memo });
    log.imageDecided({ ...fields, durationMs: 2, memo });
    assert.equal(lines.length, 3);
    assert.equal(lines[1], lines[0]);
    assert.deepEqual(JSON.parse(lines[2] ?? ''), { ...JSON.parse(lines[0] ?? ''), durationMs: 2 });
    // Below the level nothing is written, memo or not.
    const quiet = collect('warn');
    new DecisionLog(quiet.logger).imageDecided({ ...fields, durationMs: 1, memo });
    assert.deepEqual(quiet.lines, []);
  });

  it('bounds the strings of a memoised decision like any other', () => {
    const { logger, parsed } = collect();
    const image = `registry.test/${'a'.repeat(5000)}`;
    new DecisionLog(logger).imageDecided(decision({ image, durationMs: Number.NaN, memo: {} }));
    const [line] = parsed();
    assert.equal(line?.['image'], `${image.slice(0, 2048)}…(${image.length} chars)`);
    assert.equal(line?.['durationMs'], null);
  });

  it('logs failed notary fetches as warnings and successful ones at debug', () => {
    const { logger, parsed } = collect();
    const log = new DecisionLog(logger);
    log.notaryFetched({ server: 's', gun: 'g', ok: true, durationMs: 1 });
    log.notaryFetched({
      server: 's',
      gun: 'g',
      ok: false,
      errorCode: 'HTTP_STATUS',
      durationMs: 2,
    });
    assert.deepEqual(parsed(), [
      {
        time: NOW.toISOString(),
        level: 'warn',
        event: 'notary.fetch',
        server: 's',
        gun: 'g',
        ok: false,
        errorCode: 'HTTP_STATUS',
        durationMs: 2,
      },
    ]);
  });

  it('keeps feeding the other observers when one throws', () => {
    const seen: string[] = [];
    const broken: DecisionObserver = {
      imageDecided: () => {
        throw new Error('broken observer');
      },
      notaryFetched: () => undefined,
      cacheLookup: () => undefined,
    };
    const recording: DecisionObserver = {
      imageDecided: (event) => seen.push(event.image),
      notaryFetched: () => undefined,
      cacheLookup: (event) => seen.push(String(event.hit)),
    };
    const combined = combineObservers(broken, recording);
    combined.imageDecided(decision({ image: 'one' }));
    combined.cacheLookup({ hit: true });
    assert.deepEqual(seen, ['one', 'true']);
  });
});
