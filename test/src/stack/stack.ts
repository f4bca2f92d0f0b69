/**
 * The real notary stack on loopback: notary-signer (remote trust service only), notary-server and
 * docker-registry, each on a free 127.0.0.1 port with a throw-away CA, optionally behind a token
 * service served by this process. `stop()` kills exactly the processes it started.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinaries } from './binaries.js';
import { createCertificates, type StackCertificates } from './certs.js';
import {
  forgetOnExit,
  httpOk,
  httpsOk,
  launchDaemon,
  removeOnExit,
  tlsHandshakeOk,
  type Daemon,
} from './processes.js';
import { startTokenIssuer, type RunningTokenIssuer, type TokenIssuer } from './token-issuer.js';

/** Which key service notary-server uses: notary-signer over gRPC (ECDSA keys) or its own (ed25519). */
export type TrustServiceMode = 'remote' | 'local';

/** How to start a stack; every field is optional. */
export interface StackOptions {
  /** `remote` (default) runs notary-signer; `local` lets notary-server hold keys itself. */
  readonly trustService?: TrustServiceMode;
  /** `token` puts notary-server behind a token service run by this process; default `none`. */
  readonly auth?: 'none' | 'token';
  /** Start docker-registry too (default true). */
  readonly registry?: boolean;
  /** Use this directory (created if absent, kept on stop) instead of a fresh temporary one. */
  readonly workDir?: string;
  /** With `auth: 'token'`: whether anonymous requests get pull-only tokens (default true). */
  readonly anonymousPull?: boolean;
  /** The credentials the token service accepts; a random password by default. */
  readonly credentials?: { readonly username: string; readonly password: string };
  /** How long each daemon may take to become healthy (20 s by default). */
  readonly startTimeoutMs?: number;
}

/** A daemon of the stack, for logs and for checking that `stop()` really ended it. */
export interface StackProcess {
  readonly name: 'notary-signer' | 'notary-server' | 'docker-registry';
  readonly pid: number;
  readonly port: number;
  readonly logFile: string;
}

/** A running stack. */
export interface NotaryStack {
  /** `https://127.0.0.1:<port>` — notary-server. */
  readonly notaryUrl: string;
  /** `127.0.0.1:<port>` of docker-registry (plain HTTP); throws when started without one. */
  readonly registryHost: string;
  /** The CA file every TLS endpoint of the stack chains to, and its PEM text. */
  readonly caFile: string;
  readonly caPem: string;
  readonly trustService: TrustServiceMode;
  /** Holds configs, logs, certificates and registry storage. */
  readonly workDir: string;
  /** The token service, when started with `auth: 'token'`. */
  readonly token?: TokenIssuer;
  /** All key material of the stack (the CA key too, for tests that mint certificates). */
  readonly certificates: StackCertificates;
  /** The daemons this stack started. */
  readonly processes: readonly StackProcess[];
  /** A fresh directory inside the work dir (a notary trust dir, say); removed with the stack. */
  tempDir(prefix: string): Promise<string>;
  /** Kills only the processes it started and removes its temporary work dir; idempotent. */
  stop(): Promise<void>;
}

/** What notary-server's token challenge names as `service`. */
const TOKEN_SERVICE = 'notary-server';
/** The `iss` notary-server is configured to accept. */
const TOKEN_ISSUER = 'kpack-trust-test-token-issuer';

/** Writes a JSON config file and returns its path. */
async function writeJson(file: string, value: unknown): Promise<string> {
  await writeFile(file, `${JSON.stringify(value, null, 2)}\n`);
  return file;
}

