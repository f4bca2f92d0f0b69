import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { LabelledHistogram } from '../src/http/labelled-histogram.js';

const BUCKETS = [0.0002, 0.001, 0.01, 0.5, 30];

/** The same observations through prom-client's Histogram and ours, each in its own registry. */
function both(observations: readonly [string, number][]): { theirs: Registry; ours: Registry } {
  const theirs = new Registry();
  const ours = new Registry();
  const histogram = new Histogram({
    name: 'x_seconds',
    help: 'Time to do x.',
    labelNames: ['result'],
    buckets: BUCKETS,
    registers: [theirs],
  });
  const labelled = new LabelledHistogram({
    name: 'x_seconds',
    help: 'Time to do x.',
    label: 'result',
    buckets: BUCKETS,
    registry: ours,
  });
  for (const [result, seconds] of observations) {
    histogram.observe({ result }, seconds);
    labelled.observe(result, seconds);
  }
  return { theirs, ours };
}

describe('LabelledHistogram', () => {
  const observations: [string, number][] = [
    ['allowed', 0.0001],
    ['allowed', 0.0002], // on a bound: counted in it, as Prometheus's `le` says
    ['allowed', 0.0003],
    ['denied', 0.5],
    ['allowed', 31], // above every bound: only +Inf
    ['denied', 0],
    ['error', 0.02],
  ];

  it('writes the exposition prom-client writes for the same observations, byte for byte', async () => {
    const { theirs, ours } = both(observations);
    const text = await ours.metrics();
    assert.equal(text, await theirs.metrics());
    assert.match(text, /^x_seconds_bucket\{le="0.0002",result="allowed"\} 2$/m);
    assert.match(text, /^x_seconds_bucket\{le="\+Inf",result="allowed"\} 4$/m);
    assert.match(text, /^x_seconds_count\{result="denied"\} 2$/m);
  });

  it('answers getMetricsAsJSON as prom-client does', async () => {
    const { theirs, ours } = both(observations);
    assert.deepEqual(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON());
  });

  it('with nothing observed, writes only HELP and TYPE, as prom-client does', async () => {
    const { theirs, ours } = both([]);
    assert.equal(await ours.metrics(), await theirs.metrics());
  });

  it('resetMetrics forgets the observations', async () => {
    const { theirs, ours } = both(observations);
    ours.resetMetrics();
    theirs.resetMetrics();
    assert.equal(await ours.metrics(), await theirs.metrics());
    assert.doesNotMatch(await ours.metrics(), /x_seconds_count/);
  });

  it('keeps at most 64 label values and ignores a value that is not a number', async () => {
    const registry = new Registry();
    const labelled = new LabelledHistogram({
      name: 'y_seconds',
      help: 'y.',
      label: 'result',
      buckets: BUCKETS,
      registry,
    });
    for (let i = 0; i < 100; i++) labelled.observe(`v${i}`, 0.001);
    labelled.observe('v0', Number.NaN);
    const text = await registry.metrics();
    assert.equal(text.match(/^y_seconds_count/gm)?.length, 64);
    assert.match(text, /^y_seconds_count\{result="v0"\} 1$/m);
  });
});
