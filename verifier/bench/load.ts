/**
 * A small autocannon-like load generator for the benchmarks: raw TLS keep-alive connections, one
 * prebuilt request each at a time (no pipelining), a minimal response parser (status line and
 * Content-Length), and per-request latency. Raw sockets keep the client's own cost far below
 * Node's http client, so the server is what gets measured.
 */
import { connect, type TLSSocket } from 'node:tls';

/** Where to send, and what. */
export interface LoadTarget {
  readonly port: number;
  /** PEM CA that signed the server certificate. */
  readonly ca: string;
  /** A complete HTTP/1.1 request (headers and body), sent as is. */
  readonly request: Buffer;
}

/** What a run measured. */
export interface LoadResult {
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  /** Latencies in milliseconds, sorted ascending. */
  readonly latenciesMs: Float64Array;
}

/** Requests per second of a result. */
export function rate(result: LoadResult): number {
  return result.requests / result.seconds;
}

/** The p-th percentile (0–100) of a sorted sample, nearest rank. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** One keep-alive connection that answers a promise per request. */
class Connection {
  private buffer: Buffer = Buffer.alloc(0);
  private pending: ((ok: boolean) => void) | undefined;

  private constructor(private readonly socket: TLSSocket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    socket.on('error', () => {
      this.finish(false);
    });
    socket.on('close', () => {
      this.finish(false);
    });
  }

  static open(target: LoadTarget): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = connect({
        host: '127.0.0.1',
        port: target.port,
        ca: target.ca,
        servername: 'localhost',
      });
      socket.setNoDelay(true);
      socket.once('secureConnect', () => {
        resolve(new Connection(socket));
      });
      socket.once('error', reject);
    });
  }

  send(request: Buffer): Promise<boolean> {
    return new Promise((resolve) => {
      this.pending = resolve;
      this.socket.write(request);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private parse(): void {
    const end = this.buffer.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.buffer.subarray(0, end).toString('latin1');
    const length = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
    if (length === undefined) {
      this.finish(false);
      return;
    }
    const total = end + 4 + Number(length);
    if (this.buffer.length < total) return;
    this.buffer = this.buffer.subarray(total);
    this.finish(head.startsWith('HTTP/1.1 200'));
  }

  private finish(ok: boolean): void {
    const pending = this.pending;
    this.pending = undefined;
    pending?.(ok);
  }
}

/** Growable sample of latencies. */
class Samples {
  private data = new Float64Array(1 << 16);
  private size = 0;
  push(value: number): void {
    if (this.size === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.size++] = value;
  }
  sorted(): Float64Array {
    return this.data.slice(0, this.size).sort();
  }
}

const nowMs = (): number => performance.now();

/** Closed loop: `connections` clients each send the next request as soon as the last is answered. */
export async function closedLoop(
  target: LoadTarget,
  options: { readonly connections: number; readonly seconds: number },
): Promise<LoadResult> {
  const pool = await Promise.all(
    Array.from({ length: options.connections }, () => Connection.open(target)),
  );
  const samples = new Samples();
  let errors = 0;
  const started = nowMs();
  const deadline = started + options.seconds * 1000;
  await Promise.all(
    pool.map(async (connection) => {
      while (nowMs() < deadline) {
        const sent = nowMs();
        if (await connection.send(target.request)) samples.push(nowMs() - sent);
        else errors += 1;
      }
    }),
  );
  const seconds = (nowMs() - started) / 1000;
  for (const connection of pool) connection.close();
  const latenciesMs = samples.sorted();
  return { requests: latenciesMs.length, errors, seconds, latenciesMs };
}

/**
 * Open loop at a fixed rate: request i is due at i/rate; latency counts from when it was due, so
 * a stalled server is charged for the queue it causes (no coordinated omission).
 */
export async function fixedRate(
  target: LoadTarget,
  options: { readonly rate: number; readonly seconds: number; readonly connections: number },
): Promise<LoadResult> {
  const idle = await Promise.all(
    Array.from({ length: options.connections }, () => Connection.open(target)),
  );
  const all = [...idle];
  const samples = new Samples();
  const queue: number[] = [];
  let errors = 0;
  let issued = 0;
  const total = Math.round(options.rate * options.seconds);
  const started = nowMs();
  let outstanding = 0;

  const dispatch = (): void => {
    while (queue.length > 0 && idle.length > 0) {
      const due = queue.shift() as number;
      const connection = idle.pop() as Connection;
      outstanding += 1;
      void connection.send(target.request).then((ok) => {
        outstanding -= 1;
        if (ok) samples.push(nowMs() - due);
        else errors += 1;
        idle.push(connection);
        dispatch();
      });
    }
  };

  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const elapsed = nowMs() - started;
      while (issued < total && (issued * 1000) / options.rate <= elapsed) {
        queue.push(started + (issued * 1000) / options.rate);
        issued += 1;
      }
      dispatch();
      if (issued >= total && queue.length === 0 && outstanding === 0) {
        resolve();
        return;
      }
      setImmediate(tick);
    };
    tick();
  });
  const seconds = (nowMs() - started) / 1000;
  for (const connection of all) connection.close();
  const latenciesMs = samples.sorted();
  return { requests: latenciesMs.length, errors, seconds, latenciesMs };
}

/** A POST request with a JSON body, keep-alive. */
export function jsonPost(path: string, body: string): Buffer {
  const payload = Buffer.from(body);
  return Buffer.concat([
    Buffer.from(
      `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${payload.length}\r\nConnection: keep-alive\r\n\r\n`,
    ),
    payload,
  ]);
}
