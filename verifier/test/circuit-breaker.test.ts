/**
 * The per-server circuit breaker on a fake clock: opens after consecutive unavailability failures
 * only, fails fast while open, lets exactly one probe through after the cool-down, and keeps a
 * bounded map.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TrustError, isTrustError } from '@kpack-trust/common';
import { CircuitBreakers, isUnavailable, type BreakerEvent } from '../src/trust/circuit-breaker.js';

const SERVER = 'https://notary.example:4443';

function refused(): TrustError {
  return new TrustError(
    'HTTP_UNREACHABLE',
    { url: `${SERVER}/v2/x/_trust/tuf/root.json`, problem: 'ECONNREFUSED' },
    'refused',
  );
}

function status(code: number): TrustError {
  return new TrustError(
    'HTTP_STATUS',
    { url: SERVER, status: code, serverCode: '' },
    `HTTP ${code}`,
  );
}

function setup(options: { threshold?: number; maxServers?: number } = {}): {
  breakers: CircuitBreakers;
  clock: { ms: number };
  events: BreakerEvent[];
  calls: { count: number };
  fail: (server?: string, error?: TrustError) => Promise<unknown>;
  succeed: (server?: string) => Promise<unknown>;
} {
  const clock = { ms: 0 };
  const events: BreakerEvent[] = [];
  const calls = { count: 0 };
  const breakers = new CircuitBreakers({
    failureThreshold: options.threshold ?? 3,
    cooldownMs: 10_000,
    maxServers: options.maxServers ?? 100,
    now: () => clock.ms,
    onStateChange: (e) => events.push(e),
  });
  const fail = (server = SERVER, error = refused()): Promise<unknown> =>
    breakers
      .call(server, () => {
        calls.count++;
        return Promise.reject(error);
      })
      .catch((e: unknown) => e);
  const succeed = (server = SERVER): Promise<unknown> =>
    breakers.call(server, () => {
      calls.count++;
      return Promise.resolve('ok');
    });
  return { breakers, clock, events, calls, fail, succeed };
}

describe('circuit breaker', () => {
  it('classifies transport errors, timeouts and 5xx as unavailable, answers as not', () => {
    assert.equal(isUnavailable(refused()), true);
    assert.equal(isUnavailable(status(503)), true);
    assert.equal(isUnavailable(status(404)), false);
    assert.equal(isUnavailable(status(401)), false);
    assert.equal(
      isUnavailable(new TrustError('VERSION_ROLLBACK', { role: 't', actual: 1, floor: 2 }, 'x')),
      false,
    );
    assert.equal(isUnavailable(new Error('bug')), false);
  });

  it('opens after the threshold of consecutive failures and then fails without a request', async () => {
    const { breakers, events, calls, fail } = setup();
    await fail();
    await fail();
    assert.equal(breakers.state(SERVER), 'closed');
    await fail();
    assert.equal(breakers.state(SERVER), 'open');
    assert.deepEqual(events, [{ server: SERVER, state: 'open', failures: 3 }]);
    const error = await fail();
    assert.equal(calls.count, 3, 'the open circuit made no request');
    assert.ok(isTrustError(error, 'HTTP_UNREACHABLE'));
    assert.match(error.facts.problem, /^circuit open after 3 consecutive failures/);
  });

  it('an answer from the server (404, success) resets the count', async () => {
    const { breakers, fail, succeed } = setup();
    await fail();
    await fail();
    await fail(SERVER, status(404));
    await fail();
    await fail();
    assert.equal(breakers.state(SERVER), 'closed');
    await succeed();
    await fail();
    await fail();
    assert.equal(breakers.state(SERVER), 'closed');
  });

  it('lets exactly one probe through after the cool-down; its success closes the circuit', async () => {
    const { breakers, clock, events, calls, fail } = setup();
    for (let i = 0; i < 3; i++) await fail();
    clock.ms += 9_999;
    await fail();
    assert.equal(calls.count, 3, 'still cooling down');
    clock.ms += 1;
    let release: (value: string) => void = () => undefined;
    const probe = breakers.call(SERVER, () => {
      calls.count++;
      return new Promise<string>((r) => (release = r));
    });
    assert.equal(breakers.state(SERVER), 'half-open');
    const second = await fail();
    assert.ok(isTrustError(second, 'HTTP_UNREACHABLE'), 'a second request waits for the probe');
    assert.equal(calls.count, 4);
    release('ok');
    assert.equal(await probe, 'ok');
    assert.equal(breakers.state(SERVER), 'closed');
    assert.deepEqual(
      events.map((e) => e.state),
      ['open', 'half-open', 'closed'],
    );
  });

  it('a failed probe opens the circuit for another cool-down', async () => {
    const { breakers, clock, calls, fail } = setup();
    for (let i = 0; i < 3; i++) await fail();
    clock.ms += 10_000;
    await fail(SERVER, status(502));
    assert.equal(calls.count, 4);
    assert.equal(breakers.state(SERVER), 'open');
    clock.ms += 5_000;
    await fail();
    assert.equal(calls.count, 4, 'the cool-down restarted at the failed probe');
  });

  it('keeps servers apart, and a bounded number of them', async () => {
    const { breakers, fail } = setup({ threshold: 1, maxServers: 2 });
    await fail('https://a');
    await fail('https://b');
    assert.equal(breakers.state('https://a'), 'open');
    assert.equal(breakers.state('https://b'), 'open');
    await fail('https://c');
    assert.equal(breakers.state('https://a'), 'closed', 'evicted, least recently used');
    assert.equal(breakers.state('https://c'), 'open');
  });

  it('a request our own deadline cut short counts neither way; one that waited half of it counts', async () => {
    const { breakers, clock, events } = setup({ threshold: 1 });
    const deadline = new AbortController();
    const expired = new TrustError('HTTP_UNREACHABLE', { url: SERVER, problem: 'deadline' }, 'x');
    deadline.abort(expired);
    const cutOff = { signal: deadline.signal, afterMs: 500 };
    const aborted = (waitMs: number): Promise<unknown> =>
      breakers
        .call(
          SERVER,
          () => {
            clock.ms += waitMs;
            return Promise.reject(expired);
          },
          cutOff,
        )
        .catch((e: unknown) => e);

    // The tail of a long chain of quick answers: the server did nothing wrong.
    assert.ok(isTrustError(await aborted(100), 'HTTP_UNREACHABLE'));
    assert.equal(breakers.state(SERVER), 'closed');
    assert.deepEqual(events, []);
    // A request that hung for half the deadline by itself: the server is slow.
    await aborted(500);
    assert.equal(breakers.state(SERVER), 'open');
  });

  it('a threshold of 0 turns breaking off', async () => {
    const { breakers, calls, fail } = setup({ threshold: 0 });
    for (let i = 0; i < 10; i++) await fail();
    assert.equal(calls.count, 10);
    assert.equal(breakers.state(SERVER), 'closed');
  });
});
