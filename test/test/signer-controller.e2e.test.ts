/**
 * `kpack-trust-signer controller` end to end on loopback: the real kube-apiserver + etcd (built
 * from their Go modules, test/src/kube/control-plane.ts) serving kpack's own CRDs (read from
 * kpack's Go module at the pinned release), the real notary stack, images pushed with skopeo, the
 * tests' real kubectl creating Images and Builds and patching a Build's status as kpack would, and
 * the controller as separate processes. Results are read back with kubectl and a fresh `notary`
 * CLI; publishes are counted in notary-server's own request log.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import {
  type ControlPlane,
  eventually,
  initRepo,
  kpackModuleDir,
  lookup,
  type NotaryStack,
  type PushedImage,
  pushImage,
  startControlPlane,
  startStack,
} from '../src/index.js';

const MAIN = fileURLToPath(new URL('main.js', import.meta.resolve('@kpack-trust/signer')));
const CONTROLLER_NS = 'kpack-trust-system';
const TEAM = 'team';
/** etcd compaction by the apiserver itself, often enough to compact a watch's version away within the test. */
const COMPACTION_S = 2;
const APISERVER_FLAGS = [`--etcd-compaction-interval=${COMPACTION_S}s`];

interface ControllerProcess {
  readonly identity: string;
  readonly child: ChildProcess;
  readonly logs: Record<string, unknown>[];
  readonly exited: Promise<number | null>;
}