/** Starts a stack; on any failure everything already started is stopped again. */
export async function startStack(options: StackOptions = {}): Promise<NotaryStack> {
  const trustService = options.trustService ?? 'remote';
  const withRegistry = options.registry ?? true;
  const binaries = await ensureBinaries();

  const ownsWorkDir = options.workDir === undefined;
  const workDir = options.workDir ?? (await mkdtemp(join(tmpdir(), 'kpack-trust-stack-')));
  await mkdir(workDir, { recursive: true });
  if (ownsWorkDir) removeOnExit(workDir);

  const daemons: Daemon[] = [];
  let tokenIssuer: RunningTokenIssuer | undefined;
  const stopAll = async (): Promise<void> => {
    await Promise.all(daemons.map((d) => d.stop()));
    await tokenIssuer?.close();
  };
  const timeouts =
    options.startTimeoutMs === undefined ? {} : { timeoutMs: options.startTimeoutMs };

  try {
    const certificates = await createCertificates(join(workDir, 'certs'));
    const ca = certificates.caPem;

    if (options.auth === 'token') {
      tokenIssuer = await startTokenIssuer({
        tlsCertFile: certificates.server.certFile,
        tlsKeyFile: certificates.server.keyFile,
        signingCertFile: certificates.tokenSigner.certFile,
        signingKeyFile: certificates.tokenSigner.keyFile,
        service: TOKEN_SERVICE,
        issuer: TOKEN_ISSUER,
        username: options.credentials?.username ?? 'kpack-trust-tester',
        password: options.credentials?.password ?? randomBytes(12).toString('hex'),
        anonymousPull: options.anonymousPull ?? true,
      });
    }

    const startSigner = async (): Promise<Daemon | undefined> => {
      if (trustService !== 'remote') return undefined;
      const [clientCert, clientKey] = await Promise.all([
        readFile(certificates.signerClient.certFile, 'utf8'),
        readFile(certificates.signerClient.keyFile, 'utf8'),
      ]);
      const signer = await launchDaemon({
        name: 'notary-signer',
        binary: binaries['notary-signer'],
        workDir,
        ...timeouts,
        prepare: async (port) => {
          const config = await writeJson(join(workDir, 'notary-signer.json'), {
            server: {
              grpc_addr: `127.0.0.1:${port}`,
              tls_cert_file: certificates.signer.certFile,
              tls_key_file: certificates.signer.keyFile,
              // Mutual TLS: only holders of a CA-signed client certificate may ask for signatures.
              client_ca_file: certificates.caFile,
            },
            storage: { backend: 'memory' },
            logging: { level: 'info' },
          });
          return ['-config', config];
        },
        // gRPC has no plain health URL; a completed mutual-TLS handshake means it is serving.
        probe: (port) =>
          tlsHandshakeOk(port, { ca, cert: clientCert, key: clientKey, ALPNProtocols: ['h2'] }),
      });
      daemons.push(signer);
      return signer;
    };

    const startServer = async (signer: Daemon | undefined): Promise<Daemon> => {
      const trust =
        signer === undefined
          ? { type: 'local' }
          : {
              type: 'remote',
              hostname: '127.0.0.1',
              port: String(signer.port),
              key_algorithm: 'ecdsa',
              tls_ca_file: certificates.caFile,
              tls_client_cert: certificates.signerClient.certFile,
              tls_client_key: certificates.signerClient.keyFile,
            };
      const auth =
        tokenIssuer === undefined
          ? {}
          : {
              auth: {
                type: 'token',
                options: {
                  realm: tokenIssuer.issuer.realm,
                  service: tokenIssuer.issuer.service,
                  issuer: tokenIssuer.issuer.issuer,
                  rootcertbundle: certificates.caFile,
                },
              },
            };
      const server = await launchDaemon({
        name: 'notary-server',
        binary: binaries['notary-server'],
        workDir,
        ...timeouts,
        prepare: async (port) => {
          const config = await writeJson(join(workDir, 'notary-server.json'), {
            server: {
              http_addr: `127.0.0.1:${port}`,
              tls_cert_file: certificates.server.certFile,
              tls_key_file: certificates.server.keyFile,
            },
            trust_service: trust,
            storage: { backend: 'memory' },
            logging: { level: 'info' },
            ...auth,
          });
          return ['-config', config];
        },
        probe: (port) => httpsOk(`https://127.0.0.1:${port}/_notary_server/health`, ca),
      });
      daemons.push(server);
      return server;
    };

    const startRegistry = async (): Promise<Daemon | undefined> => {
      if (!withRegistry) return undefined;
      const storage = join(workDir, 'registry-data');
      await mkdir(storage, { recursive: true });
      const registry = await launchDaemon({
        name: 'docker-registry',
        binary: binaries['docker-registry'],
        workDir,
        ...timeouts,
        prepare: async (port) => {
          const config = join(workDir, 'registry.yml');
          // JSON strings are valid YAML scalars, which keeps odd temp paths safe.
          await writeFile(
            config,
            [
              'version: 0.1',
              'log:',
              '  level: info',
              '  formatter: text',
              'storage:',
              '  filesystem:',
              `    rootdirectory: ${JSON.stringify(storage)}`,
              '  delete:',
              '    enabled: true',
              '  maintenance:',
              '    uploadpurging:',
              '      enabled: false',
              'http:',
              `  addr: ${JSON.stringify(`127.0.0.1:${port}`)}`,
              // A fixed secret silences the "No HTTP secret provided" warning.
              `  secret: ${JSON.stringify(randomBytes(16).toString('hex'))}`,
              '',
            ].join('\n'),
          );
          return ['serve', config];
        },
        probe: (port) => httpOk(`http://127.0.0.1:${port}/v2/`),
      });
      daemons.push(registry);
      return registry;
    };

    // The registry starts alongside the signer → server chain; allSettled so that a failure on
    // one side still lets the other side finish starting and be stopped, never leaked.
    const [serverResult, registryResult] = await Promise.allSettled([
      startSigner().then(startServer),
      startRegistry(),
    ]);
    if (serverResult.status === 'rejected') throw serverResult.reason;
    if (registryResult.status === 'rejected') throw registryResult.reason;
    const server = serverResult.value;
    const registry = registryResult.value;

    const processes: StackProcess[] = daemons.map((d) => ({
      name: d.name as StackProcess['name'],
      pid: d.pid,
      port: d.port,
      logFile: d.logFile,
    }));
    let stopping: Promise<void> | undefined;
    const stack: NotaryStack = {
      notaryUrl: `https://127.0.0.1:${server.port}`,
      get registryHost(): string {
        if (registry === undefined) throw new Error('this stack was started without a registry');
        return `127.0.0.1:${registry.port}`;
      },
      caFile: certificates.caFile,
      caPem: certificates.caPem,
      trustService,
      workDir,
      ...(tokenIssuer === undefined ? {} : { token: tokenIssuer.issuer }),
      certificates,
      processes,
      tempDir: async (prefix) => {
        if (stopping !== undefined) throw new Error('the stack has been stopped');
        return mkdtemp(join(workDir, `${prefix.replace(/[^A-Za-z0-9._-]/g, '_')}-`));
      },
      stop: () => {
        stopping ??= (async () => {
          await stopAll();
          if (ownsWorkDir) {
            await rm(workDir, { recursive: true, force: true });
            forgetOnExit(workDir);
          }
        })();
        return stopping;
      },
    };
    return Object.freeze(stack);
  } catch (error) {
    await stopAll();
    // Kept for its logs; the error quotes their tails already.
    forgetOnExit(workDir);
    const kept = ownsWorkDir ? ` (work dir kept for its logs: ${workDir})` : '';
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`could not start the notary stack${kept}: ${message}`, { cause: error });
  }
}
