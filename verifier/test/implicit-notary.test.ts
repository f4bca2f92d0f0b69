/**
 * Notary servers the pod's author chooses: a rule whose glob lets any registry through maps an
 * unconfigured `host:port` to `https://host:port`. Their clients and metric series stay bounded
 * however many hosts are named; their failures are definite denials even under `failure: error`;
 * and no denial tells the author more than "no trust data" — not whether the port was closed,
 * filtered, plain HTTP, TLS or an HTTP error — while the log keeps the detail. Configured servers'
 * failures name their class, never the transport error.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { TrustError, isTrustError, type MetadataFetcher } from '@kpack-trust/common';
import type { FixtureRepository, MemoryFetcher } from '@kpack-trust/common/testing';
import { createJsonLogger, DecisionLog, combineObservers } from '../src/http/logger.js';
import { VerifierMetrics } from '../src/http/metrics.js';
import { ImagePolicyEngine, NO_TRUST_DATA } from '../src/policy/engine.js';
import {
  DEFAULT_MAX_IMPLICIT_CLIENTS,
  httpFetcherFactory,
  type ClosableFetcher,
  type FetcherFactory,
} from '../src/trust/notary-clients.js';
import {
  ControlledFetcher,
  GUN,
  IMAGE,
  NOTARY,
  NOW,
  PREAMBLE,
  RecordingObserver,
  configFrom,
  engineWith,
  pod,
  signedRepository,
  unreachable,
} from './support/engine.js';
import { createAuthority } from './support/tls.js';

/** A config pinning `repo`'s root for every image, so any host:port the pod names is verified. */
function anyRegistryConfig(repo: FixtureRepository, top = ''): ReturnType<typeof configFrom> {
  return configFrom(`${PREAMBLE}
${top}
rules:
  - images: "**"
    trust: { rootKeys: ["${repo.rootKeys[0]?.publicKey.canonicalId ?? ''}"] }
`);
}

/** The i-th distinct loopback host:port (127.0.a.b:1; nothing listens on port 1). */
function host(i: number): string {
  return `127.0.${Math.floor(i / 254)}.${(i % 254) + 1}:1`;
}

/** The one reason every failure to get trust data from an unconfigured server gets. */
function noTrustData(server: string, gun: string): string {
  return `no trust data for ${gun} from notary ${server} (not signed there, or the server did not serve it)`;
}

/** A factory whose fetchers fail with `error`, counting clients made and closed. */
function countingFactory(
  fail: (server: string) => Error,
  inner?: MetadataFetcher,
): { factory: FetcherFactory; made: string[]; closed: string[] } {
  const made: string[] = [];
  const closed: string[] = [];
  const factory: FetcherFactory = (endpoint) => {
    made.push(endpoint.server);
    return {
      fetchMetadata: (gun, request) =>
        endpoint.server === NOTARY && inner !== undefined
          ? inner.fetchMetadata(gun, request)
          : Promise.reject(fail(endpoint.server)),
      close: () => closed.push(endpoint.server),
    };
  };
  return { factory, made, closed };
}

/** Lines of the text exposition that are samples (no comments, no blanks). */
async function sampleLines(metrics: VerifierMetrics): Promise<string[]> {
  const { body } = await metrics.exposition();
  return body.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}

