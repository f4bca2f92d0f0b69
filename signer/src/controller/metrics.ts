/**
 * The controller's Prometheus metrics in the text exposition format (0.0.4). Hand-written rather
 * than prom-client: five series with fixed, bounded label sets (failure reasons are a closed union),
 * so the signer image carries no metrics library.
 */
import type { FailureReason } from './reconcile.js';

const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Counters, gauges and the latency histogram the controller exports. */
export class ControllerMetrics {
  buildsSigned = 0;
  readonly failures = new Map<FailureReason, number>();
  retries = 0;
  relists = 0;
  isLeader = false;
  readonly #buckets = LATENCY_BUCKETS.map(() => 0);
  #latencyCount = 0;
  #latencySum = 0;

  /** Records one signing's latency. */
  observeLatency(seconds: number): void {
    this.#latencyCount++;
    this.#latencySum += seconds;
    LATENCY_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) this.#buckets[i] = (this.#buckets[i] ?? 0) + 1;
    });
  }

  /** Counts a final failure by reason. */
  fail(reason: FailureReason): void {
    this.failures.set(reason, (this.failures.get(reason) ?? 0) + 1);
  }

  /** The exposition text; `queue` supplies the live queue figures. */
  render(queue: { depth: number; inFlight: number; dropped: number }): string {
    const lines: string[] = [];
    const series = (name: string, type: string, help: string, values: [string, number][]): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of values) lines.push(`${name}${labels} ${value}`);
    };
    series(
      'kpack_trust_controller_builds_signed_total',
      'counter',
      'Builds signed (or found signed) and recorded.',
      [['', this.buildsSigned]],
    );
    series(
      'kpack_trust_controller_signing_failures_total',
      'counter',
      'Builds recorded as not signed, by reason.',
      [...this.failures.entries()].sort().map(([reason, n]) => [`{reason="${reason}"}`, n]),
    );
    series(
      'kpack_trust_controller_retries_total',
      'counter',
      'Signing attempts retried after a transient failure.',
      [['', this.retries]],
    );
    series(
      'kpack_trust_controller_relists_total',
      'counter',
      'Full lists of Builds (start, 410 Gone, resync).',
      [['', this.relists]],
    );
    series('kpack_trust_controller_queue_depth', 'gauge', 'Builds waiting in the work queue.', [
      ['', queue.depth],
    ]);
    series('kpack_trust_controller_queue_in_flight', 'gauge', 'Builds being signed now.', [
      ['', queue.inFlight],
    ]);
    series(
      'kpack_trust_controller_queue_dropped_total',
      'counter',
      'Builds dropped because the queue was full (re-listed later).',
      [['', queue.dropped]],
    );
    series('kpack_trust_controller_leader', 'gauge', '1 while this replica holds the Lease.', [
      ['', this.isLeader ? 1 : 0],
    ]);
    lines.push(
      '# HELP kpack_trust_controller_signing_latency_seconds Time from picking a finished Build to its publish.',
      '# TYPE kpack_trust_controller_signing_latency_seconds histogram',
    );
    LATENCY_BUCKETS.forEach((bound, i) => {
      lines.push(
        `kpack_trust_controller_signing_latency_seconds_bucket{le="${bound}"} ${this.#buckets[i] ?? 0}`,
      );
    });
    lines.push(
      `kpack_trust_controller_signing_latency_seconds_bucket{le="+Inf"} ${this.#latencyCount}`,
      `kpack_trust_controller_signing_latency_seconds_sum ${this.#latencySum}`,
      `kpack_trust_controller_signing_latency_seconds_count ${this.#latencyCount}`,
    );
    return `${lines.join('\n')}\n`;
  }
}
