import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createServer as createHttpsServer, get, request, type Agent } from 'node:https';
import {
  connect,
  createSecureContext,
  createServer,
  type SecureContext,
  type Server,
} from 'node:tls';
import {
  agentTrusting,
  nodeRootStore,
  secureContextTrusting,
  type AgentTrust,
  type TrustingRequestOptions,
} from '../src/notary/tls-trust.js';
import { createTestCa, type TestCa } from '../src/testing/tls.js';

let serverCa: TestCa;
let otherCa: TestCa;
let server: Server;
let port: number;

before(async () => {
  serverCa = createTestCa({ commonName: 'notary test CA' });
  otherCa = createTestCa({ commonName: 'unrelated CA' });
  const leaf = serverCa.issue({ commonName: 'notary' });
  server = createServer({ cert: leaf.certPem, key: leaf.keyPem }, (socket) => {
    socket.end('hello');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  port = address.port;
});

after(() => {
  server.close();
});

/** `ok`, or the code of the verification error the client saw. */
function handshake(secureContext: SecureContext): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, secureContext, servername: 'localhost' });
    socket.once('secureConnect', () => {
      resolve('ok');
      socket.destroy();
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      resolve(error.code ?? error.message);
    });
  });
}

describe('secureContextTrusting', () => {
  it('trusts a private CA added to the default store', async () => {
    assert.equal(await handshake(secureContextTrusting(serverCa.certPem)), 'ok');
  });

  it('trusts every certificate of a PEM bundle, not only the first', async () => {
    const bundle = `${otherCa.certPem}\n${serverCa.certPem}`;
    assert.equal(await handshake(secureContextTrusting(bundle)), 'ok');
    assert.equal(await handshake(secureContextTrusting(Buffer.from(bundle))), 'ok');
  });

  it('trusts the private CA when it is the only one', async () => {
    assert.equal(await handshake(secureContextTrusting(serverCa.certPem, true)), 'ok');
  });

  it('refuses the server without its CA, or with another CA', async () => {
    assert.equal(
      await handshake(secureContextTrusting(undefined)),
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    );
    assert.equal(
      await handshake(secureContextTrusting(otherCa.certPem)),
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    );
    assert.equal(
      await handshake(secureContextTrusting(otherCa.certPem, true)),
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    );
  });
});

/** An HTTPS server on loopback answering `hello` with a leaf of `ca` for `names`. */
async function httpsServer(
  ca: TestCa,
  names?: readonly string[],
): Promise<{ url: string; close: () => void; connections: () => number }> {
  const leaf = ca.issue({
    commonName: 'notary',
    ...(names === undefined ? {} : { subjectAltNames: names }),
  });
  let handshakes = 0;
  const tlsServer = createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (_, response) => {
    response.end('hello');
  });
  tlsServer.on('connection', () => handshakes++);
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
  const address = tlsServer.address();
  assert.ok(address !== null && typeof address === 'object');
  return {
    url: `https://localhost:${address.port}/`,
    close: () => tlsServer.close(),
    connections: () => handshakes,
  };
}

/** `200`, or the code of the error a GET through `agent` failed with. */
function fetchThrough(agent: Agent, url: string): Promise<string> {
  return new Promise((resolve) => {
    get(url, { agent, headers: { connection: 'close' } }, (response) => {
      response.resume();
      response.on('end', () => {
        resolve(String(response.statusCode));
      });
    }).on('error', (error: NodeJS.ErrnoException) => {
      resolve(error.code ?? error.message);
    });
  });
}

