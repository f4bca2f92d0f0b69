/**
 * The real `notary` CLI against a stack, and the handful of workflows tests repeat: initialize a
 * collection, sign a tag, look it up, rotate keys, add delegations and named signers. Each helper
 * throws a {@link NotaryCliError} carrying the CLI's output when it exits non-zero.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { requireBinary } from './binaries.js';
import type { DelegationKey } from './certs.js';
import { scrubbedEnv } from './processes.js';
import type { TokenIssuer } from './token-issuer.js';

/** The part of a stack the CLI needs (a `NotaryStack` is one). */
export interface NotaryEndpoint {
  readonly notaryUrl: string;
  readonly caFile: string;
  readonly token?: TokenIssuer;
}

/** Passphrases for the keys the CLI creates and opens, per role. */
export interface Passphrases {
  readonly root?: string;
  readonly targets?: string;
  readonly snapshot?: string;
  readonly delegation?: string;
}

/** The passphrase used for every role unless a test passes its own. */
export const DEFAULT_PASSPHRASE = 'kpack-trust-test-passphrase';

/** How to run one CLI command. */
export interface NotaryCliOptions {
  /** The `-d` trust dir: private keys and the metadata cache. */
  readonly trustDir: string;
  /** Per-role passphrases; {@link DEFAULT_PASSPHRASE} for any role not given. */
  readonly passphrases?: Passphrases;
  /** Extra environment, applied last (so it can override `NOTARY_AUTH`, say). */
  readonly env?: Readonly<Record<string, string>>;
  /** Written to stdin, which is then closed (prompts without input read EOF). */
  readonly input?: string;
  /** Kill the CLI after this long; 60 s by default. */
  readonly timeoutMs?: number;
}

/** What a CLI run produced. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A `notary` command that exited non-zero; carries its arguments and output. */
export class NotaryCliError extends Error {
  override readonly name = 'NotaryCliError';
  readonly args: readonly string[];
  readonly result: CliResult;

  constructor(args: readonly string[], result: CliResult) {
    // The CLI prints its `* fatal: …` line on stdout and its warnings on stderr: quote both.
    super(
      `notary ${args.join(' ')} exited with ${result.code}:\n` +
        `stdout: ${result.stdout.trim()}\nstderr: ${result.stderr.trim()}`,
    );
    this.args = args;
    this.result = result;
  }
}

/**
 * Runs `notary -d trustDir -s notaryUrl --tlscacert caFile …args` and resolves with its exit code
 * and output whatever the code. The environment is the parent's minus every `NOTARY_*` variable,
 * plus the four passphrases and, for a token-auth stack, `NOTARY_AUTH=base64(user:password)`.
 */
