/**
 * The controller's work queue, with client-go's workqueue semantics where they matter: a key is
 * queued at most once; a key added while it is being processed is processed again afterwards
 * (never twice at once); failures come back after exponential backoff with jitter, a bounded
 * number of times. Bounded: beyond `maxSize` distinct keys new ones are dropped and counted — the
 * periodic re-list brings them back — so a flood of Builds cannot grow memory without limit.
 */

/** Settings of the queue. */
export interface WorkQueueOptions {
  readonly maxSize: number;
  /** Attempts per key before the last one is flagged (see {@link WorkItem.last}). */
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** Timers, injectable for tests. */
  readonly setTimer?: (fn: () => void, ms: number) => { cancel(): void };
  readonly random?: () => number;
}

/** A key handed to a worker, with its attempt number. */
export interface WorkItem {
  readonly key: string;
  readonly attempt: number;
  /** True on the final attempt. */
  readonly last: boolean;
}

/** A deduplicating, bounded work queue with retry backoff. */
export class WorkQueue {
  readonly #options: WorkQueueOptions;
  readonly #queue: string[] = [];
  readonly #queued = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #dirty = new Set<string>();
  readonly #attempts = new Map<string, number>();
  readonly #timers = new Map<string, { cancel(): void }>();
  readonly #waiters: ((item: WorkItem | undefined) => void)[] = [];
  #shutDown = false;
  /** Keys refused because the queue was full. */
  dropped = 0;

  constructor(options: WorkQueueOptions) {
    this.#options = options;
  }

  /** Keys waiting (not counting those in hand or waiting out a backoff). */
  get depth(): number {
    return this.#queue.length;
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
    if (this.#queued.size + this.#timers.size >= this.#options.maxSize && !this.#timers.has(key)) {
      this.dropped++;
      return false;
    }
    this.#timers.get(key)?.cancel();
    this.#timers.delete(key);
    this.#push(key);
    return true;
  }

  /** The next key, waiting for one; undefined once shut down and drained of waiters. */
  next(): Promise<WorkItem | undefined> {
    const key = this.#queue.shift();
    if (key !== undefined) return Promise.resolve(this.#take(key));
    if (this.#shutDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** The worker finished `key`: success (`forget`) or a retry after backoff. */
  done(key: string, result: 'forget' | 'retry'): void {
    this.#processing.delete(key);
    if (result === 'forget') this.#attempts.delete(key);
    const again = this.#dirty.delete(key);
    if (this.#shutDown) return;
    if (result === 'retry') {
      const attempts = this.#attempts.get(key) ?? 1;
      const base = Math.min(
        this.#options.maxDelayMs,
        this.#options.baseDelayMs * 2 ** (attempts - 1),
      );
      const delay = Math.round(base * (0.5 + (this.#options.random ?? Math.random)()));
      const timer = (this.#options.setTimer ?? defaultTimer)(() => {
        this.#timers.delete(key);
        if (!this.#processing.has(key) && !this.#queued.has(key)) this.#push(key);
      }, delay);
      this.#timers.set(key, timer);
      return;
    }
    if (again) this.#push(key);
  }

  /** Stops handing out work; pending `next()` calls resolve undefined, retries are cancelled. */
  shutDown(): void {
    this.#shutDown = true;
    for (const timer of this.#timers.values()) timer.cancel();
    this.#timers.clear();
    for (const waiter of this.#waiters.splice(0)) waiter(undefined);
  }

  #push(key: string): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter(this.#take(key));
      return;
    }
    this.#queued.add(key);
    this.#queue.push(key);
  }

  #take(key: string): WorkItem {
    this.#queued.delete(key);
    this.#processing.add(key);
    const attempt = (this.#attempts.get(key) ?? 0) + 1;
    this.#attempts.set(key, attempt);
    return { key, attempt, last: attempt >= this.#options.maxAttempts };
  }
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
