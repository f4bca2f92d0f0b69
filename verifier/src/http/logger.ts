/**
 * Structured logs: one JSON object per line on stdout, so a cluster's log pipeline can index every
 * field. A dozen lines of our own instead of a logging dependency; values are bounded in length
 * because image strings come from pod specs anyone with create-pod rights writes.
 */
import type { DecisionObserver } from '../review.js';

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
}

/** Where lines go and which are kept. */
export interface JsonLoggerOptions {
  /** Receives each line without its newline; default writes to stdout. */
  readonly write?: (line: string) => void;
  /** Lines below this level are dropped; default `info`. */
  readonly level?: LogLevel;
  readonly now?: () => Date;
}

const LEVELS: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40 };
const MAX_STRING = 2048;
// `__proto__` would set the record's prototype instead of a field.
const RESERVED = new Set(['time', 'level', 'event', '__proto__']);

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

/** Creates the JSON-lines logger. */
export function createJsonLogger(options: JsonLoggerOptions = {}): Logger {
  const write = options.write ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const threshold = LEVELS[options.level ?? 'info'];
  const now = options.now ?? (() => new Date());
  const log = (level: LogLevel, event: string, fields: LogFields = {}): void => {
    if (LEVELS[level] < threshold) return;
    const record: Record<string, unknown> = { time: now().toISOString(), level, event };
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined && !RESERVED.has(key)) record[key] = encodable(value);
    }
    let line: string;
    try {
      // No replacer: it would run per value of every line, the dominant cost of logging.
      line = JSON.stringify(record);
    } catch (error) {
      // A cyclic or hostile value must not take the process down with it.
      line = JSON.stringify({ time: record['time'], level, event, logError: String(error) });
    }
    write(line);
  };
  return {
    log,
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
  constructor(private readonly logger: Logger) {}

  imageDecided(event: Parameters<DecisionObserver['imageDecided']>[0]): void {
    this.logger.info('image.decision', {
      image: event.image,
      namespace: event.namespace,
      digest: event.digest,
      role: event.role,
      rule: event.rule,
      result: event.result,
      reason: event.reason,
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
}

/** Sends every observation to each observer in turn; one failing observer does not starve the rest. */
export function combineObservers(...observers: readonly DecisionObserver[]): DecisionObserver {
  const each = (call: (observer: DecisionObserver) => void): void => {
    for (const observer of observers) {
      try {
        call(observer);
      } catch {
        // Observability must never change a decision.
      }
    }
  };
  return {
    imageDecided: (event) => {
      each((o) => {
        o.imageDecided(event);
      });
    },
    notaryFetched: (event) => {
      each((o) => {
        o.notaryFetched(event);
      });
    },
    cacheLookup: (event) => {
      each((o) => {
        o.cacheLookup(event);
      });
    },
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
