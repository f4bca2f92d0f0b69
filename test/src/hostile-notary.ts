/**
 * A hostile notary server for end-to-end tests: HTTPS on 127.0.0.1, serving the Notary v1 read
 * API (`/v2/<gun>/_trust/tuf/<file>`) from in-memory file maps (a FixtureRepository's `files`,
 * corrupted one thing at a time by the test) and misbehaving on demand at the transport level:
 * down, slow, 5xx, truncated bodies, endless or trickling bodies, garbage, a certificate from the
 * wrong CA. Every fault change drops open connections, so keep-alive clients meet the new
 * behaviour on their next request. `close()` stops exactly this server.
 */
import { createServer, type Server } from 'node:https';
import type { Socket } from 'node:net';

/** How the server misbehaves; `only` limits a fault to files whose name starts with it. */
export type HostileFault =
  | { readonly kind: 'healthy' }
  /** Not listening: connections are refused. */
  | { readonly kind: 'down' }
  /** Answers correctly after `delayMs`. */
  | { readonly kind: 'slow'; readonly delayMs: number; readonly only?: string }
  /** Answers every request with this status and a registry error body. */
  | { readonly kind: 'status'; readonly status: number; readonly only?: string }
  /** Declares the full Content-Length, sends half the body, then closes the connection. */
  | { readonly kind: 'truncated'; readonly only?: string }
  /** 200, chunked, and never stops sending. */
  | { readonly kind: 'endless'; readonly only?: string }
  /** 200, chunked, one byte every 100 ms, never finishing. */
  | { readonly kind: 'trickle'; readonly only?: string }
  /** 200 with an HTML error page instead of metadata. */
  | { readonly kind: 'garbage'; readonly only?: string }
  /** Presents a certificate issued by a CA the client does not trust. */
  | { readonly kind: 'wrong-ca' };

/** PEM certificate and key of a TLS server. */
export interface TlsPair {
  readonly cert: string;
  readonly key: string;
}

/** What the server needs: its certificate (trusted by the client) and one from another CA. */
export interface HostileNotaryOptions {
  readonly tls: TlsPair;
  readonly wrongCaTls: TlsPair;
}

/** A running hostile notary. */
export interface HostileNotary {
  /** `https://127.0.0.1:<port>`, stable across `down` and back. */
  readonly url: string;
  /** Paths requested so far (`/v2/<gun>/_trust/tuf/<file>`). */
  readonly requests: string[];
  /** Serves `files` (`root.json`, `timestamp.json`, `snapshot.<hex>.json`, …) for `gun`; the map is read live. */
  serve(gun: string, files: ReadonlyMap<string, Buffer>): void;
  /** Switches behaviour; resolves once the server is listening (or not) accordingly. */
  setFault(fault: HostileFault): Promise<void>;
  close(): Promise<void>;
}

const TUF_PATH = /^\/v2\/(.+?)\/_trust\/tuf\/(.+)$/;
const GARBAGE = Buffer.from('<html><body><h1>502 Bad Gateway</h1></body></html>\n');

/** Starts the server on a free loopback port, healthy. */
export async function startHostileNotary(options: HostileNotaryOptions): Promise<HostileNotary> {
  const repos = new Map<string, ReadonlyMap<string, Buffer>>();
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let fault: HostileFault = { kind: 'healthy' };
  let listening = false;

  const server: Server = createServer({ cert: options.tls.cert, key: options.tls.key });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // TLS errors from clients that reject our certificate are the point of some tests.
  server.on('tlsClientError', () => undefined);

  const later = (ms: number, fn: () => void): void => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  server.on('request', (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    requests.push(path);
    const match = TUF_PATH.exec(path);
    const file = match?.[2] ?? '';
    const applies = (f: { readonly only?: string }): boolean =>
      f.only === undefined || file.startsWith(f.only);

    const answer = (): void => {
      if (path === '/v2/' || path === '/v2') {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
        return;
      }
      const bytes = match === null ? undefined : repos.get(match[1] ?? '')?.get(file);
      if (bytes === undefined) {
        res
          .writeHead(404, { 'Content-Type': 'application/json' })
          .end(
            '{"errors":[{"code":"METADATA_NOT_FOUND","message":"You have requested metadata that does not exist."}]}',
          );
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': bytes.length });
      res.end(bytes);
    };

    const current = fault;
    switch (current.kind) {
      case 'slow':
        if (applies(current)) {
          later(current.delayMs, answer);
          return;
        }
        break;
      case 'status':
        if (applies(current)) {
          res
            .writeHead(current.status, { 'Content-Type': 'application/json' })
            .end('{"errors":[{"code":"UNAVAILABLE","message":"the server is unavailable"}]}');
          return;
        }
        break;
      case 'truncated':
        if (applies(current)) {
          const bytes = match === null ? undefined : repos.get(match[1] ?? '')?.get(file);
          if (bytes !== undefined) {
            res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': bytes.length });
            res.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
            later(20, () => res.socket?.destroy());
            return;
          }
        }
        break;
      case 'endless':
        if (applies(current)) {
          res.writeHead(200, { 'Content-Type': 'text/plain' });
          const chunk = Buffer.alloc(64 * 1024, 0x20);
          const pump = (): void => {
            while (!res.destroyed && res.write(chunk));
            if (!res.destroyed) res.once('drain', pump);
          };
          pump();
          return;
        }
        break;
      case 'trickle':
        if (applies(current)) {
          res.writeHead(200, { 'Content-Type': 'text/plain' });
          const drip = (): void => {
            if (res.destroyed) return;
            res.write('{');
            later(100, drip);
          };
          drip();
          return;
        }
        break;
      case 'garbage':
        if (applies(current)) {
          res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': GARBAGE.length });
          res.end(GARBAGE);
          return;
        }
        break;
      case 'healthy':
      case 'down':
      case 'wrong-ca':
        break;
    }
    answer();
  });

  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        listening = true;
        resolve();
      });
    });
  const stopListening = (): Promise<void> =>
    new Promise((resolve) => {
      if (!listening) {
        resolve();
        return;
      }
      listening = false;
      server.close(() => {
        resolve();
      });
      dropConnections();
    });
  const dropConnections = (): void => {
    for (const socket of sockets) socket.destroy();
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
  };

  await listen(0);
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  const port = address.port;

  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    serve: (gun, files) => {
      repos.set(gun, files);
    },
    setFault: async (next) => {
      fault = next;
      dropConnections();
      server.setSecureContext(next.kind === 'wrong-ca' ? options.wrongCaTls : options.tls);
      if (next.kind === 'down') await stopListening();
      else if (!listening) await listen(port);
    },
    close: async () => {
      await stopListening();
    },
  };
}
