import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { before, describe, it } from 'node:test';
import {
  connect,
  createServer,
  type ConnectionOptions,
  type TLSSocket,
  type TlsOptions,
} from 'node:tls';
import { createTestCa, type TestCa, type TestCertificate } from '../src/testing/tls.js';

/** extendedKeyUsage OIDs, as X509Certificate#keyUsage lists them. */
const EKU = { serverAuth: '1.3.6.1.5.5.7.3.1', clientAuth: '1.3.6.1.5.5.7.3.2' } as const;

/** How one side of a handshake ended: `ok` or the error code it saw. */
interface Handshake {
  readonly client: string;
  readonly server: string;
  /** The CN of the client certificate the server accepted, if any. */
  readonly clientCommonName?: string;
}

/**
 * One TLS connection on 127.0.0.1. A server given `requireClientCa` asks for a client certificate
 * and, like Go's RequireAndVerifyClientCert, drops a client it cannot verify (reporting OpenSSL's
 * reason); otherwise it answers `hello`, and the client counts as `ok` only once it read that.
 */
async function handshake(
  server: TestCertificate & { requireClientCa?: string },
  client: ConnectionOptions,
): Promise<Handshake> {
  const mutual = server.requireClientCa;
  const serverOptions: TlsOptions = {
    cert: server.certPem,
    key: server.keyPem,
    ...(mutual === undefined ? {} : { requestCert: true, rejectUnauthorized: false, ca: mutual }),
  };
  const listener = createServer(serverOptions);
  const serverOutcome = new Promise<{ outcome: string; commonName?: string }>((resolve) => {
    listener.on('secureConnection', (socket: TLSSocket) => {
      if (mutual !== undefined && !socket.authorized) {
        resolve({ outcome: String(socket.authorizationError) });
        socket.destroy();
        return;
      }
      const subject = socket.getPeerCertificate().subject as { CN?: string } | undefined;
      resolve(
        subject?.CN === undefined ? { outcome: 'ok' } : { outcome: 'ok', commonName: subject.CN },
      );
      socket.end('hello');
    });
    listener.on('tlsClientError', (error: NodeJS.ErrnoException) => {
      resolve({ outcome: error.code ?? error.message });
    });
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const address = listener.address();
  assert.ok(address !== null && typeof address === 'object');
  try {
    const clientOutcome = await new Promise<string>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: address.port, ...client });
      let received = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        received += chunk;
      });
      socket.on('end', () => {
        resolve(received === 'hello' ? 'ok' : `read "${received}"`);
      });
      socket.on('error', (error: NodeJS.ErrnoException) => {
        socket.destroy();
        resolve(error.code ?? error.message);
      });
    });
    const serverSide = await serverOutcome;
    return {
      client: clientOutcome,
      server: serverSide.outcome,
      ...(serverSide.commonName === undefined ? {} : { clientCommonName: serverSide.commonName }),
    };
  } finally {
    await new Promise<void>((resolve) => {
      listener.close(() => {
        resolve();
      });
    });
  }
}

