/**
 * The controller's work queue, with client-go's workqueue semantics where they matter: a key is
 * queued at most once; a key added while it is being processed is processed again afterwards
 * (never twice at once); failures come back after exponential backoff with jitter, a bounded
 * number of times. Bounded: beyond `maxSize` distinct keys new ones are dropped and counted — the
 * periodic re-list brings them back — so a flood of Builds cannot grow memory without limit.
 *
 * Fair between tenants, which client-go's queue is not: keys are grouped by namespace, at most
 * `maxInFlightPerGroup` keys of one group are in hand at once, and workers take the groups in
 * turn (round-robin), so a namespace whose Builds stall (a registry it controls that never
 * answers) holds at most that many workers while every other namespace's Builds go on.
 *
 * A backoff belongs to the key, not to the event that queued it: an add during a backoff waits for
 * it to end (client-go's Add would skip it), and a key that gave up keeps its attempt count and
 * backs off again before the next attempt, so touching a Build (removing `signing-failed-digest`)
 * buys no more attempts per unit time than the backoff allows. The count is forgotten on success,
 * or `failureMemoryMs` after the last backoff ended with no new add.
 */

/** Settings of the queue. */
export interface WorkQueueOptions {
  readonly maxSize: number;
  /** Attempts per key before the last one is flagged (see {@link WorkItem.last}). */
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** Keys of one group in hand at once (default 1). */
  readonly maxInFlightPerGroup?: number;
  /** The group of a key (default: the text before the first `/`, the namespace of `buildKey`). */
  readonly groupOf?: (key: string) => string;
  /** How long a key that gave up keeps its attempt count once its backoff ended (default 10 × maxDelayMs). */
  readonly failureMemoryMs?: number;
  /** Timers, injectable for tests. */
  readonly setTimer?: (fn: () => void, ms: number) => { cancel(): void };
  readonly random?: () => number;
}

/** A key handed to a worker, with its attempt number. */
export interface WorkItem {
  readonly key: string;
  readonly attempt: number;
  /** True on the final attempt (and on every attempt after it, until the key succeeds). */
  readonly last: boolean;
}

/**
 * How a worker finished a key: `forget` (done; the attempt count is cleared), `retry` (a transient
 * failure: back again after the backoff) or `give-up` (a failure recorded as final: not queued
 * again by itself, and an add waits out the backoff).
 */
export type WorkResult = 'forget' | 'retry' | 'give-up';

interface Backoff {
  readonly timer: { cancel(): void };
  /** Queue the key when the backoff ends: always after `retry`, after `give-up` only if added meanwhile. */
  requeue: boolean;
}

/** A deduplicating, bounded, per-namespace fair work queue with retry backoff. */
export class WorkQueue {
  readonly #options: WorkQueueOptions;
  readonly #perGroup: number;
  readonly #groupOf: (key: string) => string;
  /** Waiting keys per group, FIFO; the map's order is the round-robin order of the groups. */
  readonly #waiting = new Map<string, string[]>();
  readonly #queued = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #inFlight = new Map<string, number>();
  readonly #dirty = new Set<string>();
  readonly #attempts = new Map<string, number>();
  readonly #backoffs = new Map<string, Backoff>();
  /** Keys that gave up and whose backoff ended: their attempt counts, until forgotten. */
  readonly #memory = new Map<string, { cancel(): void }>();
  readonly #waiters: ((item: WorkItem | undefined) => void)[] = [];
  #shutDown = false;
  /** Keys refused because the queue was full. */
  dropped = 0;

  constructor(options: WorkQueueOptions) {
    this.#options = options;
    this.#perGroup = Math.max(1, Math.floor(options.maxInFlightPerGroup ?? 1));
    this.#groupOf = options.groupOf ?? namespaceOf;
  }

  /** Keys waiting (not counting those in hand or waiting out a backoff). */
  get depth(): number {
    return this.#queued.size;
  }

  /** Keys being worked on now. */
  get inFlight(): number {
    return this.#processing.size;
  }