describe('notary servers not named in the config', () => {
  let repo: FixtureRepository;
  let fetcher: MemoryFetcher;

  beforeEach(async () => {
    ({ repo, fetcher } = await signedRepository());
  });

  describe('bounded state', () => {
    it('6,000 distinct host:port images keep at most the cap of clients and a fixed set of metric lines', async () => {
      const { factory, made, closed } = countingFactory((server) =>
        unreachable(`${server}/v2/x/_trust/tuf/root.json`),
      );
      const metrics = new VerifierMetrics({ defaultMetrics: false, notaryServers: [NOTARY] });
      const engine = new ImagePolicyEngine({
        config: anyRegistryConfig(repo),
        fetcherFor: factory,
        now: () => NOW,
        observer: metrics,
      });
      const review = async (from: number, to: number): Promise<void> => {
        for (let i = from; i < to; i++) {
          const status = await engine.review(pod([`${host(i)}/team/app:v1`]));
          assert.equal(status.allowed, false);
        }
      };
      await review(0, 10);
      const afterTen = await sampleLines(metrics);
      await review(10, 6000);
      const afterAll = await sampleLines(metrics);

      const implicit = (servers: string[]): number => servers.filter((s) => s !== NOTARY).length;
      assert.equal(implicit(made), 6000, 'each host was asked');
      assert.equal(implicit(made) - implicit(closed), DEFAULT_MAX_IMPLICIT_CLIENTS);
      assert.deepEqual(engine.notarySources.implicitStats(), {
        sources: DEFAULT_MAX_IMPLICIT_CLIENTS,
        openClients: DEFAULT_MAX_IMPLICIT_CLIENTS,
      });
      assert.equal(afterAll.length, afterTen.length, 'no metric line per host');
      const fetchLines = afterAll.filter((l) => l.includes('notary_fetch'));
      // 12 buckets + +Inf + sum + count of the duration histogram, one error counter.
      assert.equal(fetchLines.length, 16);
      assert.ok(
        fetchLines.every((l) => l.includes('server="implicit"')),
        fetchLines.join('\n'),
      );
      assert.ok(
        afterAll.includes(
          'kpack_trust_verifier_notary_fetch_errors_total{server="implicit",code="HTTP_UNREACHABLE"} 6000',
        ),
      );
      await engine.close();
      assert.equal(implicit(closed), 6000, 'close() closes the clients still pooled');
    });

    it('evicts the least recently used client, and a memoised route of an evicted host asks the pool again', async () => {
      const { factory, made, closed } = countingFactory((server) =>
        unreachable(`${server}/v2/x/_trust/tuf/root.json`),
      );
      const engine = new ImagePolicyEngine({
        config: anyRegistryConfig(repo),
        fetcherFor: factory,
        now: () => NOW,
        maxImplicitClients: 3,
      });
      for (const i of [0, 1, 2, 0, 3]) await engine.review(pod([`${host(i)}/a/b:v1`]));
      // Host 1 was the least recently used when host 3 came.
      assert.deepEqual(closed, [`https://${host(1)}`]);
      await engine.review(pod([`${host(1)}/a/b:v1`]));
      assert.equal(made.filter((s) => s === `https://${host(1)}`).length, 2);
      assert.deepEqual(closed, [`https://${host(1)}`, `https://${host(2)}`]);
      assert.equal(made.length - closed.length, 3 + 1, 'three implicit, one configured');
      await engine.close();
    });

    it('closes an evicted client only once its requests have ended', async () => {
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const made: string[] = [];
      const closed: string[] = [];
      const engine = new ImagePolicyEngine({
        config: anyRegistryConfig(repo),
        now: () => NOW,
        maxImplicitClients: 1,
        fetcherFor: (endpoint): ClosableFetcher => {
          made.push(endpoint.server);
          return {
            fetchMetadata: async () => {
              if (endpoint.server === `https://${host(0)}`) await gate;
              throw unreachable(endpoint.server);
            },
            close: () => closed.push(endpoint.server),
          };
        },
      });
      const slow = engine.review(pod([`${host(0)}/a/b:v1`]));
      await new Promise((r) => setImmediate(r));
      await engine.review(pod([`${host(1)}/a/b:v1`]));
      assert.deepEqual(closed, [], 'host 0 is evicted but busy');
      assert.deepEqual(engine.notarySources.implicitStats(), { sources: 1, openClients: 2 });
      release();
      assert.equal((await slow).allowed, false);
      assert.deepEqual(closed, [`https://${host(0)}`]);
      assert.deepEqual(engine.notarySources.implicitStats(), { sources: 1, openClients: 1 });
      await engine.close();
    });
    it('fails a request at once when too many to unconfigured servers are under way', async () => {
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      let asked = 0;
      const engine = new ImagePolicyEngine({
        config: anyRegistryConfig(repo),
        now: () => NOW,
        maxImplicitClients: 1,
        maxImplicitRequests: 2,
        fetcherFor: (endpoint): ClosableFetcher => ({
          fetchMetadata: async () => {
            asked += 1;
            await gate;
            throw unreachable(endpoint.server);
          },
        }),
      });
      // Two hosts that accept and never answer hold both slots (and, evicted, their clients).
      const held = [0, 1].map((i) => engine.review(pod([`${host(i)}/a/b:v1`])));
      await new Promise((r) => setImmediate(r));
      const observer = new RecordingObserver();
      const third = await new ImagePolicyEngine({
        config: anyRegistryConfig(repo),
        now: () => NOW,
        observer,
      }).decide(pod([`${host(2)}/a/b:v1`]));
      assert.equal(third.images[0]?.code, NO_TRUST_DATA, 'another engine is not affected');
      const refused = await engine.decide(pod([`${host(2)}/a/b:v1`]));
      assert.equal(asked, 2, 'the third host was never asked');
      assert.equal(
        refused.status.reason,
        `${host(2)}/a/b:v1: ${noTrustData(`https://${host(2)}`, `${host(2)}/a/b`)}`,
      );
      assert.equal(
        refused.images[0]?.detail,
        `notary https://${host(2)}: 2 requests to notary servers not named in the config are already under way`,
      );
      assert.deepEqual(engine.notarySources.implicitStats(), { sources: 1, openClients: 2 });
      release();
      await Promise.all(held);
      // Both evicted clients closed once idle; the refused host never got one.
      assert.deepEqual(engine.notarySources.implicitStats(), { sources: 1, openClients: 0 });
      await engine.close();
    });
  });

  describe('failure: error applies to configured servers only', () => {
    it('denies a pod that mixes signed images with an unreachable host of its own, never errors', async () => {
      const { factory } = countingFactory(
        (server) => unreachable(`${server}/v2/x/_trust/tuf/root.json`),
        fetcher,
      );
      const engine = new ImagePolicyEngine({
        config: anyRegistryConfig(repo, 'failure: error'),
        fetcherFor: factory,
        now: () => NOW,
      });
      const attacker = `${host(7)}/evil/app:v1`;
      const decision = await engine.decide(pod([IMAGE, attacker, IMAGE]));
      assert.deepEqual(decision.status, {
        allowed: false,
        reason: `${attacker}: ${noTrustData(`https://${host(7)}`, `${host(7)}/evil/app`)}`,
        auditAnnotations: {
          'image-0-digest': decision.images[0]?.digest ?? '',
          'image-0-role': 'targets',
          'image-0-rule': '**',
          'image-1-rule': '**',
          'image-2-digest': decision.images[0]?.digest ?? '',
          'image-2-role': 'targets',
          'image-2-rule': '**',
        },
      });
      assert.equal(decision.images[0]?.result, 'allowed');
      assert.equal(decision.images[1]?.unavailable, undefined);
      // Alone, too: a definite denial, not REVIEW_FAILED.
      const alone = await engine.review(pod([attacker]));
      assert.equal(alone.allowed, false);
    });

    it('still answers an error for an outage of a configured server, and only then', async () => {
      const down = new ControlledFetcher(fetcher);
      down.failWith = unreachable();
      const { engine } = engineWith(anyRegistryConfig(repo, 'failure: error'), down);
      await assert.rejects(engine.review(pod([IMAGE])), (e: unknown) =>
        isTrustError(e, 'REVIEW_FAILED'),
      );
    });

    it('denies answers about one GUN on a configured server: auth refused, 4xx, garbage, oversized', async () => {
      const cases: [TrustError, string, string][] = [
        [
          new TrustError(
            'AUTH_FAILED',
            { url: 'u', status: 401, problem: 'p' },
            'Authentication at u failed: p.',
          ),
          `notary ${NOTARY} refused the verifier access to ${GUN} (authentication failed)`,
          'AUTH_FAILED',
        ],
        [
          new TrustError(
            'HTTP_STATUS',
            { url: 'u', status: 400, serverCode: '' },
            'GET u answered HTTP 400.',
          ),
          `notary ${NOTARY} refused trust data for ${GUN} (HTTP 400)`,
          'HTTP_STATUS',
        ],
        [
          new TrustError(
            'METADATA_MALFORMED',
            { role: 'root', field: '$', problem: 'is not JSON' },
            'root: $ is not JSON.',
          ),
          `trust data for ${GUN} from notary ${NOTARY} failed verification: root: $ is not JSON`,
          'METADATA_MALFORMED',
        ],
        [
          new TrustError(
            'DOWNLOAD_TOO_LARGE',
            { role: 'timestamp', limit: 1, url: 'u' },
            'GET u: the answer for timestamp exceeds 1 bytes.',
          ),
          `trust data for ${GUN} from notary ${NOTARY} failed verification: GET u: the answer for timestamp exceeds 1 bytes`,
          'DOWNLOAD_TOO_LARGE',
        ],
      ];
      for (const [error, reason, code] of cases) {
        const broken = new ControlledFetcher(fetcher);
        broken.failWith = error;
        const { engine } = engineWith(anyRegistryConfig(repo, 'failure: error'), broken);
        const decision = await engine.decide(pod([IMAGE]));
        assert.equal(decision.status.reason, `${IMAGE}: ${reason}`);
        assert.equal(decision.images[0]?.code, code);
        assert.equal(decision.images[0]?.unavailable, undefined);
      }
    });
  });

  describe('reasons name the class of failure, the log the detail', () => {
    /** The transport errors NotaryHttpClient raises, each with its socket error as the cause. */
    const transport = (url: string, problem: string, cause?: Error): TrustError =>
      new TrustError(
        'HTTP_UNREACHABLE',
        { url, problem },
        `GET ${url} failed: ${problem}.`,
        cause === undefined ? undefined : { cause },
      );
    const socketError = (code: string, message: string): Error =>
      Object.assign(new Error(message), { code });
    const failures = (url: string): [string, Error][] => [
      [
        'refused',
        transport(
          url,
          'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:2',
          socketError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:2'),
        ),
      ],
      ['timed out', transport(url, 'no complete answer within 10000 ms')],
      [
        'plain HTTP',
        transport(
          url,
          'ERR_SSL_WRONG_VERSION_NUMBER: 40E8:error:0A00010B:SSL routines:ssl3_get_record:wrong version number',
          socketError(
            'ERR_SSL_WRONG_VERSION_NUMBER',
            '40E8:error:0A00010B:SSL routines:ssl3_get_record:wrong version number',
          ),
        ),
      ],
      [
        'untrusted certificate',
        transport(
          url,
          "TLS: the server's certificate is not trusted (DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate)",
          socketError('DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate'),
        ),
      ],
      [
        'DNS',
        transport(
          url,
          'ENOTFOUND: getaddrinfo ENOTFOUND internal.corp',
          socketError('ENOTFOUND', 'getaddrinfo ENOTFOUND internal.corp'),
        ),
      ],
      [
        '503',
        new TrustError(
          'HTTP_STATUS',
          { url, status: 503, serverCode: '' },
          `GET ${url} answered HTTP 503.`,
        ),
      ],
      [
        '404',
        new TrustError(
          'HTTP_STATUS',
          { url, status: 404, serverCode: '' },
          `GET ${url} answered HTTP 404.`,
        ),
      ],
      [
        'garbage',
        new TrustError(
          'METADATA_MALFORMED',
          { role: 'root', field: '$', problem: 'is not JSON' },
          'root: $ is not JSON.',
        ),
      ],
      ['a bug', new RangeError('Invalid array length')],
    ];

    it('gives every failure of an unconfigured server one reason, and logs the detail', async () => {
      const server = `https://${host(3)}`;
      const gun = `${host(3)}/team/app`;
      const image = `${gun}:v1`;
      const url = `${server}/v2/${gun}/_trust/tuf/root.json`;
      for (const [name, error] of failures(url)) {
        const logged: string[] = [];
        const observer = new RecordingObserver();
        const engine = new ImagePolicyEngine({
          config: anyRegistryConfig(repo),
          now: () => NOW,
          fetcherFor: () => ({ fetchMetadata: () => Promise.reject(error) }),
          observer: combineObservers(
            observer,
            new DecisionLog(createJsonLogger({ write: (l) => logged.push(l) })),
          ),
        });
        const decision = await engine.decide(pod([image]));
        assert.equal(decision.status.reason, `${image}: ${noTrustData(server, gun)}`, name);
        assert.equal(decision.images[0]?.code, NO_TRUST_DATA, name);
        assert.equal(decision.images[0]?.unavailable, undefined, name);
        const line = JSON.parse(logged.find((l) => l.includes('image.decision')) ?? '{}') as {
          reason?: string;
          detail?: string;
        };
        assert.equal(line.reason, noTrustData(server, gun), name);
        assert.equal(line.detail, error.message.replace(/\.$/, ''), name);
        await engine.close();
      }
    });

    it('names the class for a configured server, and never the transport error', async () => {
      const url = `${NOTARY}/v2/${GUN}/_trust/tuf/root.json`;
      const classes: Record<string, string> = {
        refused: `notary ${NOTARY} is unavailable for ${GUN} (connection failed)`,
        'timed out': `notary ${NOTARY} is unavailable for ${GUN} (timed out)`,
        'plain HTTP': `notary ${NOTARY} is unavailable for ${GUN} (TLS handshake failed)`,
        'untrusted certificate': `notary ${NOTARY} is unavailable for ${GUN} (TLS handshake failed)`,
        DNS: `notary ${NOTARY} is unavailable for ${GUN} (host name not resolved)`,
        '503': `notary ${NOTARY} is unavailable for ${GUN} (HTTP 503)`,
        '404': `not signed in notary ${NOTARY} (no trust data for ${GUN})`,
        garbage: `trust data for ${GUN} from notary ${NOTARY} failed verification: root: $ is not JSON`,
        'a bug': `internal error while checking notary ${NOTARY} for ${GUN}`,
      };
      for (const [name, error] of failures(url)) {
        const observer = new RecordingObserver();
        const engine = new ImagePolicyEngine({
          config: anyRegistryConfig(repo, 'detectionMode: true'),
          fetcherFor: () => ({ fetchMetadata: () => Promise.reject(error) }),
          now: () => NOW,
          observer,
        });
        const decision = await engine.decide(pod([IMAGE]));
        const reason = classes[name];
        assert.equal(decision.images[0]?.reason, reason, name);
        // Detection mode admits and writes the same reason into the audit log, no more.
        assert.equal(decision.status.auditAnnotations?.['image-0-would-deny'], reason, name);
        assert.equal(observer.images[0]?.reason, reason, name);
      }
    });
  });

  describe('over real sockets', () => {
    let closedPort: number;
    let plain: http.Server;
    let untrusted: https.Server;

    before(async () => {
      const probe = net.createServer();
      probe.listen(0, '127.0.0.1');
      await once(probe, 'listening');
      closedPort = (probe.address() as net.AddressInfo).port;
      probe.close();
      await once(probe, 'close');
      plain = http.createServer((_req, res) => res.end('not notary'));
      plain.listen(0, '127.0.0.1');
      const ca = await createAuthority('not a public CA');
      untrusted = https.createServer(await ca.issue('127.0.0.1', 'server'), (_req, res) =>
        res.end('{}'),
      );
      untrusted.listen(0, '127.0.0.1');
      await Promise.all([once(plain, 'listening'), once(untrusted, 'listening')]);
    });

    after(() => {
      plain.close();
      untrusted.close();
    });

    it('a closed port, a plain HTTP port and a TLS port with an unknown CA read the same', async () => {
      const port = (s: net.Server): number => (s.address() as net.AddressInfo).port;
      const logged: string[] = [];
      const engine = new ImagePolicyEngine({
        config: anyRegistryConfig(repo),
        fetcherFor: httpFetcherFactory,
        observer: new DecisionLog(createJsonLogger({ write: (l) => logged.push(l) })),
      });
      const hosts = [closedPort, port(plain), port(untrusted)].map((p) => `127.0.0.1:${p}`);
      const decision = await engine.decide(pod(hosts.map((h) => `${h}/scan/me:v1`)));
      assert.equal(
        decision.status.reason,
        hosts
          .map((h) => `${h}/scan/me:v1: ${noTrustData(`https://${h}`, `${h}/scan/me`)}`)
          .join('; '),
      );
      assert.ok(!/ECONNREFUSED|SSL|TLS|certificate/i.test(decision.status.reason ?? ''));
      // The operator still sees which is which.
      const details = logged
        .map((l) => (JSON.parse(l) as { detail?: string }).detail ?? '')
        .filter((d) => d !== '');
      assert.equal(details.length, 3);
      assert.match(details.join('\n'), /ECONNREFUSED/);
      assert.match(details.join('\n'), /wrong version number|EPROTO/);
      assert.match(details.join('\n'), /certificate is not trusted/);
      await engine.close();
    });
  });
});