void describe('test TLS certificates (common/testing)', () => {
  let ca: TestCa;
  let otherCa: TestCa;
  let server: TestCertificate;
  let client: TestCertificate;

  before(() => {
    ca = createTestCa({ commonName: 'testing-tls CA' });
    otherCa = createTestCa({ commonName: 'unrelated CA' });
    server = ca.issue({ commonName: 'server' });
    client = ca.issue({ commonName: 'mtls-client', usage: 'client' });
  });

  void describe('certificates', () => {
    void it('makes a self-signed P-256 CA valid from before now', () => {
      const cert = new X509Certificate(ca.certPem);
      assert.equal(cert.ca, true);
      assert.equal(cert.subject, 'CN=testing-tls CA');
      assert.equal(cert.issuer, cert.subject);
      assert.ok(cert.verify(cert.publicKey));
      assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
      assert.ok(new Date(cert.validFrom).getTime() < Date.now() - 30 * 60 * 1000);
      assert.ok(new Date(cert.validTo).getTime() > Date.now() + 7 * 24 * 60 * 60 * 1000);
      assert.equal(cert.keyUsage, undefined, 'a CA carries no extendedKeyUsage');
    });

    void it('issues a server leaf that chains to the CA and names 127.0.0.1 and localhost', () => {
      const leaf = new X509Certificate(server.certPem);
      const issuer = new X509Certificate(ca.certPem);
      assert.equal(leaf.ca, false);
      assert.ok(leaf.checkIssued(issuer));
      assert.ok(leaf.verify(issuer.publicKey));
      assert.ok(!leaf.verify(new X509Certificate(otherCa.certPem).publicKey));
      assert.equal(leaf.subjectAltName, 'IP Address:127.0.0.1, DNS:localhost');
      assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
      assert.equal(leaf.checkHost('localhost'), 'localhost');
      assert.equal(leaf.checkHost('example.com'), undefined);
      assert.deepEqual(leaf.keyUsage, [EKU.serverAuth]);
      assert.ok(leaf.checkPrivateKey(createPrivateKey(server.keyPem)));
      assert.notEqual(
        leaf.serialNumber,
        new X509Certificate(ca.issue({ commonName: 'server' }).certPem).serialNumber,
      );
    });

    void it('gives each usage its extendedKeyUsage and default subjectAltName', () => {
      const eku = (usage: 'server' | 'client' | 'both' | 'none'): string[] | undefined =>
        new X509Certificate(ca.issue({ commonName: usage, usage }).certPem).keyUsage;
      assert.deepEqual(eku('client'), [EKU.clientAuth]);
      assert.deepEqual(eku('both'), [EKU.serverAuth, EKU.clientAuth]);
      assert.equal(eku('none'), undefined);
      assert.equal(new X509Certificate(client.certPem).subjectAltName, undefined);
      const named = ca.issue({
        commonName: 'signer',
        subjectAltNames: ['IP:127.0.0.1', 'DNS:notary-signer'],
      });
      assert.equal(
        new X509Certificate(named.certPem).subjectAltName,
        'IP Address:127.0.0.1, DNS:notary-signer',
      );
    });

    void it('honours an explicit validity window', () => {
      const notBefore = new Date(Date.UTC(2020, 0, 1));
      const notAfter = new Date(Date.UTC(2020, 0, 2));
      const leaf = new X509Certificate(
        ca.issue({ commonName: 'old', notBefore, notAfter }).certPem,
      );
      assert.equal(new Date(leaf.validFrom).getTime(), notBefore.getTime());
      assert.equal(new Date(leaf.validTo).getTime(), notAfter.getTime());
    });

    void it('refuses a subjectAltName it cannot encode', () => {
      for (const entry of ['127.0.0.1', 'IP:::1', 'IP:256.0.0.1', 'DNS:', 'EMAIL:a@b', 'DNS:a b']) {
        assert.throws(() => ca.issue({ commonName: 'x', subjectAltNames: [entry] }), {
          message: new RegExp(`subjectAltName "${entry.replace(/[.*]/g, '\\$&')}"`),
        });
      }
    });
  });

  void describe('handshakes on 127.0.0.1', () => {
    void it('a client trusting the CA accepts the server leaf', async () => {
      assert.deepEqual(await handshake(server, { ca: ca.certPem }), { client: 'ok', server: 'ok' });
    });

    void it('a client trusting a different CA refuses it', async () => {
      const result = await handshake(server, { ca: otherCa.certPem });
      assert.equal(result.client, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    });

    void it('a certificate for another name is refused for 127.0.0.1', async () => {
      const elsewhere = ca.issue({ commonName: 'x', subjectAltNames: ['DNS:elsewhere.example'] });
      const result = await handshake(elsewhere, { ca: ca.certPem });
      assert.equal(result.client, 'ERR_TLS_CERT_ALTNAME_INVALID');
    });

    void it('an expired certificate is refused', async () => {
      const expired = ca.issue({
        commonName: 'expired',
        notBefore: new Date(Date.now() - 2 * 24 * 60 * 60 * 1000),
        notAfter: new Date(Date.now() - 24 * 60 * 60 * 1000),
      });
      const result = await handshake(expired, { ca: ca.certPem });
      assert.equal(result.client, 'CERT_HAS_EXPIRED');
    });

    void it('a client-only leaf cannot serve (extendedKeyUsage clientAuth)', async () => {
      const result = await handshake(client, { ca: ca.certPem });
      assert.equal(result.client, 'INVALID_PURPOSE');
    });

    void it('mutual TLS: a server requiring client certificates accepts the client leaf', async () => {
      const result = await handshake(
        { ...server, requireClientCa: ca.certPem },
        { ca: ca.certPem, cert: client.certPem, key: client.keyPem },
      );
      assert.deepEqual(result, { client: 'ok', server: 'ok', clientCommonName: 'mtls-client' });
    });

    void it('mutual TLS: no client certificate, or one from another CA, is refused', async () => {
      const none = await handshake({ ...server, requireClientCa: ca.certPem }, { ca: ca.certPem });
      assert.notEqual(none.client, 'ok');
      // Node reports a missing client certificate with this verify code.
      assert.equal(none.server, 'UNABLE_TO_GET_ISSUER_CERT');
      const stranger = otherCa.issue({ commonName: 'stranger', usage: 'client' });
      const foreign = await handshake(
        { ...server, requireClientCa: ca.certPem },
        { ca: ca.certPem, cert: stranger.certPem, key: stranger.keyPem },
      );
      assert.notEqual(foreign.client, 'ok');
      assert.equal(foreign.server, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    });

    void it('mutual TLS: a server-only leaf is refused as a client certificate', async () => {
      const result = await handshake(
        { ...server, requireClientCa: ca.certPem },
        { ca: ca.certPem, cert: server.certPem, key: server.keyPem },
      );
      assert.notEqual(result.client, 'ok');
      assert.equal(result.server, 'INVALID_PURPOSE');
    });
  });
});