  /** Queues `key`; false when it was dropped because the queue is full. */
  add(key: string): boolean {
    if (this.#shutDown) return false;
    if (this.#processing.has(key)) {
      this.#dirty.add(key);
      return true;
    }
    if (this.#queued.has(key)) return true;
    const backoff = this.#backoffs.get(key);
    if (backoff !== undefined) {
      // Never cancels the backoff: the key is queued when it ends, and the Build is read afresh then.
      backoff.requeue = true;
      return true;
    }
    if (this.#queued.size + this.#backoffs.size >= this.#options.maxSize) {
      this.dropped++;
      return false;
    }
    this.#memory.get(key)?.cancel();
    this.#memory.delete(key);
    this.#push(key);
    return true;
  }

  /** The next key, waiting for one; undefined once shut down. */
  next(): Promise<WorkItem | undefined> {
    if (this.#shutDown) return Promise.resolve(undefined);
    const key = this.#pick();
    if (key !== undefined) return Promise.resolve(this.#take(key));
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** The worker finished `key` (see {@link WorkResult}). */
  done(key: string, result: WorkResult): void {
    if (!this.#processing.delete(key)) return;
    const group = this.#groupOf(key);
    const held = (this.#inFlight.get(group) ?? 1) - 1;
    if (held > 0) this.#inFlight.set(group, held);
    else this.#inFlight.delete(group);
    if (result === 'forget') this.#attempts.delete(key);
    const again = this.#dirty.delete(key);
    if (this.#shutDown) return;
    if (result === 'forget') {
      if (again) this.#push(key);
      else this.#dispatch();
      return;
    }
    const attempts = this.#attempts.get(key) ?? 1;
    const base = Math.min(
      this.#options.maxDelayMs,
      this.#options.baseDelayMs * 2 ** Math.min(attempts - 1, 52),
    );
    const delay = Math.round(base * (0.5 + (this.#options.random ?? Math.random)()));
    const backoff: Backoff = {
      requeue: result === 'retry' || again,
      timer: (this.#options.setTimer ?? defaultTimer)(() => {
        if (this.#backoffs.get(key) !== backoff) return;
        this.#backoffs.delete(key);
        if (backoff.requeue) this.#push(key);
        else this.#remember(key);
      }, delay),
    };
    this.#backoffs.set(key, backoff);
    // The group has a free slot now: a worker waiting on it may take its next key.
    this.#dispatch();
  }

  /** Stops handing out work; pending `next()` calls resolve undefined, backoffs are cancelled. */
  shutDown(): void {
    this.#shutDown = true;
    for (const backoff of this.#backoffs.values()) backoff.timer.cancel();
    this.#backoffs.clear();
    for (const timer of this.#memory.values()) timer.cancel();
    this.#memory.clear();
    for (const waiter of this.#waiters.splice(0)) waiter(undefined);
  }

  #push(key: string): void {
    this.#queued.add(key);
    const group = this.#groupOf(key);
    const keys = this.#waiting.get(group);
    if (keys === undefined) this.#waiting.set(group, [key]);
    else keys.push(key);
    this.#dispatch();
  }

  /** Hands waiting keys to waiting workers while a group under its cap has one. */
  #dispatch(): void {
    while (this.#waiters.length > 0) {
      const key = this.#pick();
      if (key === undefined) return;
      this.#waiters.shift()?.(this.#take(key));
    }
  }

  /**
   * The first key of the first group under its cap, that group then moved to the back. Bounded:
   * a group is skipped only while it holds `maxInFlightPerGroup` ≥ 1 keys in hand, so fewer groups
   * are skipped than keys are in hand (at most the workers).
   */
  #pick(): string | undefined {
    for (const [group, keys] of this.#waiting) {
      if ((this.#inFlight.get(group) ?? 0) >= this.#perGroup) continue;
      const key = keys.shift();
      this.#waiting.delete(group);
      if (keys.length > 0) this.#waiting.set(group, keys);
      if (key !== undefined) return key;
    }
    return undefined;
  }

  #take(key: string): WorkItem {
    this.#queued.delete(key);
    this.#processing.add(key);
    const group = this.#groupOf(key);
    this.#inFlight.set(group, (this.#inFlight.get(group) ?? 0) + 1);
    const attempt = (this.#attempts.get(key) ?? 0) + 1;
    this.#attempts.set(key, attempt);
    return { key, attempt, last: attempt >= this.#options.maxAttempts };
  }

  /** Keeps a given-up key's attempt count for a while; bounded like the queue, oldest first out. */
  #remember(key: string): void {
    if (this.#memory.size >= this.#options.maxSize) {
      const [oldest, timer] = this.#memory.entries().next().value ?? [];
      if (oldest !== undefined) {
        timer?.cancel();
        this.#memory.delete(oldest);
        this.#attempts.delete(oldest);
      }
    }
    const timer = (this.#options.setTimer ?? defaultTimer)(
      () => {
        if (this.#memory.get(key) !== timer) return;
        this.#memory.delete(key);
        this.#attempts.delete(key);
      },
      this.#options.failureMemoryMs ?? 10 * this.#options.maxDelayMs,
    );
    this.#memory.set(key, timer);
  }
}

/** The namespace of a `namespace/name` key. */
function namespaceOf(key: string): string {
  const slash = key.indexOf('/');
  return slash === -1 ? '' : key.slice(0, slash);
}

function defaultTimer(fn: () => void, ms: number): { cancel(): void } {
  const timer = setTimeout(fn, ms);
  timer.unref();
  return {
    cancel: () => {
      clearTimeout(timer);
    },
  };
}
