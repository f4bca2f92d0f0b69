/**
 * Leader election on a `coordination.k8s.io/v1` Lease, following client-go's leaderelection
 * package: a candidate takes the Lease when it is absent, released (empty holder) or not renewed
 * for `leaseDurationSeconds` as *observed on our own clock* (client-go's rule: the renewTime written
 * by another machine is never compared with our clock, so skew cannot shorten a lease); every write
 * is an update carrying the resourceVersion read, so of two candidates racing only one wins (the
 * other gets 409 Conflict). A leader that cannot renew within `renewDeadlineMs` stops leading —
 * at the deadline, not when a slow call happens to return: each attempt gets a signal that aborts
 * it then (client-go renews under a context with the renew deadline), since a standby takes the
 * Lease `leaseDurationSeconds` after it last saw it change and two leaders would sign at once.
 *
 * The leader's work gets a signal that aborts when leadership ends or the process is told to stop;
 * the Lease keeps being renewed until that work has finished (SIGTERM finishes the Build in hand
 * while still holding the Lease), and is then released so a standby takes over at once.
 */
import { abortableSleep } from './informer.js';

/** The Lease fields election reads and writes. */
export interface LeaseRecord {
  readonly resourceVersion: string;
  readonly holderIdentity?: string;
  readonly leaseDurationSeconds?: number;
  readonly acquireTime?: string;
  readonly renewTime?: string;
  readonly leaseTransitions?: number;
}

/** What a write sends (resourceVersion of the record read, for optimistic concurrency). */
export interface LeaseWrite {
  readonly holderIdentity: string;
  readonly leaseDurationSeconds: number;
  readonly acquireTime: string;
  readonly renewTime: string;
  readonly leaseTransitions: number;
}

/** The Lease's storage: the controller implements it over the apiserver. `signal` aborts a call. */
export interface LeaseClient {
  /** The Lease, or undefined when it does not exist. */
  get(signal?: AbortSignal): Promise<LeaseRecord | undefined>;
  /** Creates it; throws {@link LeaseConflictError} when someone else created it first. */
  create(write: LeaseWrite, signal?: AbortSignal): Promise<LeaseRecord>;
  /** Replaces it at `resourceVersion`; throws {@link LeaseConflictError} on 409. */
  update(resourceVersion: string, write: LeaseWrite, signal?: AbortSignal): Promise<LeaseRecord>;
}

/** Another writer changed the Lease first (HTTP 409). */
export class LeaseConflictError extends Error {
  override readonly name = 'LeaseConflictError';
}

/** A Lease call was still unanswered at the renew deadline; it was aborted. */
export class RenewDeadlineError extends Error {
  override readonly name = 'RenewDeadlineError';
  constructor(readonly renewDeadlineMs: number) {
    super(`no answer from the Lease within the renew deadline (${renewDeadlineMs / 1000} s)`);
  }
}

/** Settings of an election. */
export interface LeaderElectionOptions {
  readonly client: LeaseClient;
  readonly identity: string;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
  /** Monotonic milliseconds, for judging expiry by our own observation. */
  readonly monotonic?: () => number;
  /** Wall-clock time, for the MicroTime fields written. */
  readonly now?: () => Date;
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly random?: () => number;
  /**
   * `leading` once acquired; `renew-failed` for a renewal attempt that failed while there is still
   * time (still leading); `lost` when leadership ends unreleased; `stopped` otherwise.
   */
  readonly onTransition?: (
    event: 'leading' | 'stopped' | 'lost' | 'renew-failed',
    detail: string,
  ) => void;
}

/** Tries to acquire or renew once; true while we hold the Lease. Exported for tests. */
export class LeaseCandidate {
  readonly #options: LeaderElectionOptions;
  #observed: { key: string; at: number } | undefined;
  #record: LeaseRecord | undefined;

  constructor(options: LeaderElectionOptions) {
    this.#options = options;
  }

