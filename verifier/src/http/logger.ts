/**
 * Structured logs: one JSON object per line on stdout, so a cluster's log pipeline can index every
 * field. The lines are formatted here (the decision line's fields are serialized once per memoised
 * decision, which a general-purpose logger cannot do) and written by pino's asynchronous
 * destination (log-sink.ts). Values are bounded in length because image strings come from pod
 * specs anyone with create-pod rights writes, and fields named like credentials are redacted.
 */
import type { DecisionObserver } from '../review.js';
import type { LogSink } from './log-sink.js';

/** Severity, in increasing order. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Extra fields of a log line; `time`, `level` and `event` are reserved. */
export type LogFields = Readonly<Record<string, unknown>>;

/** Writes structured events; `event` is a stable dotted name (`image.decision`, `server.listening`). */
export interface Logger {
  log(level: LogLevel, event: string, fields?: LogFields): void;
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  /**
   * Like log, with the fields given as JSON text (`"key":value,…` without braces, as fieldsJson
   * makes it), for hot paths that serialize their fields once and reuse the text.
   */
  logJson?(level: LogLevel, event: string, fieldsJson: string): void;
  /** Writes out queued lines (graceful shutdown); absent when lines are written as they come. */
  flush?(): Promise<void>;
  /** Writes out queued lines synchronously, before a crashing process exits. */
  flushSync?(): void;
}

/** Where lines go and which are kept. */
export interface JsonLoggerOptions {
  /** Receives each line without its newline; default: `sink`, else synchronous stdout writes. */
  readonly write?: (line: string) => void;
  /** The production destination: receives the lines (unless `write` is given) and flushes. */
  readonly sink?: LogSink;
  /** Lines below this level are dropped; default `info`. */
  readonly level?: LogLevel;
  readonly now?: () => Date;
}

const LEVELS: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40 };
const MAX_STRING = 2048;
// `__proto__` would set the record's prototype instead of a field.
const RESERVED = new Set(['time', 'level', 'event', '__proto__']);
// Field names whose values are replaced by "[redacted]": nothing logs a credential today, and a
// future field carrying one (a notary token, a key passphrase) must not reach the log pipeline.
const SECRET_FIELD = /passw|passphrase|secret|token|authorization|cookie|private.?key/i;

/** True when `value` names a level. */
export function isLogLevel(value: string): value is LogLevel {
  return Object.hasOwn(LEVELS, value);
}

function bounded(value: string): string {
  return value.length > MAX_STRING
    ? `${value.slice(0, MAX_STRING)}…(${value.length} chars)`
    : value;
}

/** Top-level field values made safe to encode: bounded strings, errors as plain objects. */
function encodable(value: unknown): unknown {
  if (typeof value === 'string') return bounded(value);
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return {
      name: value.name,
      message: bounded(value.message),
      ...(code !== undefined ? { code } : {}),
    };
  }
  return value;
}

/**
 * The fields of a log line as JSON text without the braces ("" when there are none): undefined
 * values and the reserved keys dropped, strings bounded, errors as plain objects. Throws on a
 * value JSON cannot encode (a cycle).
 */
export function fieldsJson(fields: LogFields): string {
  const record: Record<string, unknown> = {};
  for (const key of Object.keys(fields)) {
    const value = fields[key];
    if (value === undefined || RESERVED.has(key)) continue;
    record[key] = SECRET_FIELD.test(key) ? '[redacted]' : encodable(value);
  }
  // No replacer: it would run per value of every line, the dominant cost of logging.
  const json = JSON.stringify(record);
  return json.length === 2 ? '' : json.slice(1, -1);
}

/**
 * A gate that opens at most once per `intervalMs`: for a warning a flood would otherwise repeat
 * once per request (an overload, a scanner's failed handshakes). The first call opens it.
 */
export function onceEvery(intervalMs: number): () => boolean {
  let last = Number.NEGATIVE_INFINITY;
  return () => {
    const now = Date.now();
    if (now - last < intervalMs) return false;
    last = now;
    return true;
  };
}