describe('kpack-trust-signer controller against the real apiserver', () => {
  let stack: NotaryStack;
  let cp: ControlPlane;
  const controllers: ControllerProcess[] = [];

  const kubectl = async (args: readonly string[], input?: string): Promise<string> => {
    const result = await cp.kubectl(args, input === undefined ? {} : { input });
    assert.equal(result.code, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };

  const startController = (identity: string, extra: readonly string[] = []): ControllerProcess => {
    const child = spawn(
      process.execPath,
      [
        MAIN,
        'controller',
        '--kubeconfig',
        cp.kubeconfigPath,
        '--namespace',
        CONTROLLER_NS,
        '--identity',
        identity,
        '--notary-ca',
        stack.caFile,
        // Every notary the Images below name: the loopback stack, the token-auth stack, and the
        // closed port of the "notary unreachable" case.
        ...['--allow-notary-url', stack.notaryUrl, '--allow-notary-url', 'https://127.0.0.1:1'],
        '--listen',
        '127.0.0.1:0',
        '--lease-duration',
        '4',
        '--renew-deadline',
        '3',
        '--retry-period',
        '1',
        ...extra,
      ],
      {
        env: { PATH: process.env['PATH'] ?? '', HOME: stack.workDir },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const logs: Record<string, unknown>[] = [];
    let pending = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }
    });
    const stderr: string[] = [];
    child.stderr?.on('data', (c: Buffer) => stderr.push(c.toString()));
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => {
        resolve(code);
      }),
    );
    const proc = { identity, child, logs, exited };
    controllers.push(proc);
    return proc;
  };

  const stopController = async (proc: ControllerProcess, signal: NodeJS.Signals): Promise<void> => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill(signal);
    await proc.exited;
  };

  const leader = (proc: ControllerProcess): boolean =>
    proc.logs.some((l) => l['message'] === 'leader election: leading');

  /** Creates an Image opted in to signing (`annotations` added to, or overriding, the opt-in). */
  const applyImage = async (image: {
    name: string;
    namespace: string;
    tag: string;
    annotations: Record<string, string>;
  }): Promise<void> => {
    await kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'kpack.io/v1alpha2',
        kind: 'Image',
        metadata: {
          name: image.name,
          namespace: image.namespace,
          annotations: { 'kpack-trust.io/sign': 'true', ...image.annotations },
        },
        spec: { tag: image.tag, serviceAccountName: 'default' },
      }),
    );
  };

  /** The uid of an Image, for a Build's ownerReference. */
  const imageUid = async (name: string, namespace = TEAM): Promise<string> =>
    (
      await kubectl([
        'get',
        'image.kpack.io',
        name,
        '-n',
        namespace,
        '-o',
        'jsonpath={.metadata.uid}',
      ])
    ).trim();

  /** Creates a Build owned by Image `image` (its controller ownerReference), as kpack does. */
  const applyBuild = async (build: {
    name: string;
    namespace: string;
    image: string;
    uid: string;
    tags: string[];
    labels?: Record<string, string>;
    serviceAccountName?: string;
  }): Promise<void> => {
    await kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'kpack.io/v1alpha2',
        kind: 'Build',
        metadata: {
          name: build.name,
          namespace: build.namespace,
          ...(build.labels === undefined ? {} : { labels: build.labels }),
          ownerReferences: [
            {
              apiVersion: 'kpack.io/v1alpha2',
              kind: 'Image',
              name: build.image,
              uid: build.uid,
              controller: true,
            },
          ],
        },
        spec: {
          tags: build.tags,
          ...(build.serviceAccountName === undefined
            ? {}
            : { serviceAccountName: build.serviceAccountName }),
        },
      }),
    );
  };

  let imageCounter = 0;
  /** Pushes an image and creates an Image plus a Build for it; returns the Build's name and the push. */
  const imageAndBuild = async (
    name: string,
    annotations: Record<string, string>,
    options: {
      tags?: (pushed: PushedImage) => string[];
      notaryUrl?: string;
      serviceAccountName?: string;
      namespace?: string;
      /** The registry repository pushed to and named in spec.tag (default `<namespace>/<name>`). */
      repository?: string;
    } = {},
  ): Promise<{ build: string; pushed: PushedImage }> => {
    imageCounter++;
    const namespace = options.namespace ?? TEAM;
    const pushed = await pushImage(stack, options.repository ?? `${namespace}/${name}`, 'v1', {
      content: `controller e2e ${name} ${imageCounter} ${Date.now()}\n`,
    });
    await applyImage({
      name,
      namespace,
      tag: `${pushed.gun}:v1`,
      annotations: {
        'kpack-trust.io/notary-url': options.notaryUrl ?? stack.notaryUrl,
        ...annotations,
      },
    });
    const build = `${name}-build-${imageCounter}`;
    await applyBuild({
      name: build,
      namespace,
      image: name,
      uid: await imageUid(name, namespace),
      labels: { 'image.kpack.io/image': name },
      tags: options.tags?.(pushed) ?? [`${pushed.gun}:v1`, `${pushed.gun}:latest`],
      ...(options.serviceAccountName === undefined
        ? {}
        : { serviceAccountName: options.serviceAccountName }),
    });
    return { build, pushed };
  };

  /** kpack's reconciler marking the Build finished: status subresource, as kpack writes it. */
  const succeed = async (build: string, latestImage: string, namespace = TEAM): Promise<void> => {
    await kubectl([
      'patch',
      'build.kpack.io',
      build,
      '-n',
      namespace,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({
        status: {
          conditions: [
            { type: 'Succeeded', status: 'True', lastTransitionTime: new Date().toISOString() },
          ],
          latestImage,
        },
      }),
    ]);
  };
  /** A new opted-in Image and its Build, which has succeeded with the image pushed for it. */
  const finishedBuild = async (
    ...args: Parameters<typeof imageAndBuild>
  ): Promise<{ build: string; gun: string }> => {
    const { build, pushed } = await imageAndBuild(...args);
    await succeed(build, `${pushed.gun}@${pushed.digest}`);
    return { build, gun: pushed.gun };
  };

  const annotationsOf = async (
    build: string,
    namespace = TEAM,
  ): Promise<Record<string, string>> => {
    const json = JSON.parse(
      await kubectl(['get', 'build.kpack.io', build, '-n', namespace, '-o', 'json']),
    ) as {
      metadata: { annotations?: Record<string, string> };
    };
    return json.metadata.annotations ?? {};
  };

  const recorded = (
    build: string,
    key: string,
    namespace = TEAM,
  ): Promise<Record<string, string>> =>
    eventually(`${key} on Build ${build}`, async () => {
      const a = await annotationsOf(build, namespace);
      return a[key] === undefined ? undefined : a;
    });

  const eventsFor = async (
    kind: string,
    name: string,
    namespace = TEAM,
  ): Promise<{ reason: string; message: string }[]> => {
    const json = JSON.parse(
      await kubectl([
        'get',
        'events',
        '-n',
        namespace,
        '--field-selector',
        `involvedObject.kind=${kind},involvedObject.name=${name}`,
        '-o',
        'json',
      ]),
    ) as { items: { reason: string; message: string }[] };
    return json.items;
  };

  /** Accepted publishes into a GUN: notary-server logs `updated <gun> to timestamp version N` for each. */
  const publishesOf = async (gun: string, on: NotaryStack = stack): Promise<number> => {
    const server = on.processes.find((p) => p.name === 'notary-server');
    assert.ok(server);
    const log = await readFile(server.logFile, 'utf8');
    return log
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg?: string; 'http.request.method'?: string })
      .filter(
        (entry) =>
          entry['http.request.method'] === 'POST' &&
          (entry.msg ?? '').startsWith(`updated ${gun} to timestamp version `),
      ).length;
  };

  before(async () => {
    stack = await startStack();
    cp = await startControlPlane({ controllerManager: false, apiserverFlags: APISERVER_FLAGS });
    const kpack = await kpackModuleDir();
    for (const crd of ['build.yaml', 'image.yaml']) {
      await kubectl(['apply', '-f', join(kpack, 'config', crd)]);
    }
    await kubectl([
      'wait',
      '--for=condition=Established',
      'crd/builds.kpack.io',
      'crd/images.kpack.io',
      '--timeout=60s',
    ]);
    await kubectl(['create', 'namespace', CONTROLLER_NS]);
    await kubectl(['create', 'namespace', TEAM]);
  });

  after(async () => {
    for (const proc of controllers) await stopController(proc, 'SIGKILL');
    await cp?.stop();
    await stack?.stop();
  });

  it('signs a finished Build: annotations, Events on Build and Image, every tag resolvable by notary lookup', async () => {
    const c1 = startController('c1');
    await eventually('c1 to lead', () => Promise.resolve(leader(c1) ? true : undefined));
    const { build, pushed } = await imageAndBuild('app', {});
    await succeed(build, `${pushed.gun}@${pushed.digest}`);

    const started = Date.now();
    const annotations = await recorded(build, 'kpack-trust.io/signed-digest');
    const seconds = (Date.now() - started) / 1000;
    assert.equal(annotations['kpack-trust.io/signed-digest'], pushed.digest);
    assert.equal(
      annotations['kpack-trust.io/signed-tags'],
      `${pushed.gun}:v1,${pushed.gun}:latest`,
    );
    assert.ok(seconds < 15, `signed within ${seconds} s`);
    const rootKeyId = annotations['kpack-trust.io/signed-root-key-id'];
    assert.match(rootKeyId ?? '', /^[0-9a-f]{64}$/);

    assert.deepEqual(
      (await eventsFor('Build', build)).map((e) => e.reason),
      ['Signed'],
    );
    assert.deepEqual(
      (await eventsFor('Image', 'app')).map((e) => e.reason),
      ['Signed'],
    );
    for (const tag of ['v1', 'latest']) {
      const found = await lookup(stack, pushed.gun, tag, await stack.tempDir('trust'));
      assert.equal(`sha256:${found.sha256Hex}`, pushed.digest);
      assert.equal(found.size, pushed.size);
    }

    // A second Build of the same Image reuses the keys.
    const second = await pushImage(stack, 'team/app', 'v2', { content: 'second build\n' });
    const build2 = 'app-build-second';
    await applyBuild({
      name: build2,
      namespace: TEAM,
      image: 'app',
      uid: await imageUid('app'),
      // kpack's first tag of every Build is the Image's spec.tag.
      tags: [`${pushed.gun}:v1`, `${pushed.gun}:v2`],
    });
    await succeed(build2, `${pushed.gun}@${second.digest}`);
    const again = await recorded(build2, 'kpack-trust.io/signed-digest');
    assert.equal(again['kpack-trust.io/signed-root-key-id'], rootKeyId);

    // The keys live only in the controller's namespace.
    const secrets = JSON.parse(
      await kubectl([
        'get',
        'secrets',
        '-A',
        '-l',
        'app.kubernetes.io/managed-by=kpack-trust-signer',
        '-o',
        'json',
      ]),
    ) as { items: { metadata: { namespace: string; name: string } }[] };
    assert.deepEqual(
      secrets.items.map((s) => `${s.metadata.namespace}/${s.metadata.name}`).sort(),
      [`${CONTROLLER_NS}/team.app-root-key`, `${CONTROLLER_NS}/team.app-targets-key`],
    );
    await stopController(c1, 'SIGTERM');
    assert.equal(await c1.exited, 0);
  });

  it('bad input gets a SigningFailed Event and annotation and no publish', async () => {
    const c = startController('bad-input', ['--max-attempts', '2']);
    await eventually('the controller to lead', () => Promise.resolve(leader(c) ? true : undefined));
    let publishedBefore = 0;
    const cases: {
      name: string;
      reason: string;
      setup: () => Promise<{ build: string; gun: string }>;
    }[] = [
      {
        name: 'http notary URL',
        reason: 'ConfigInvalid',
        setup: () =>
          finishedBuild(
            'plain-http',
            {},
            { notaryUrl: stack.notaryUrl.replace('https:', 'http:') },
          ),
      },
      {
        name: 'a notary server the operator did not allow',
        reason: 'ConfigInvalid',
        setup: () =>
          // The stack's server under another name: it would answer, but is not on the list.
          finishedBuild(
            'not-allowed',
            {},
            { notaryUrl: stack.notaryUrl.replace('127.0.0.1', 'localhost') },
          ),
      },
      {
        name: 'tags in two repositories',
        reason: 'BuildInvalid',
        setup: () =>
          finishedBuild(
            'two-repos',
            {},
            {
              tags: (p) => [`${p.gun}:v1`, `${stack.registryHost}/team/elsewhere:v1`],
            },
          ),
      },
      {
        name: "tags in another Image's repository",
        reason: 'BuildInvalid',
        setup: async () => {
          // A Build of an opted-in Image, written by whoever may create Builds, aimed at a
          // repository that is not the Image's spec.tag: its keys must not sign there.
          const victim = await pushImage(stack, 'victim/app', 'v1', {
            content: `victim ${Date.now()}\n`,
          });
          const { build } = await imageAndBuild(
            'wrong-repo',
            {},
            { tags: () => [`${victim.gun}:v1`] },
          );
          await succeed(build, `${victim.gun}@${victim.digest}`);
          return { build, gun: victim.gun };
        },
      },
      {
        name: 'a repository whose keys are not ours',
        reason: 'KeyUnusable',
        setup: async () => {
          const { build, pushed } = await imageAndBuild('not-ours', {});
          // Someone else created the repository with their own root and targets keys.
          await initRepo(stack, pushed.gun, await stack.tempDir('trust'), { serverSnapshot: true });
          publishedBefore = await publishesOf(pushed.gun);
          await succeed(build, `${pushed.gun}@${pushed.digest}`);
          return { build, gun: pushed.gun };
        },
      },
      {
        name: 'notary unreachable',
        reason: 'Unavailable',
        setup: () => finishedBuild('unreachable', {}, { notaryUrl: 'https://127.0.0.1:1' }),
      },
    ];
    for (const testCase of cases) {
      publishedBefore = 0;
      const { build, gun } = await testCase.setup();
      const annotations = await recorded(build, 'kpack-trust.io/signing-error');
      assert.equal(
        annotations['kpack-trust.io/signing-error-reason'],
        testCase.reason,
        testCase.name,
      );
      assert.equal(annotations['kpack-trust.io/signed-digest'], undefined);
      assert.deepEqual(
        (await eventsFor('Build', build)).map((e) => e.reason),
        ['SigningFailed'],
        testCase.name,
      );
      assert.equal(await publishesOf(gun), publishedBefore, testCase.name);
    }
    await stopController(c, 'SIGTERM');
  });

  it('two replicas share one Lease: each Build signed once, and the standby takes over from a killed leader', async () => {
    const a = startController('replica-a');
    const b = startController('replica-b');
    const first = await eventually('a leader', () => Promise.resolve([a, b].find(leader)));
    const standby = first === a ? b : a;
    const builds: { build: string; pushed: PushedImage }[] = [];
    for (let i = 0; i < 4; i++) builds.push(await imageAndBuild(`ha-${i}`, {}));
    await Promise.all(
      builds
        .slice(0, 2)
        .map(({ build, pushed }) => succeed(build, `${pushed.gun}@${pushed.digest}`)),
    );
    await recorded(builds[0]?.build ?? '', 'kpack-trust.io/signed-digest');
    // Kill the leader mid-queue: the other two Builds finish while nobody leads.
    await stopController(first, 'SIGKILL');
    await Promise.all(
      builds.slice(2).map(({ build, pushed }) => succeed(build, `${pushed.gun}@${pushed.digest}`)),
    );
    await eventually(
      'the standby to lead',
      () => Promise.resolve(leader(standby) ? true : undefined),
      30_000,
    );
    for (const { build, pushed } of builds) {
      const annotations = await recorded(build, 'kpack-trust.io/signed-digest');
      assert.equal(annotations['kpack-trust.io/signed-digest'], pushed.digest);
      // One POST creates each repository with the Build's tags; nobody signed it twice.
      assert.equal(await publishesOf(pushed.gun), 1, build);
    }
    const lease = JSON.parse(
      await kubectl([
        'get',
        'lease',
        'kpack-trust-signer-controller',
        '-n',
        CONTROLLER_NS,
        '-o',
        'json',
      ]),
    ) as { spec: { holderIdentity: string; leaseTransitions: number } };
    assert.equal(lease.spec.holderIdentity, standby.identity);
    await stopController(standby, 'SIGTERM');
  });

  it("registry credentials only in the Build's service account's Secret: signed with them; with --build-credentials=controller, AuthFailed", async () => {
    // A second notary stack behind token auth: pushing needs the login the token service knows
    // (anonymous requests get pull only). The images stay in the first stack's registry.
    const login = { username: 'team-builder', password: 'sa-only-password' };
    const authStack = await startStack({ auth: 'token', credentials: login, registry: false });
    try {
      const bundle = join(await stack.tempDir('ca'), 'two-stacks.pem');
      await writeFile(bundle, `${stack.caPem}\n${authStack.caPem}`);
      // What `kubectl create secret docker-registry` writes: a kubernetes.io/dockerconfigjson Secret.
      await kubectl([
        'create',
        'secret',
        'docker-registry',
        'builder-registry',
        '-n',
        TEAM,
        `--docker-server=${stack.registryHost}`,
        `--docker-username=${login.username}`,
        `--docker-password=${login.password}`,
      ]);
      await kubectl(['create', 'serviceaccount', 'builder', '-n', TEAM]);
      await kubectl([
        'patch',
        'serviceaccount',
        'builder',
        '-n',
        TEAM,
        '--type=merge',
        '-p',
        JSON.stringify({
          secrets: [{ name: 'builder-registry' }],
          imagePullSecrets: [{ name: 'not-there' }],
        }),
      ]);
      const options = { notaryUrl: authStack.notaryUrl, serviceAccountName: 'builder' };

      // No --docker-config: the controller has no credentials of its own.
      const c = startController('sa-credentials', [
        '--notary-ca',
        bundle,
        '--allow-notary-url',
        authStack.notaryUrl,
      ]);
      await eventually('the controller to lead', () =>
        Promise.resolve(leader(c) ? true : undefined),
      );
      const { build, pushed } = await imageAndBuild('sa-creds', {}, options);
      await succeed(build, `${pushed.gun}@${pushed.digest}`);
      const annotations = await recorded(build, 'kpack-trust.io/signed-digest');
      assert.equal(annotations['kpack-trust.io/signed-digest'], pushed.digest);
      const found = await lookup(authStack, pushed.gun, 'v1', await stack.tempDir('trust'));
      assert.equal(`sha256:${found.sha256Hex}`, pushed.digest);
      assert.ok(
        authStack.token?.log.some(
          (r) => r.user === login.username && r.granted.some((g) => g.split(',').includes('push')),
        ),
        "the token service granted push to the service account's login",
      );
      assert.ok(
        c.logs.some(
          (l) =>
            l['message'] === 'a Secret the service account lists does not exist; skipped' &&
            l['secret'] === 'not-there',
        ),
        'the missing Secret is skipped with a log line',
      );
      assert.ok(!JSON.stringify(c.logs).includes(login.password), 'no log line holds the password');
      await stopController(c, 'SIGTERM');

      // The reverse: the same Secret, but the controller may use only its own (none).
      const own = startController('own-credentials', [
        '--notary-ca',
        bundle,
        '--allow-notary-url',
        authStack.notaryUrl,
        '--build-credentials',
        'controller',
        '--max-attempts',
        '2',
      ]);
      await eventually('the controller to lead', () =>
        Promise.resolve(leader(own) ? true : undefined),
      );
      const refused = await imageAndBuild('own-creds', {}, options);
      await succeed(refused.build, `${refused.pushed.gun}@${refused.pushed.digest}`);
      const failed = await recorded(refused.build, 'kpack-trust.io/signing-error');
      assert.equal(failed['kpack-trust.io/signing-error-reason'], 'AuthFailed');
      assert.match(
        failed['kpack-trust.io/signing-error'] ?? '',
        /push,pull; registry credentials: none \(anonymous\)\. \[AUTH_FAILED\] \(gave up after 2 attempts\)$/,
      );
      assert.equal(failed['kpack-trust.io/signed-digest'], undefined);
      assert.equal(await publishesOf(refused.pushed.gun, authStack), 0);
      await stopController(own, 'SIGTERM');
    } finally {
      await authStack.stop();
    }
  });

  it("caps the key Secrets per source namespace, and an Image cannot name another namespace's keys", async () => {
    const TENANT = 'tenant-b';
    await kubectl(['create', 'namespace', TENANT]);
    const c = startController('quota', ['--max-key-secrets-per-namespace', '2']);
    await eventually('the controller to lead', () => Promise.resolve(leader(c) ? true : undefined));
    const keySecrets = async (): Promise<Map<string, Record<string, string>>> => {
      const json = JSON.parse(
        await kubectl([
          'get',
          'secrets',
          '-n',
          CONTROLLER_NS,
          '-l',
          'app.kubernetes.io/managed-by=kpack-trust-signer',
          '-o',
          'json',
        ]),
      ) as {
        items: {
          metadata: {
            name: string;
            labels?: Record<string, string>;
            annotations?: Record<string, string>;
          };
        }[];
      };
      return new Map(
        json.items.map((i) => [
          i.metadata.name,
          { ...i.metadata.labels, ...i.metadata.annotations },
        ]),
      );
    };

    // A tenant's Image names the key Secrets of team's Image "app" (made by the first test):
    // it gets keys of its own under its namespace's prefix, never team's.
    const hostile = await imageAndBuild(
      'hostile',
      {
        'kpack-trust.io/root-key-secret': 'team.app-root-key',
        'kpack-trust.io/targets-key-secret': 'team.app-targets-key',
      },
      { namespace: TENANT },
    );
    await succeed(hostile.build, `${hostile.pushed.gun}@${hostile.pushed.digest}`, TENANT);
    const signed = await recorded(hostile.build, 'kpack-trust.io/signed-digest', TENANT);
    assert.equal(signed['kpack-trust.io/signed-digest'], hostile.pushed.digest);
    const secrets = await keySecrets();
    for (const role of ['root', 'targets']) {
      const made = secrets.get(`${TENANT}.team.app-${role}-key`);
      assert.ok(made, `${TENANT}.team.app-${role}-key was created`);
      assert.equal(made['kpack-trust.io/source-namespace'], TENANT);
    }
    const teamRoot = secrets.get('team.app-root-key')?.['kpack-trust.io/key-id'];
    if (teamRoot !== undefined) {
      assert.notEqual(signed['kpack-trust.io/signed-root-key-id'], teamRoot);
    }

    // The tenant now holds 2 key Secrets, the cap: a new Image's first Build creates none.
    const before = secrets.size;
    const second = await imageAndBuild('second', {}, { namespace: TENANT });
    await succeed(second.build, `${second.pushed.gun}@${second.pushed.digest}`, TENANT);
    const refused = await recorded(second.build, 'kpack-trust.io/signing-error', TENANT);
    assert.equal(refused['kpack-trust.io/signing-error-reason'], 'KeyQuotaExceeded');
    assert.match(
      refused['kpack-trust.io/signing-error'] ?? '',
      /holds 2 or more key Secrets for namespace "tenant-b".*allows 2 \(--max-key-secrets-per-namespace\)/,
    );
    assert.deepEqual(
      (await eventsFor('Build', second.build, TENANT)).map((e) => e.reason),
      ['SigningFailed'],
    );
    assert.equal((await keySecrets()).size, before);
    assert.equal(await publishesOf(second.pushed.gun), 0);
    assert.ok(
      c.logs.some(
        (l) =>
          l['message'] === 'not signed' &&
          l['reason'] === 'KeyQuotaExceeded' &&
          l['build'] === `${TENANT}/${second.build}`,
      ),
      'the refusal is logged',
    );

    // Keys that exist are reused whatever the count: the first Image signs its next Build.
    const next = await pushImage(stack, `${TENANT}/hostile`, 'v2', { content: 'next build\n' });
    await applyBuild({
      name: 'hostile-build-next',
      namespace: TENANT,
      image: 'hostile',
      uid: await imageUid('hostile', TENANT),
      tags: [`${hostile.pushed.gun}:v1`],
    });
    await succeed('hostile-build-next', `${hostile.pushed.gun}@${next.digest}`, TENANT);
    const reused = await recorded('hostile-build-next', 'kpack-trust.io/signed-digest', TENANT);
    assert.equal(
      reused['kpack-trust.io/signed-root-key-id'],
      signed['kpack-trust.io/signed-root-key-id'],
    );
    await stopController(c, 'SIGTERM');
  });

  it("refuses an Image naming another namespace's repository (--allow-repository): RepositoryNotAllowed, no key, no publish; the owner still signs it", async () => {
    const SQUATTER = 'squatter';
    await kubectl(['create', 'namespace', SQUATTER]);
    const c = startController('allowlist', [
      '--allow-repository',
      `${TEAM}=${stack.registryHost}/${TEAM}`,
      '--allow-repository',
      `${SQUATTER}=${stack.registryHost}/${SQUATTER}`,
    ]);
    await eventually('the controller to lead', () => Promise.resolve(leader(c) ? true : undefined));
    const contested = `${TEAM}/contested`;

    // The squatter's Image names team's repository and finishes first.
    const taken = await imageAndBuild('grab', {}, { namespace: SQUATTER, repository: contested });
    await succeed(taken.build, `${taken.pushed.gun}@${taken.pushed.digest}`, SQUATTER);
    const refused = await recorded(taken.build, 'kpack-trust.io/signing-error', SQUATTER);
    assert.equal(refused['kpack-trust.io/signing-error-reason'], 'RepositoryNotAllowed');
    assert.equal(refused['kpack-trust.io/signed-digest'], undefined);
    assert.match(
      refused['kpack-trust.io/signing-error'] ?? '',
      /repository .*\/team\/contested is not under one the operator allows namespace "squatter"/,
    );
    assert.deepEqual(
      (await eventsFor('Build', taken.build, SQUATTER)).map((e) => e.reason),
      ['SigningFailed'],
    );
    assert.deepEqual(
      (await eventsFor('Image', 'grab', SQUATTER)).map((e) => e.reason),
      ['SigningFailed'],
    );
    assert.equal(await publishesOf(taken.pushed.gun), 0);
    const made = await kubectl(['get', 'secrets', '-n', CONTROLLER_NS, '-o', 'name']);
    assert.ok(!made.includes(`${SQUATTER}.`), `no key Secret for ${SQUATTER}: ${made}`);

    // The namespace the repository belongs to still signs it: the squatter took nothing.
    const owned = await imageAndBuild('contested', {});
    assert.equal(owned.pushed.gun, taken.pushed.gun);
    await succeed(owned.build, `${owned.pushed.gun}@${owned.pushed.digest}`);
    const signed = await recorded(owned.build, 'kpack-trust.io/signed-digest');
    assert.equal(signed['kpack-trust.io/signed-digest'], owned.pushed.digest);
    assert.equal(await publishesOf(owned.pushed.gun), 1);
    await stopController(c, 'SIGTERM');
  });

  it('a watch the apiserver ends with 410 Gone is re-listed and no finished Build is missed', async () => {
    // The freeze below outlasts a 3 s renew deadline, and a leader that wakes past it gives up
    // leadership (a fresh list then, not the 410 under test): give this one a longer Lease.
    const c = startController('relist', ['--lease-duration', '180', '--renew-deadline', '150']);
    await eventually('the first list', () =>
      Promise.resolve(c.logs.some((l) => l['message'] === 'listed Builds') ? true : undefined),
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    // Freeze the controller, and end its watch (restart the apiserver) before anything changes,
    // so that it can learn of the Build only by watching from its old resourceVersion.
    c.child.kill('SIGSTOP');
    // The controller's version is at most the collection's version now. A write after it makes
    // sure the restarted apiserver's watch cache starts past it (else the cache serves it).
    const frozenAt = (
      JSON.parse(
        await kubectl([
          'get',
          '--raw',
          `/apis/kpack.io/v1alpha2/namespaces/${TEAM}/builds?limit=1`,
        ]),
      ) as {
        metadata: { resourceVersion: string };
      }
    ).metadata.resourceVersion;
    assert.match(frozenAt, /^\d+$/);
    await kubectl(['create', 'configmap', 'relist-marker', '-n', TEAM]);
    await cp.restartApiserver({ apiserverFlags: APISERVER_FLAGS });
    const { build, pushed } = await imageAndBuild('after-compaction', {});
    await succeed(build, `${pushed.gun}@${pushed.digest}`);
    for (let i = 0; i < 3; i++) await imageAndBuild(`churn-${i}`, {});
    // Until the watch cache is ready the apiserver serves old versions from etcd, which it
    // compacts every COMPACTION_S to the revision it saw one interval earlier: wait until a watch
    // from the frozen version is refused, whichever of the two answers it.
    await eventually(
      'a watch from the frozen resourceVersion to be answered with 410 Gone',
      async () => {
        const watched = await cp.kubectl([
          'get',
          '--raw',
          `/apis/kpack.io/v1alpha2/namespaces/${TEAM}/builds?watch=true&resourceVersion=${frozenAt}&timeoutSeconds=1`,
        ]);
        return /"code":\s*410|\(Expired\)|too old resource version/.test(
          watched.stdout + watched.stderr,
        )
          ? true
          : undefined;
      },
      60_000,
    );
    c.child.kill('SIGCONT');
    const annotations = await recorded(build, 'kpack-trust.io/signed-digest');
    assert.equal(annotations['kpack-trust.io/signed-digest'], pushed.digest);
    assert.ok(
      c.logs.some((l) => l['message'] === 'watch expired (410 Gone); listing again'),
      'the controller saw 410 Gone and listed again',
    );
    await stopController(c, 'SIGTERM');
  });

  it("two Builds of one Image finish while the controller is down: the re-list signs 10 before 9, and notary's spec.tag still names 10", async () => {
    // Only this test's controller runs: the Builds finish while nothing watches them.
    for (const proc of controllers) await stopController(proc, 'SIGTERM');
    const image = 'rollback';
    const builds = [9, 10].map((n) => ({
      n,
      name: `${image}-build-${n}`,
      own: `v1-b${n}.20260301.120000`,
    }));
    const pushed = new Map<number, PushedImage>();
    for (const { n, own } of builds) {
      pushed.set(
        n,
        await pushImage(stack, `${TEAM}/${image}`, own, { content: `rollback ${n}\n` }),
      );
    }
    const gun = pushed.get(9)?.gun ?? '';
    await applyImage({
      name: image,
      namespace: TEAM,
      tag: `${gun}:v1`,
      annotations: { 'kpack-trust.io/notary-url': stack.notaryUrl },
    });
    const uid = await imageUid(image);
    for (const { n, name, own } of builds) {
      // kpack creates Build 10 only after 9 finished; creationTimestamp has one-second steps.
      if (n === 10) await new Promise((resolve) => setTimeout(resolve, 1_100));
      await applyBuild({
        name,
        namespace: TEAM,
        image,
        uid,
        labels: { 'image.kpack.io/image': image, 'image.kpack.io/buildNumber': String(n) },
        // As kpack v0.17.2 generateTags writes them: spec.tag, then the Build's own tag.
        tags: [`${gun}:v1`, `${gun}:${own}`],
      });
    }
    for (const { n, name } of builds) await succeed(name, `${gun}@${pushed.get(n)?.digest ?? ''}`);

    // The list returns rollback-build-10 before rollback-build-9 (name order).
    const c = startController('rollback');
    const nine = await recorded('rollback-build-9', 'kpack-trust.io/signed-digest');
    const ten = await recorded('rollback-build-10', 'kpack-trust.io/signed-digest');
    assert.equal(ten['kpack-trust.io/signed-digest'], pushed.get(10)?.digest);
    assert.equal(nine['kpack-trust.io/signed-digest'], pushed.get(9)?.digest);
    assert.equal(nine['kpack-trust.io/signed-tags'], `${gun}:v1-b9.20260301.120000`);
    assert.equal(nine['kpack-trust.io/superseded-tags'], `${gun}:v1`);
    assert.equal(nine['kpack-trust.io/superseded-by'], 'rollback-build-10');

    // notary, asked by its own CLI, is the judge.
    const trust = await stack.tempDir('trust');
    const expected: [string, number][] = [
      ['v1', 10],
      ['v1-b9.20260301.120000', 9],
      ['v1-b10.20260301.120000', 10],
    ];
    for (const [tag, n] of expected) {
      const found = await lookup(stack, gun, tag, trust);
      assert.equal(`sha256:${found.sha256Hex}`, pushed.get(n)?.digest, tag);
    }
    await stopController(c, 'SIGTERM');
  });
});