describe('agentTrusting', () => {
  // The public roots cannot sign a test server, so `wideStandIn` plays them: a wide context that
  // trusts `publicCa` and the private bundle, as the real wide store trusts Node's roots and it.
  const publicCa = createTestCa({ commonName: 'stand-in public root' });
  let wideBuilt = 0;
  const wideStandIn = (): SecureContext => {
    wideBuilt++;
    return createSecureContext({ ca: [publicCa.certPem, serverCa.certPem] });
  };
  /** An agent over `trust` and the stand-in wide store, counted from zero; closes both after `run`. */
  async function withAgent(
    server: { close: () => void } | undefined,
    trust: Omit<AgentTrust, 'wideContext'>,
    run: (agent: Agent) => Promise<void>,
  ): Promise<void> {
    wideBuilt = 0;
    const agent = agentTrusting({ ...trust, wideContext: wideStandIn });
    try {
      await run(agent);
    } finally {
      agent.destroy();
      server?.close();
    }
  }
  const PRIVATE = { ca: serverCa.certPem, nodeStore: 'openssl' } as const;

  it('connects trusting the private CA alone, never building the wide store, when it verifies', async () => {
    const server = await httpsServer(serverCa);
    await withAgent(server, PRIVATE, async (agent) => {
      assert.equal(await fetchThrough(agent, server.url), '200');
      assert.equal(await fetchThrough(agent, server.url), '200');
      assert.equal(wideBuilt, 0);
      assert.equal(server.connections(), 2);
    });
  });

  it('a chain only the public roots verify: connects again with the wide store, built once', async () => {
    const server = await httpsServer(publicCa);
    await withAgent(server, PRIVATE, async (agent) => {
      assert.equal(await fetchThrough(agent, server.url), '200');
      assert.equal(wideBuilt, 1);
      // The refused narrow handshake, then the wide one.
      assert.equal(server.connections(), 2);
      assert.equal(await fetchThrough(agent, server.url), '200');
      assert.equal(wideBuilt, 1);
      assert.equal(server.connections(), 3);
    });
  });

  it('exclusive: a chain outside the bundle is refused without trying the public roots', async () => {
    const server = await httpsServer(publicCa);
    await withAgent(
      server,
      { ca: serverCa.certPem, exclusive: true, nodeStore: 'openssl' },
      async (agent) => {
        assert.equal(await fetchThrough(agent, server.url), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
        assert.equal(wideBuilt, 0);
      },
    );
  });

  it('a chain neither store verifies is refused with the verification error', async () => {
    const server = await httpsServer(otherCa);
    await withAgent(server, PRIVATE, async (agent) => {
      assert.equal(await fetchThrough(agent, server.url), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      assert.equal(wideBuilt, 1);
    });
  });

  it('a wrong host name is refused at once: the wide store would not change that', async () => {
    const server = await httpsServer(serverCa, ['DNS:elsewhere.example']);
    await withAgent(server, PRIVATE, async (agent) => {
      assert.equal(await fetchThrough(agent, server.url), 'ERR_TLS_CERT_ALTNAME_INVALID');
      assert.equal(wideBuilt, 0);
      assert.equal(server.connections(), 1);
    });
  });

  it('a refused connection fails as it would without the agent', async () => {
    const server = await httpsServer(serverCa);
    server.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await withAgent(undefined, PRIVATE, async (agent) => {
      assert.equal(await fetchThrough(agent, server.url), 'ECONNREFUSED');
      assert.equal(wideBuilt, 0);
    });
  });

  it("Node's own store bundled: one context with the private CA, never a second handshake", async () => {
    const server = await httpsServer(publicCa);
    await withAgent(server, { ca: serverCa.certPem, nodeStore: 'bundled' }, async (agent) => {
      // The stand-in public root is not among Node's bundled roots, so this chain stays refused.
      assert.equal(await fetchThrough(agent, server.url), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      assert.equal(wideBuilt, 0);
      assert.equal(server.connections(), 1);
    });
  });

  it("no private CA under --use-openssl-ca: Node's own store first, then the wide store", async () => {
    const server = await httpsServer(publicCa);
    await withAgent(server, { nodeStore: 'openssl' }, async (agent) => {
      assert.equal(wideBuilt, 0);
      // This process's own store (no flag here: Node's bundled roots) refuses the stand-in root.
      assert.equal(await fetchThrough(agent, server.url), '200');
      assert.equal(wideBuilt, 1);
      assert.equal(server.connections(), 2);
    });
  });

  it('a server that does not speak TLS fails without building the wide store', async () => {
    const plain = createHttpServer((_, response) => {
      response.end('plain');
    });
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    const address = plain.address();
    assert.ok(address !== null && typeof address === 'object');
    await withAgent(plain, { nodeStore: 'openssl' }, async (agent) => {
      assert.equal(
        await fetchThrough(agent, `https://localhost:${address.port}/`),
        'ERR_SSL_WRONG_VERSION_NUMBER',
      );
      assert.equal(wideBuilt, 0);
    });
  });
});

describe('nodeRootStore', () => {
  it('is openssl when --use-openssl-ca is on the command line or in NODE_OPTIONS', () => {
    assert.equal(nodeRootStore(['--use-openssl-ca'], ''), 'openssl');
    assert.equal(nodeRootStore([], '--max-old-space-size=100 --use-openssl-ca'), 'openssl');
    assert.equal(nodeRootStore(['--use-bundled-ca'], ''), 'bundled');
    assert.equal(nodeRootStore([], '--use-openssl-ca-x'), 'bundled');
    assert.equal(nodeRootStore([], ''), 'bundled');
  });
});

describe('agentTrusting: a handshake the server never answers', () => {
  /** A TCP server that accepts, reads the ClientHello and never writes back. */
  async function stalledServer(): Promise<{
    url: string;
    accepted: () => number;
    allClosed: () => Promise<void>;
    close: () => void;
  }> {
    const closed: Promise<void>[] = [];
    const sockets = new Set<Socket>();
    const stalled = createNetServer((socket) => {
      socket.resume();
      sockets.add(socket);
      closed.push(
        new Promise((resolve) =>
          socket.once('close', () => {
            resolve();
          }),
        ),
      );
    });
    await new Promise<void>((resolve) => stalled.listen(0, '127.0.0.1', resolve));
    const address = stalled.address();
    assert.ok(address !== null && typeof address === 'object');
    return {
      url: `https://localhost:${address.port}/`,
      accepted: () => closed.length,
      allClosed: () =>
        Promise.race([
          Promise.all(closed).then(() => undefined),
          new Promise<never>((_, reject) =>
            setTimeout(() => {
              reject(new Error('a stalled connection was left open'));
            }, 2_000).unref(),
          ),
        ]),
      close: () => {
        for (const socket of sockets) socket.destroy();
        stalled.close();
      },
    };
  }

  /** The error code a GET through `agent` failed with (`answered` if it did not). */
  function failedGet(
    agent: Agent,
    url: string,
    options: TrustingRequestOptions = {},
  ): Promise<string> {
    return new Promise((resolve) => {
      request(url, { agent, ...options }, () => {
        resolve('answered');
      })
        .on('error', (error: NodeJS.ErrnoException) => {
          resolve(error.code ?? error.message);
        })
        .end();
    });
  }

  /** `outcome`, or a failure naming `what` after 3 s: the old agent left such requests hanging. */
  function within<T>(outcome: Promise<T>, what: string): Promise<T> {
    return Promise.race([
      outcome,
      new Promise<never>((_, reject) =>
        setTimeout(() => {
          reject(new Error(`${what} still pending after 3 s`));
        }, 3_000).unref(),
      ),
    ]);
  }

  /** Resolves once `server` has accepted a connection. */
  async function accepted(server: { accepted: () => number }): Promise<void> {
    while (server.accepted() === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  }

  const STALLED = {
    ca: createTestCa({ commonName: 'private CA' }).certPem,
    nodeStore: 'openssl',
  } as const;

  it('destroy() closes a connection still handshaking and fails its request', async () => {
    const server = await stalledServer();
    const agent = agentTrusting({ ...STALLED, handshakeTimeoutMs: 60_000 });
    try {
      const outcome = failedGet(agent, server.url);
      await accepted(server);
      agent.destroy();
      assert.equal(await within(outcome, 'the request'), 'ABORT_ERR');
      await server.allClosed();
    } finally {
      server.close();
    }
  });

  it('the request giving up (its handshakeSignal) closes its connection, never trying the wide store', async () => {
    const server = await stalledServer();
    let wideBuilt = 0;
    const agent = agentTrusting({
      ...STALLED,
      handshakeTimeoutMs: 60_000,
      wideContext: () => {
        wideBuilt++;
        return createSecureContext({});
      },
    });
    try {
      const gaveUp = new AbortController();
      const outcome = failedGet(agent, server.url, { handshakeSignal: gaveUp.signal });
      await accepted(server);
      gaveUp.abort();
      assert.equal(await within(outcome, 'the request'), 'ABORT_ERR');
      await server.allClosed();
      assert.equal(wideBuilt, 0);
      assert.equal(server.accepted(), 1);
    } finally {
      agent.destroy();
      server.close();
    }
  });

  it('a caller that passes no signal is bounded by handshakeTimeoutMs', async () => {
    const server = await stalledServer();
    const agent = agentTrusting({ ...STALLED, handshakeTimeoutMs: 200 });
    try {
      const started = Date.now();
      assert.equal(
        await within(failedGet(agent, server.url), 'the request'),
        'ERR_TLS_HANDSHAKE_TIMEOUT',
      );
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 150 && elapsed < 2_000, `took ${elapsed} ms`);
      await server.allClosed();
    } finally {
      agent.destroy();
      server.close();
    }
  });

  it('refuses a non-positive handshake deadline', () => {
    assert.throws(() => agentTrusting({ ...STALLED, handshakeTimeoutMs: 0 }), RangeError);
  });
});