export function notaryCli(
  stack: NotaryEndpoint,
  args: readonly string[],
  options: NotaryCliOptions,
): Promise<CliResult> {
  const binary = requireBinary('notary');
  const phrases = options.passphrases ?? {};
  const env: Record<string, string> = {
    ...scrubbedEnv(),
    NOTARY_ROOT_PASSPHRASE: phrases.root ?? DEFAULT_PASSPHRASE,
    NOTARY_TARGETS_PASSPHRASE: phrases.targets ?? DEFAULT_PASSPHRASE,
    NOTARY_SNAPSHOT_PASSPHRASE: phrases.snapshot ?? DEFAULT_PASSPHRASE,
    NOTARY_DELEGATION_PASSPHRASE: phrases.delegation ?? DEFAULT_PASSPHRASE,
  };
  if (stack.token !== undefined) {
    env['NOTARY_AUTH'] = Buffer.from(`${stack.token.username}:${stack.token.password}`).toString(
      'base64',
    );
  }
  Object.assign(env, options.env);
  const argv = [
    '-d',
    options.trustDir,
    '-s',
    stack.notaryUrl,
    '--tlscacert',
    stack.caFile,
    ...args,
  ];
  const timeoutMs = options.timeoutMs ?? 60_000;

  return new Promise((resolve, reject) => {
    const child = spawn(binary, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = {
        code: code ?? -1,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      };
      if (signal !== null) {
        reject(new Error(`notary ${args.join(' ')} was killed (${signal}) after ${timeoutMs} ms`));
      } else {
        resolve(result);
      }
    });
    // The CLI may exit before reading stdin; a closed pipe is no error of ours.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/** Like {@link notaryCli}, but throws {@link NotaryCliError} on a non-zero exit. */
export async function runNotary(
  stack: NotaryEndpoint,
  args: readonly string[],
  options: NotaryCliOptions,
): Promise<CliResult> {
  const result = await notaryCli(stack, args, options);
  if (result.code !== 0) throw new NotaryCliError(args, result);
  return result;
}

/** Options shared by the helpers below. */
export interface HelperOptions {
  readonly passphrases?: Passphrases;
  readonly env?: Readonly<Record<string, string>>;
}

function cliOptions(trustDir: string, options: HelperOptions, input?: string): NotaryCliOptions {
  return {
    trustDir,
    ...(options.passphrases === undefined ? {} : { passphrases: options.passphrases }),
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(input === undefined ? {} : { input }),
  };
}

/** Publishes everything staged for `gun`. */
export async function publish(
  stack: NotaryEndpoint,
  gun: string,
  trustDir: string,
  options: HelperOptions = {},
): Promise<void> {
  await runNotary(stack, ['publish', gun], cliOptions(trustDir, options));
}

/**
 * `notary init` and a first publish. With `serverSnapshot`, `notary key rotate GUN snapshot -r`
 * runs between them, as `docker trust sign` sets a repo up; observed: the first root the server
 * then holds is version 2 (version 1 was never published).
 */
export async function initRepo(
  stack: NotaryEndpoint,
  gun: string,
  trustDir: string,
  options: HelperOptions & { readonly serverSnapshot?: boolean } = {},
): Promise<void> {
  const cli = cliOptions(trustDir, options);
  await runNotary(stack, ['init', gun], cli);
  if (options.serverSnapshot === true) {
    await runNotary(stack, ['key', 'rotate', gun, 'snapshot', '-r'], cli);
  }
  await runNotary(stack, ['publish', gun], cli);
}

/** `notary addhash` of one tag (into `roles`, or `targets` when none) and, by default, publish. */
export async function addTarget(
  stack: NotaryEndpoint,
  gun: string,
  trustDir: string,
  tag: string,
  sizeBytes: number,
  sha256Hex: string,
  options: HelperOptions & { readonly roles?: readonly string[]; readonly publish?: boolean } = {},
): Promise<void> {
  if (!/^[0-9a-f]{64}$/.test(sha256Hex)) {
    throw new Error(`sha256Hex must be 64 lowercase hex digits, got ${JSON.stringify(sha256Hex)}`);
  }
  const roleArgs = (options.roles ?? []).flatMap((role) => ['-r', role]);
  const cli = cliOptions(trustDir, options);
  await runNotary(
    stack,
    ['addhash', gun, tag, String(sizeBytes), '--sha256', sha256Hex, ...roleArgs],
    cli,
  );
  if (options.publish !== false) await runNotary(stack, ['publish', gun], cli);
}

/** `notary remove` of one tag (from `roles`, or `targets`) and, by default, publish. */
export async function removeTarget(
  stack: NotaryEndpoint,
  gun: string,
  trustDir: string,
  tag: string,
  options: HelperOptions & { readonly roles?: readonly string[]; readonly publish?: boolean } = {},
): Promise<void> {
  const roleArgs = (options.roles ?? []).flatMap((role) => ['-r', role]);
  const cli = cliOptions(trustDir, options);
  await runNotary(stack, ['remove', gun, tag, ...roleArgs], cli);
  if (options.publish !== false) await runNotary(stack, ['publish', gun], cli);
}

/** A signed tag as the CLI reports it. */
export interface TargetRecord {
  readonly tag: string;
  readonly sha256Hex: string;
  readonly size: number;
  /** The role whose metadata holds it (`targets`, `targets/releases`, …). */
  readonly role: string;
}

/**
 * Parses `notary list` output: a header `NAME DIGEST SIZE (BYTES) ROLE`, a dashed rule, then one
 * whitespace-separated row per target; or the line `No targets present in this repository.`
 */
export function parseTargetList(stdout: string): TargetRecord[] {
  const records: TargetRecord[] = [];
  for (const line of stdout.split('\n')) {
    const match = /^(\S+)\s+([0-9a-f]{64})\s+(\d+)\s+(\S+)\s*$/.exec(line);
    if (match === null) continue;
    const [, tag, sha256Hex, size, role] = match;
    if (tag === undefined || sha256Hex === undefined || size === undefined || role === undefined)
      continue;
    records.push({ tag, sha256Hex, size: Number(size), role });
  }
  return records;
}

/** `notary list` (optionally of given delegation roles, which shadow `targets`), parsed. */
export async function listTargets(
  stack: NotaryEndpoint,
  gun: string,
  trustDir: string,
  options: HelperOptions & { readonly roles?: readonly string[] } = {},
): Promise<TargetRecord[]> {
  const roleArgs = (options.roles ?? []).flatMap((role) => ['-r', role]);
  const result = await runNotary(stack, ['list', gun, ...roleArgs], cliOptions(trustDir, options));
  return parseTargetList(result.stdout);
}

/**
 * `notary lookup GUN TAG`, which prints one line `<tag> sha256:<hex> <size>` and no role; the role
 * comes from `notary list`, which walks the roles in the same order (targets first, then
 * delegations) and so reports the same entry.
 */
export async function lookup(
  stack: NotaryEndpoint,
  gun: string,
  tag: string,
  trustDir: string,
  options: HelperOptions = {},
): Promise<TargetRecord> {
  const cli = cliOptions(trustDir, options);
  const result = await runNotary(stack, ['lookup', gun, tag], cli);
  const line = result.stdout.trim();
  const match = /^(.*) sha256:([0-9a-f]{64}) (\d+)$/.exec(line);
  if (match?.[1] !== tag || match[2] === undefined || match[3] === undefined) {
    throw new Error(`unexpected output of notary lookup ${gun} ${tag}: ${JSON.stringify(line)}`);
  }
  const sha256Hex = match[2];
  const size = Number(match[3]);
  const listed = parseTargetList((await runNotary(stack, ['list', gun], cli)).stdout).find(
    (r) => r.tag === tag,
  );
  if (listed?.sha256Hex !== sha256Hex || listed.size !== size) {
    throw new Error(`notary list does not agree with notary lookup for ${gun}:${tag}`);
  }
  return { tag, sha256Hex, size, role: listed.role };
}

/**
 * The root version in the trust dir's cache after refreshing it with `notary list` (a rotation
 * publishes the new root but does not rewrite the cached copy).
 */
export async function rootVersion(
  stack: NotaryEndpoint,
  gun: string,
  trustDir: string,
  options: HelperOptions = {},
): Promise<number> {
  await runNotary(stack, ['list', gun], cliOptions(trustDir, options));
  const text = await readFile(join(trustDir, 'tuf', gun, 'metadata', 'root.json'), 'utf8');
  const parsed = JSON.parse(text) as { signed?: { version?: unknown } };
  const version = parsed.signed?.version;
  if (typeof version !== 'number') throw new Error(`cached root.json of ${gun} has no version`);
  return version;
}

/** `notary key rotate GUN <role>`, to a server-managed key with `serverManaged`. */
export async function rotateKey(
  stack: NotaryEndpoint,
  gun: string,
  trustDir: string,
  role: 'targets' | 'snapshot' | 'timestamp',
  options: HelperOptions & { readonly serverManaged?: boolean } = {},
): Promise<void> {
  const args = ['key', 'rotate', gun, role, ...(options.serverManaged === true ? ['-r'] : [])];
  await runNotary(stack, args, cliOptions(trustDir, options));
}

/**
 * `notary key rotate GUN root`, answering its yes/no prompt with `yes` (the CLI exits 0 even when
 * it aborts, so success is judged by the root version going up). Returns the versions.
 */
export async function rotateRoot(
  stack: NotaryEndpoint,
  gun: string,
  trustDir: string,
  options: HelperOptions = {},
): Promise<{ before: number; after: number }> {
  const before = await rootVersion(stack, gun, trustDir, options);
  const result = await runNotary(
    stack,
    ['key', 'rotate', gun, 'root'],
    cliOptions(trustDir, options, 'yes\n'),
  );
  const after = await rootVersion(stack, gun, trustDir, options);
  if (after <= before) {
    throw new Error(
      `root of ${gun} still at version ${after} after rotation (was ${before}): ${result.stdout}`,
    );
  }
  return { before, after };
}

/** `notary key import` of a PEM private key for `role` (and `gun`, for base roles). */
export async function importKey(
  stack: NotaryEndpoint,
  trustDir: string,
  keyFile: string,
  role: string,
  options: HelperOptions & { readonly gun?: string } = {},
): Promise<void> {
  const gunArgs = options.gun === undefined ? [] : ['-g', options.gun];
  await runNotary(
    stack,
    ['key', 'import', keyFile, '-r', role, ...gunArgs],
    cliOptions(trustDir, options),
  );
}

/**
 * `notary delegation add GUN ROLE CERT…` (all paths unless `paths` is given) and, by default,
 * publish. Returns the key ids the CLI reports (ids of the `ecdsa-x509` keys made from the certs).
 */
export async function addDelegation(
  stack: NotaryEndpoint,
  gun: string,
  trustDir: string,
  role: string,
  certFiles: readonly string[],
  options: HelperOptions & { readonly paths?: readonly string[]; readonly publish?: boolean } = {},
): Promise<string[]> {
  const pathArgs =
    options.paths === undefined ? ['--all-paths'] : ['--paths', options.paths.join(',')];
  const cli = cliOptions(trustDir, options);
  const result = await runNotary(
    stack,
    ['delegation', 'add', gun, role, ...certFiles, ...pathArgs],
    cli,
  );
  if (options.publish !== false) await runNotary(stack, ['publish', gun], cli);
  const ids = /with keys \[([^\]]*)\]/.exec(result.stdout)?.[1] ?? '';
  return ids.split(/[\s,]+/).filter((id) => /^[0-9a-f]{64}$/.test(id));
}

/** A delegation as `notary delegation list` reports it. */
export interface DelegationRecord {
  readonly role: string;
  /** `[""]` when the delegation covers all paths. */
  readonly paths: readonly string[];
  readonly keyIds: readonly string[];
  readonly threshold: number;
}

/**
 * Parses `notary delegation list`: rows `ROLE PATHS KEY-IDS THRESHOLD`, where PATHS is
 * `"" <all paths>` or a comma list, and a role with several keys or paths continues on
 * following lines that leave the role column blank.
 */
export function parseDelegationList(stdout: string): DelegationRecord[] {
  const rows: { role: string; paths: string[]; keyIds: string[]; threshold: number }[] = [];
  for (const line of stdout.split('\n')) {
    if (/^(ROLE\s|-)/.test(line) || line.trim() === '') continue;
    const keyIds = line.match(/\b[0-9a-f]{64}\b/g) ?? [];
    const roleMatch = /^(targets\/\S+)/.exec(line);
    const thresholdMatch = /\s(\d+)\s*$/.exec(line);
    const pathsText = line
      .replace(/^targets\/\S+/, '')
      .replace(/\b[0-9a-f]{64}\b/g, '')
      .replace(/\s\d+\s*$/, '')
      .trim();
    const paths = pathsText === '"" <all paths>' ? [''] : pathsText.split(/,\s*/).filter((p) => p);
    if (roleMatch?.[1] !== undefined) {
      rows.push({
        role: roleMatch[1],
        paths,
        keyIds,
        threshold: Number(thresholdMatch?.[1] ?? NaN),
      });
    } else {
      const current = rows.at(-1);
      if (current === undefined) continue;
      current.paths.push(...paths);
      current.keyIds.push(...keyIds);
    }
  }
  return rows;
}

/** `notary delegation list GUN`, parsed. */
export async function listDelegations(
  stack: NotaryEndpoint,
  gun: string,
  trustDir: string,
  options: HelperOptions = {},
): Promise<DelegationRecord[]> {
  const result = await runNotary(stack, ['delegation', 'list', gun], cliOptions(trustDir, options));
  return parseDelegationList(result.stdout);
}

/**
 * What `docker trust signer add NAME` does, with the notary CLI: the signer's key goes into the
 * trust dir, and both `targets/releases` (what Docker resolves tags from) and `targets/NAME` get
 * its certificate, then one publish. Returns the delegation key id.
 */
export async function addSigner(
  stack: NotaryEndpoint,
  gun: string,
  trustDir: string,
  key: DelegationKey,
  options: HelperOptions = {},
): Promise<string> {
  await importKey(stack, trustDir, key.keyFile, `targets/${key.name}`, options);
  await addDelegation(stack, gun, trustDir, 'targets/releases', [key.certFile], {
    ...options,
    publish: false,
  });
  const ids = await addDelegation(stack, gun, trustDir, `targets/${key.name}`, [key.certFile], {
    ...options,
    publish: true,
  });
  const id = ids[0];
  if (id === undefined) throw new Error(`notary reported no key id for signer ${key.name}`);
  return id;
}
