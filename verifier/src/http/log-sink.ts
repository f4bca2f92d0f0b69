/**
 * Where log lines go in production: pino's asynchronous destination (sonic-boom) on a file
 * descriptor. A synchronous write per decision put a `write(2)` on every review's path (with
 * stdout redirected to a file, wrk measured the verifier at 0.44–0.48 of a bare server); sonic-boom
 * queues lines and writes them in batches of at least `batchBytes`, or every `flushIntervalMs`
 * (each asynchronous write costs the event loop a dispatch and a completion: with a write per line,
 * that dispatch was the largest item of the verifier's profile beyond a bare server's). The
 * queue is flushed on a graceful shutdown (flush) and, synchronously, when the process crashes
 * (flushSync), so the lines that explain a stop are not lost; pino also flushes it on the process's
 * 'exit' event. A SIGKILL (OOM) loses what is queued, at most what arrived during one write.
 */
import { writeSync } from 'node:fs';
import { pino } from 'pino';

/** A destination for finished log lines (without their newline). */
export interface LogSink {
  write(line: string): void;
  /**
   * Writes out everything queued and ends the stream; later lines are written synchronously
   * (a descriptor other than stdout and stderr is closed, and later lines to it are dropped).
   */
  flush(): Promise<void>;
  /** Writes out everything queued before the process dies; never throws. */
  flushSync(): void;
}

/** How the sink buffers. */
export interface LogSinkOptions {
  /** Queued bytes beyond which new lines are dropped (a stalled log reader must not grow the heap); default 16 MiB. */
  readonly maxQueueBytes?: number;
  /** How long flush() waits for the queue to drain; default 5 s. */
  readonly flushTimeoutMs?: number;
  /** Queued bytes that start a write; default 8 KiB (below sonic-boom's 16 KiB write size). */
  readonly batchBytes?: number;
  /** A smaller queue is written after at most this long; default 500 ms. */
  readonly flushIntervalMs?: number;
}

/** The asynchronous sink on `fd` (1, stdout, by default). */
export function createLogSink(fd = 1, options: LogSinkOptions = {}): LogSink {
  const stream = pino.destination({
    dest: fd,
    sync: false,
    maxLength: options.maxQueueBytes ?? 16 * 2 ** 20,
    minLength: options.batchBytes ?? 8192,
    periodicFlush: options.flushIntervalMs ?? 500,
  });
  // A closed stdout (EPIPE) or a full disk loses log lines, never a decision: without a listener
  // the stream's 'error' would be an uncaught exception.
  stream.on('error', () => undefined);
  let ended = false;
  const write = (line: string): void => {
    if (!ended) {
      stream.write(`${line}\n`);
      return;
    }
    try {
      writeSync(fd, `${line}\n`);
    } catch {
      // As above.
    }
  };
  const flush = (): Promise<void> => {
    if (ended) return Promise.resolve();
    ended = true;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, options.flushTimeoutMs ?? 5000);
      timer.unref();
      // end() writes the queue out and emits 'close' (fd 1 and 2 stay open); 'error' ends it too.
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      stream.once('close', done);
      stream.once('error', done);
      stream.end();
    });
  };
  const flushSync = (): void => {
    if (ended) return;
    try {
      stream.flushSync();
    } catch {
      // Not ready yet or destroyed: nothing more can be saved.
    }
  };
  return { write, flush, flushSync };
}
