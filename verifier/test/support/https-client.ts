/** A minimal HTTPS client for the server tests that also reports the certificate the server showed. */
import { Agent, request } from 'node:https';
import { TLSSocket } from 'node:tls';

/** The answer and what the TLS layer saw. */
export interface HttpsReply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
  /** The server certificate's subject CN. */
  readonly serverCN: string | undefined;
}

/** Where and how to call. */
export interface HttpsCall {
  readonly port: number;
  readonly ca: string;
  readonly path?: string;
  readonly method?: string;
  readonly body?: string | Buffer;
  readonly headers?: Readonly<Record<string, string>>;
  /** Client certificate and key (mTLS). */
  readonly cert?: string;
  readonly key?: string;
  /** Defaults to a fresh connection per call, so each call sees the current certificate. */
  readonly agent?: Agent | false;
}

/** Sends one request to 127.0.0.1. */
export function httpsCall(call: HttpsCall): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: call.port,
        path: call.path ?? '/healthz',
        method: call.method ?? 'GET',
        ca: call.ca,
        ...(call.cert !== undefined ? { cert: call.cert } : {}),
        ...(call.key !== undefined ? { key: call.key } : {}),
        agent: call.agent ?? false,
        headers: call.headers ?? {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        const peer = res.socket instanceof TLSSocket ? res.socket.getPeerCertificate() : undefined;
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            serverCN: typeof peer?.subject?.CN === 'string' ? peer.subject.CN : undefined,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(call.body);
  });
}

/** Polls `probe` until it returns true or `timeoutMs` passes. */
export async function eventually(
  probe: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
