/**
 * A manual clock for the controller's injected `setTimer`: timers run only when a test fires them,
 * and every delay asked for is recorded, so backoff is asserted by value rather than by waiting.
 */

/** The `setTimer` to inject, and the test's handles on what it was asked for. */
export interface ManualTimers {
  setTimer: (fn: () => void, ms: number) => { cancel(): void };
  /** Fires every timer pending now (not those they set). */
  fire: () => void;
  /** Every delay asked for, in order (cancelled ones too). */
  readonly delays: number[];
  /** Timers set and neither fired nor cancelled. */
  readonly pending: number;
}

/** A fresh manual clock with nothing pending. */
export function manualTimers(): ManualTimers {
  const pending: (() => void)[] = [];
  const delays: number[] = [];
  return {
    delays,
    get pending() {
      return pending.length;
    },
    setTimer: (fn, ms) => {
      delays.push(ms);
      pending.push(fn);
      return {
        cancel: () => {
          const i = pending.indexOf(fn);
          if (i !== -1) pending.splice(i, 1);
        },
      };
    },
    fire: () => {
      for (const fn of pending.splice(0)) fn();
    },
  };
}
