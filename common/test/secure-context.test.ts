import assert from 'node:assert/strict';
import { createServer as createHttpsServer } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { connect, createServer, type SecureContext, type Server } from 'node:tls';
import { NotaryHttpClient, secureContextTrusting } from '../src/notary/http-client.js';
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

describe('NotaryHttpClient with a private CA', () => {
  it('tries the private CA alone first, then once with the public roots as well', async () => {
    const leaf = serverCa.issue({ commonName: 'notary' });
    const https = createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
      res.writeHead(req.url === '/v2/x/y/_trust/tuf/root.json' ? 200 : 404);
      res.end('{"root":1}');
    });
    let connections = 0;
    https.on('connection', () => (connections += 1));
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    const address = https.address();
    assert.ok(address !== null && typeof address === 'object');
    const baseUrl = `https://127.0.0.1:${String(address.port)}`;
    const fetchRoot = async (client: NotaryHttpClient): Promise<string> => {
      try {
        const body = await client.fetchMetadata('x/y', { role: 'root', maxBytes: 1000 });
        return Buffer.from(body).toString('utf8');
      } catch (error) {
        return String((error as { code?: unknown }).code);
      }
    };
    const trusted = new NotaryHttpClient({ baseUrl, ca: serverCa.certPem });
    const untrusted = new NotaryHttpClient({ baseUrl, ca: otherCa.certPem });
    try {
      assert.equal(await fetchRoot(trusted), '{"root":1}');
      assert.equal(connections, 1, 'the private CA alone verified the server');
      // An unrelated private CA: the handshake fails, is retried once with the public roots too
      // (which do not vouch for the test CA either), and the next request does not retry again.
      assert.equal(await fetchRoot(untrusted), 'HTTP_UNREACHABLE');
      assert.equal(connections, 3);
      assert.equal(await fetchRoot(untrusted), 'HTTP_UNREACHABLE');
      assert.equal(connections, 4);
    } finally {
      trusted.close();
      untrusted.close();
      https.close();
    }
  });
});