  /** One round of client-go's tryAcquireOrRenew; `signal` aborts its calls. */
  async tryAcquireOrRenew(signal?: AbortSignal): Promise<boolean> {
    const { client, identity } = this.#options;
    const monotonic = this.#options.monotonic ?? ((): number => performance.now());
    const stamp = microTime((this.#options.now ?? ((): Date => new Date()))());
    const duration = Math.ceil(this.#options.leaseDurationMs / 1000);
    const current = await client.get(signal);
    try {
      if (current === undefined) {
        this.#record = await client.create(
          {
            holderIdentity: identity,
            leaseDurationSeconds: duration,
            acquireTime: stamp,
            renewTime: stamp,
            leaseTransitions: 0,
          },
          signal,
        );
        this.#observe(this.#record, monotonic());
        return true;
      }
      this.#observe(current, monotonic());
      const holder = current.holderIdentity ?? '';
      const theirs = holder !== '' && holder !== identity;
      if (theirs && this.#observed !== undefined) {
        const heldFor = (current.leaseDurationSeconds ?? duration) * 1000;
        if (monotonic() - this.#observed.at < heldFor) return false;
      }
      const mine = holder === identity;
      this.#record = await client.update(
        current.resourceVersion,
        {
          holderIdentity: identity,
          leaseDurationSeconds: duration,
          acquireTime: mine && current.acquireTime !== undefined ? current.acquireTime : stamp,
          renewTime: stamp,
          leaseTransitions: (current.leaseTransitions ?? 0) + (mine ? 0 : 1),
        },
        signal,
      );
      this.#observe(this.#record, monotonic());
      return true;
    } catch (err) {
      if (err instanceof LeaseConflictError) return false;
      throw err;
    }
  }

  /** Gives the Lease up (empty holder, 1 s duration) so a standby need not wait out the lease. */
  async release(signal?: AbortSignal): Promise<void> {
    const record = this.#record;
    if (record === undefined) return;
    const stamp = microTime((this.#options.now ?? ((): Date => new Date()))());
    try {
      await this.#options.client.update(
        record.resourceVersion,
        {
          holderIdentity: '',
          leaseDurationSeconds: 1,
          acquireTime: stamp,
          renewTime: stamp,
          leaseTransitions: record.leaseTransitions ?? 0,
        },
        signal,
      );
    } catch (err) {
      // Someone took it already: nothing of ours to release.
      if (!(err instanceof LeaseConflictError)) throw err;
    }
    this.#record = undefined;
  }

  #observe(record: LeaseRecord, at: number): void {
    // A changed record (holder, renewal or version) restarts the expiry clock.
    const key = `${record.holderIdentity ?? ''}|${record.renewTime ?? ''}|${record.resourceVersion}`;
    if (this.#observed?.key !== key) this.#observed = { key, at };
  }
}

/**
 * Campaigns until `signal` aborts; while leading runs `lead(leadingSignal)`. Returns after the
 * lead work has finished and the Lease has been released.
 */
export async function runLeaderElection(
  options: LeaderElectionOptions,
  lead: (signal: AbortSignal) => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  const candidate = new LeaseCandidate(options);
  const sleep = options.sleep ?? abortableSleep;
  const monotonic = options.monotonic ?? ((): number => performance.now());
  const random = options.random ?? Math.random;
  const say = options.onTransition ?? ((): void => undefined);
  const jittered = (): number => Math.round(options.retryPeriodMs * (1 + 0.2 * random()));

  while (!signal.aborted) {
    let acquired = false;
    // The Lease we write is stamped before the call, and others time it from when they see it:
    // counting our deadline from the attempt's start keeps us inside what they grant.
    let lastRenewed = monotonic();
    try {
      acquired = await withinDeadline(
        (bounded) => candidate.tryAcquireOrRenew(bounded),
        options.renewDeadlineMs,
        options.renewDeadlineMs,
      );
    } catch (err) {
      say('stopped', `cannot reach the Lease: ${messageOf(err)}`);
    }
    if (!acquired) {
      await sleep(jittered(), signal);
      continue;
    }
    say('leading', options.identity);
    const leading = new AbortController();
    const stopLeading = (): void => {
      leading.abort();
    };
    signal.addEventListener('abort', stopLeading, { once: true });
    let finished = false;
    const work = lead(leading.signal).finally(() => {
      finished = true;
    });
    // A renewal-only signal: wakes the renew loop when the work finishes.
    const wake = new AbortController();
    void work.then(
      () => {
        wake.abort();
      },
      () => {
        wake.abort();
      },
    );
    let lost: string | undefined;
    while (!finished) {
      await sleep(options.retryPeriodMs, wake.signal);
      if (finished) break;
      const started = monotonic();
      const left = (): number => lastRenewed + options.renewDeadlineMs - monotonic();
      let renewed = false;
      let failure = '';
      try {
        renewed = await withinDeadline(
          (bounded) => candidate.tryAcquireOrRenew(bounded),
          left(),
          options.renewDeadlineMs,
        );
      } catch (err) {
        failure = messageOf(err);
        if (!(err instanceof RenewDeadlineError)) say('renew-failed', `renewal failed: ${failure}`);
      }
      if (renewed) {
        lastRenewed = started;
        continue;
      }
      if (left() <= 0) {
        lost = `the Lease was not renewed within the renew deadline (${options.renewDeadlineMs / 1000} s)${failure === '' ? '' : `: ${failure}`}`;
      } else {
        const holder = await withinDeadline(
          (bounded) => holderOtherThanUs(options, bounded),
          left(),
          options.renewDeadlineMs,
        ).catch(() => undefined);
        if (holder !== undefined) lost = `another replica holds the Lease: ${holder}`;
        else if (left() <= 0) {
          lost = `the Lease was not renewed within the renew deadline (${options.renewDeadlineMs / 1000} s)`;
        }
      }
      if (lost !== undefined) {
        // Stop leading now; the work's signal tells it to hand back what it holds.
        leading.abort();
        break;
      }
    }
    signal.removeEventListener('abort', stopLeading);
    if (lost !== undefined) say('lost', lost);
    try {
      await work;
    } catch (err) {
      say('stopped', `leader work failed: ${messageOf(err)}`);
    }
    if (lost !== undefined) continue;
    try {
      // Bounded like a renewal: a hung release must not keep the process from exiting; the
      // Lease then simply expires.
      await withinDeadline(
        (bounded) => candidate.release(bounded),
        options.renewDeadlineMs,
        options.renewDeadlineMs,
      );
    } catch (err) {
      say('stopped', `releasing the Lease failed: ${messageOf(err)}`);
    }
    say('stopped', 'released the Lease');
    if (!signal.aborted) await sleep(jittered(), signal);
  }
}

/**
 * Runs `attempt` with a signal that aborts after `ms` (at once when `ms` <= 0), rejecting then with
 * a {@link RenewDeadlineError} whether or not the attempt heeds its signal: the caller stops
 * waiting at the deadline even for a client that cannot be aborted.
 */
function withinDeadline<T>(
  attempt: (signal: AbortSignal) => Promise<T>,
  ms: number,
  renewDeadlineMs: number,
): Promise<T> {
  const controller = new AbortController();
  return new Promise<T>((resolve, reject) => {
    const expire = (): void => {
      const err = new RenewDeadlineError(renewDeadlineMs);
      controller.abort(err);
      reject(err);
    };
    if (ms <= 0) {
      expire();
      return;
    }
    const timer = setTimeout(expire, ms);
    attempt(controller.signal).then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** The Lease's holder when it is another replica, else undefined. */
async function holderOtherThanUs(
  options: LeaderElectionOptions,
  signal: AbortSignal,
): Promise<string | undefined> {
  const record = await options.client.get(signal);
  const holder = record?.holderIdentity ?? '';
  return holder !== '' && holder !== options.identity ? holder : undefined;
}

/** metav1.MicroTime: RFC 3339 with exactly six fractional digits, as the apiserver parses it. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
