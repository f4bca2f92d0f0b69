import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, createServer, type SecureContext, type Server } from 'node:tls';
import { secureContextTrusting } from '../src/notary/http-client.js';
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
