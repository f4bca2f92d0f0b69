/**
 * The leader's work: informers feed finished Builds' keys into the work queue; workers reconcile
 * them. When the signal aborts (leadership ends, or SIGTERM) the queue stops handing out keys, the
 * informers stop, and the call returns once every worker has finished the Build in its hands.
 */
import { runInformer, type ListWatchClient } from './informer.js';
import { ANNOTATIONS, buildKey, readBuild } from './kpack.js';
import type { ControllerMetrics } from './metrics.js';
import { reconcileBuild, type ReconcileDependencies } from './reconcile.js';
import { SucceededBuilds } from './succeeded-builds.js';
import { WorkQueue, type WorkQueueOptions, type WorkResult } from './work-queue.js';

/** One structured log line's fields (never secret material). */
export type LogFields = Readonly<Record<string, string | number | boolean | undefined>>;

/** Writes a JSON log line. */
export type Logger = (
  level: 'info' | 'warn' | 'error',
  message: string,
  fields?: LogFields,
) => void;

/** What the leader's work is built from. */
export interface ControllerOptions {
  /** One per watched scope (cluster-wide, or one per listed namespace). */
  readonly sources: readonly ListWatchClient[];
  /** The reconcile's edges; the index of succeeded Builds is the informers' own (runController makes it). */
  readonly reconcile: Omit<ReconcileDependencies, 'succeededBuilds'>;
  readonly metrics: ControllerMetrics;
  readonly log: Logger;
  readonly workers: number;
  readonly queue: WorkQueueOptions;
  readonly resyncMs?: number;
  /** Called with the queue once it exists (for /metrics), and with true once every source has listed. */
  readonly onQueue?: (queue: WorkQueue | undefined) => void;
  readonly onSynced?: (synced: boolean) => void;
}

/** Runs informers and workers until `signal` aborts, then drains the work in hand. */
export async function runController(
  options: ControllerOptions,
  signal: AbortSignal,
): Promise<void> {
  const { log, metrics } = options;
  const queue = new WorkQueue(options.queue);
  options.onQueue?.(queue);
  const listed = new Set<number>();
  // Fed by the same informers, so a Build can tell whether a newer Build of its Image succeeded.
  const succeeded = new SucceededBuilds();
  const reconcile: ReconcileDependencies = { ...options.reconcile, succeededBuilds: succeeded };
  const informers = options.sources.map((client, index) =>
    runInformer(
      {
        client,
        onObject: (object) => {
          const build = readBuild(object);
          if (build === undefined) return;
          succeeded.observe(build, index);
          if (!worthQueueing(build)) return;
          if (!queue.add(buildKey(build.namespace, build.name))) {
            log('warn', 'work queue full; the Build waits for the next re-list', {
              build: buildKey(build.namespace, build.name),
            });
          }
        },
        onSynced: () => {
          listed.add(index);
          succeeded.listed(index);
          if (listed.size === options.sources.length) {
            succeeded.synced();
            options.onSynced?.(true);
          }
        },
        onEvent: (what, detail) => {
          if (what === 'list') {
            metrics.relists++;
            log('info', 'listed Builds', { resourceVersion: detail });
          }
          if (what === 'gone') log('info', 'watch expired (410 Gone); listing again', { detail });
          if (what === 'watch-error') log('warn', 'watch failed; backing off', { detail });
          // One scope's Builds too large for a page: listing goes on in smaller pages, slower.
          if (what === 'page-shrunk') {
            log('warn', 'list page too large; asking for fewer', { detail });
          }
        },
        ...(options.resyncMs === undefined ? {} : { resyncMs: options.resyncMs }),
      },
      signal,
    ),
  );
  const stop = (): void => {
    queue.shutDown();
    succeeded.stop();
  };
  signal.addEventListener('abort', stop, { once: true });
  if (signal.aborted) stop();
  const workers = Array.from({ length: Math.max(1, options.workers) }, () =>
    work(queue, options, reconcile),
  );
  await Promise.all([...informers, ...workers]);
  signal.removeEventListener('abort', stop);
  options.onSynced?.(false);
  options.onQueue?.(undefined);
}

/** Only finished, successful, not yet recorded Builds are worth a queue slot. */
function worthQueueing(build: ReturnType<typeof readBuild> & object): boolean {
  if (build.succeeded !== 'True' || build.latestImage === undefined) return false;
  const digest = build.latestImage.slice(build.latestImage.lastIndexOf('@') + 1);
  return (
    build.annotations[ANNOTATIONS.signedDigest] !== digest &&
    build.annotations[ANNOTATIONS.failedDigest] !== digest &&
    build.annotations[ANNOTATIONS.supersededDigest] !== digest
  );
}

async function work(
  queue: WorkQueue,
  options: ControllerOptions,
  reconcile: ReconcileDependencies,
): Promise<void> {
  const { log, metrics } = options;
  for (;;) {
    const item = await queue.next();
    if (item === undefined) return;
    const [namespace = '', name = ''] = item.key.split('/');
    let result: WorkResult = 'forget';
    try {
      const outcome = await reconcileBuild(namespace, name, item, reconcile);
      switch (outcome.kind) {
        case 'signed':
          metrics.buildsSigned++;
          metrics.observeLatency(outcome.latencyMs / 1000);
          log('info', 'signed', {
            build: item.key,
            gun: outcome.summary.gun,
            digest: outcome.summary.digest,
            roles: outcome.summary.rolesPublished.join(','),
            rootKeyId: outcome.summary.rootKeyId,
            keysCreated: outcome.summary.keysCreated,
            latencyMs: outcome.latencyMs,
          });
          break;
        case 'failed':
          // Recorded as final, but a touch of the Build (its record removed) waits out a backoff
          // before the next attempt, so touching cannot buy attempts faster than retries get them.
          result = 'give-up';
          metrics.fail(outcome.reason);
          log('warn', 'not signed', {
            build: item.key,
            reason: outcome.reason,
            error: outcome.message,
          });
          break;
        case 'retry':
          metrics.retries++;
          result = 'retry';
          log('warn', 'signing failed; will retry', {
            build: item.key,
            reason: outcome.reason,
            attempt: item.attempt,
            error: outcome.message,
          });
          break;
        default:
          break;
      }
    } catch (err) {
      // The apiserver could not be read or written: the record is missing, so try again later.
      metrics.retries++;
      result = item.last ? 'give-up' : 'retry';
      log('error', 'reconcile failed', {
        build: item.key,
        attempt: item.attempt,
        error: err instanceof Error ? err.message : String(err),
      });
    }
    queue.done(item.key, result);
  }
}