/** Creates the JSON-lines logger. */
export function createJsonLogger(options: JsonLoggerOptions = {}): Logger {
  const sink = options.sink;
  const write =
    options.write ??
    (sink === undefined
      ? (line: string) => void process.stdout.write(`${line}\n`)
      : (line: string) => {
          sink.write(line);
        });
  const threshold = LEVELS[options.level ?? 'info'];
  const clock = options.now;
  // One ISO string per millisecond: many lines share it under load.
  let lastMs = Number.NaN;
  let lastTime = '';
  const time = (): string => {
    const date = clock === undefined ? undefined : clock();
    const ms = date === undefined ? Date.now() : date.getTime();
    if (ms !== lastMs) {
      lastMs = ms;
      lastTime = (date ?? new Date(ms)).toISOString();
    }
    return lastTime;
  };
  const logJson = (level: LogLevel, event: string, json: string): void => {
    if (LEVELS[level] < threshold) return;
    const head = `{"time":"${time()}","level":"${level}","event":${JSON.stringify(event)}`;
    write(json === '' ? `${head}}` : `${head},${json}}`);
  };
  const log = (level: LogLevel, event: string, fields: LogFields = {}): void => {
    if (LEVELS[level] < threshold) return;
    let json: string;
    try {
      json = fieldsJson(fields);
    } catch (error) {
      // A cyclic or hostile value must not take the process down with it.
      json = `"logError":${JSON.stringify(String(error))}`;
    }
    logJson(level, event, json);
  };
  return {
    log,
    logJson,
    ...(sink === undefined
      ? {}
      : {
          flush: () => sink.flush(),
          flushSync: () => {
            sink.flushSync();
          },
        }),
    debug: (event, fields) => {
      log('debug', event, fields);
    },
    info: (event, fields) => {
      log('info', event, fields);
    },
    warn: (event, fields) => {
      log('warn', event, fields);
    },
    error: (event, fields) => {
      log('error', event, fields);
    },
  };
}

/** Logs one line per image decision and every failed notary fetch. */
export class DecisionLog implements DecisionObserver {
  /** The serialized fields of memoised decisions, by memo (see DecisionObserver). */
  private readonly fieldsByMemo = new WeakMap<object, string>();

  constructor(private readonly logger: Logger) {}

  imageDecided(event: Parameters<DecisionObserver['imageDecided']>[0]): void {
    const memo = event.memo;
    if (memo !== undefined && this.logger.logJson !== undefined) {
      let fields = this.fieldsByMemo.get(memo);
      if (fields === undefined) {
        fields = fieldsJson({
          image: event.image,
          namespace: event.namespace,
          digest: event.digest,
          role: event.role,
          rule: event.rule,
          result: event.result,
          reason: event.reason,
        });
        this.fieldsByMemo.set(memo, fields);
      }
      const duration = round(event.durationMs);
      this.logger.logJson(
        'info',
        'image.decision',
        `${fields},"durationMs":${Number.isFinite(duration) ? String(duration) : 'null'}`,
      );
      return;
    }
    this.logger.info('image.decision', {
      image: event.image,
      namespace: event.namespace,
      digest: event.digest,
      role: event.role,
      rule: event.rule,
      result: event.result,
      reason: event.reason,
      // The error behind a failure's reason, which names only its class (never sent to the pod).
      detail: event.detail,
      stale: event.stale,
      durationMs: round(event.durationMs),
    });
  }

  notaryFetched(event: Parameters<DecisionObserver['notaryFetched']>[0]): void {
    const fields = {
      server: event.server,
      gun: event.gun,
      ok: event.ok,
      errorCode: event.errorCode,
      durationMs: round(event.durationMs),
    };
    if (event.ok) this.logger.debug('notary.fetch', fields);
    else this.logger.warn('notary.fetch', fields);
  }

  cacheLookup(): void {
    // Cache traffic is a metric, not a log line: one per image would double the log volume.
  }

  // Stale answers are marked on their image.decision lines (`stale`); a line each here would double them.

  breakerChanged(event: Parameters<NonNullable<DecisionObserver['breakerChanged']>>[0]): void {
    const fields = { server: event.server, state: event.state, failures: event.failures };
    if (event.state === 'open') this.logger.warn('notary.circuit', fields);
    else this.logger.info('notary.circuit', fields);
  }
}

/** Sends every observation to each observer in turn; one failing observer does not starve the rest. */
export function combineObservers(...observers: readonly DecisionObserver[]): DecisionObserver {
  // Plain loops, no closure per call: these run for every image of every review.
  return {
    imageDecided: (event) => {
      for (const observer of observers) {
        try {
          observer.imageDecided(event);
        } catch {
          // Observability must never change a decision.
        }
      }
    },
    notaryFetched: (event) => {
      for (const observer of observers) {
        try {
          observer.notaryFetched(event);
        } catch {
          // As above.
        }
      }
    },
    cacheLookup: (event) => {
      for (const observer of observers) {
        try {
          observer.cacheLookup(event);
        } catch {
          // As above.
        }
      }
    },
    staleServed: (event) => {
      for (const observer of observers) {
        try {
          observer.staleServed?.(event);
        } catch {
          // As above.
        }
      }
    },
    breakerChanged: (event) => {
      for (const observer of observers) {
        try {
          observer.breakerChanged?.(event);
        } catch {
          // As above.
        }
      }
    },
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
