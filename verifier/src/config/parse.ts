/**
 * Parses and validates the verifier's configuration (YAML 1.2, so JSON works too). Unknown keys,
 * wrong types and missing required keys are errors naming the key path; relative paths are resolved
 * against the config file's directory; CA bundles, PEM keys and docker credentials are read through
 * the injected `readFile`, and trust anchors compiled, so a broken pin fails at load time rather
 * than on the first review.
 */
import { createPublicKey } from 'node:crypto';
import { isAbsolute, resolve } from 'node:path';
import { YAMLParseError, parse as parseYaml } from 'yaml';
import {
  PublicKey,
  compileAnchor,
  dockerConfigCredentials,
  isTrustError,
  caBundleProblem,
  type CompiledAnchor,
  type CredentialSource,
  type TrustAnchor,
} from '@kpack-trust/common';
import { compileImageGlob, imagePatternProblem, namespacePatternProblem } from '../policy/glob.js';
import { ConfigNode, configError, type ObjectNode } from './fields.js';
import { imagePatternNeverMatches } from './pattern-warnings.js';
import { canonicalImagePattern, canonicalRegistry } from './registry.js';
import type {
  BreakGlassConfig,
  CacheConfig,
  CircuitBreakerConfig,
  ListenConfig,
  NotaryEndpointConfig,
  PolicyRule,
  RuleTrust,
  SignerRequirement,
  VerifierConfig,
} from './types.js';

/** Reads a file named in the config (already resolved to an absolute path) as UTF-8 text. */
export type ConfigFileReader = (absolutePath: string) => string;

/** The annotation key the break-glass switch uses unless configured otherwise. */
export const DEFAULT_BREAK_GLASS_ANNOTATION = 'kpack-trust.image-policy.k8s.io/break-glass';

/** Defaults of the optional settings. */
export const CONFIG_DEFAULTS = Object.freeze({
  notaryTimeoutMs: 10_000,
  maxRepositories: 1_000,
  ttlSeconds: 60,
  /** Trust states kept per cached collection slot, see CacheConfig.maxTrustStates. */
  trustStatesPerRepository: 10,
  /** One hour of notary outage is answered from verified data (CacheConfig.staleIfErrorSeconds). */
  staleIfErrorSeconds: 3_600,
  negativeTtlSeconds: 5,
  refreshAheadSeconds: 10,
  breakerFailureThreshold: 5,
  breakerCooldownSeconds: 10,
});

const KEY_ID = /^[0-9a-f]{64}$/;
/** notary's role names: `targets` and `targets/` + `[-a-z0-9_]` segments. */
const TARGETS_ROLE = /^targets(?:\/[-a-z0-9_]+)*$/;
/** The apiserver forwards only annotations whose key contains this. */
const FORWARDED_ANNOTATION =
  /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\.image-policy\.k8s\.io\/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const REGISTRY =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;

/**
 * Validates configuration text. `baseDir` anchors relative paths; `readFile` reads the files the
 * config names; `source` labels messages (the file path).
 */
export function parseConfig(
  text: string,
  baseDir: string,
  readFile: ConfigFileReader,
  source = 'config',
): VerifierConfig {
  let document: unknown;
  try {
    document = parseYaml(text, { schema: 'core', uniqueKeys: true, maxAliasCount: 100 });
  } catch (error) {
    const where =
      error instanceof YAMLParseError && error.linePos
        ? ` at line ${error.linePos[0].line}, column ${error.linePos[0].col}`
        : '';
    const firstLine = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
    const message = firstLine.replace(/ at line \d+, column \d+:?$/, '');
    throw configError(source, '', `is not valid YAML or JSON${where}: ${message}`);
  }
  const files = new FileAccess(source, baseDir, readFile);
  const top = new ConfigNode(source, '', document ?? {}).object([
    'listen',
    'notary',
    'rules',
    'exemptNamespaces',
    'detectionMode',
    'failure',
    'breakGlass',
    'cache',
    'circuitBreaker',
  ]);

  const warnings: string[] = [];
  const detectionMode = top.field('detectionMode').absent
    ? false
    : top.field('detectionMode').boolean();
  const config: VerifierConfig = {
    source,
    listen: parseListen(top.required('listen'), files),
    notary: parseNotary(top.field('notary'), files),
    rules: top
      .required('rules')
      .array()
      .map((node, index) => parseRule(node, index, detectionMode, files, warnings)),
    exemptNamespaces: namespaceGlobs(top.field('exemptNamespaces')),
    detectionMode,
    failure: top.field('failure').absent ? 'deny' : top.field('failure').oneOf(['deny', 'error']),
    breakGlass: parseBreakGlass(top.field('breakGlass')),
    cache: parseCache(top.field('cache')),
    circuitBreaker: parseCircuitBreaker(top.field('circuitBreaker')),
    warnings,
  };
  return deepFreeze(config);
}

function parseListen(node: ConfigNode, files: FileAccess): ListenConfig {
  const listen = node.object(['port', 'host', 'tls']);
  const tls = listen.required('tls').object(['cert', 'key', 'clientCA']);
  const clientCA = tls.field('clientCA');
  return {
    port: listen.required('port').integer(1, 65535),
    ...(listen.has('host') ? { host: listen.field('host').string() } : {}),
    tls: {
      cert: files.path(tls.required('cert')),
      key: files.path(tls.required('key')),
      ...(clientCA.absent ? {} : { clientCA: files.path(clientCA) }),
    },
  };
}

function parseNotary(node: ConfigNode, files: FileAccess): NotaryEndpointConfig[] {
  if (node.absent) return [];
  const seen = new Set<string>();
  return node.array().map((item) => {
    const entry = item.object(['registry', 'server', 'ca', 'timeoutMs', 'credentials']);
    const registryNode = entry.required('registry');
    const written = registryNode.string();
    if (!REGISTRY.test(written)) registryNode.fail('must be a registry host[:port]');
    // Images are matched in the canonical spelling (registry.ts), so entries are kept in it too.
    const registry = canonicalRegistry(written);
    if (seen.has(registry)) registryNode.fail(`names ${registry} a second time`);
    seen.add(registry);
    const server = parseServerUrl(entry.required('server'));
    const caNode = entry.field('ca');
    let ca: { caFile: string; caPem: string } | undefined;
    if (!caNode.absent) {
      const caFile = files.path(caNode);
      const caPem = files.read(caNode, caFile);
      const problem = caBundleProblem(caPem);
      if (problem !== undefined) caNode.fail(`${caFile} ${problem}`);
      ca = { caFile, caPem };
    }
    const credentialsNode = entry.field('credentials');
    let credentials: { credentialsFile: string; credentials: CredentialSource } | undefined;
    if (!credentialsNode.absent) {
      const credentialsFile = files.path(credentialsNode);
      const json = files.read(credentialsNode, credentialsFile);
      let parsed: unknown;
      try {
        parsed = JSON.parse(json);
      } catch {
        credentialsNode.fail(`${credentialsFile} is not JSON (a docker config.json is expected)`);
      }
      try {
        credentials = {
          credentialsFile,
          credentials: dockerConfigCredentials(parsed, credentialsFile),
        };
      } catch (error) {
        if (!isTrustError(error, 'CREDENTIALS_INVALID')) throw error;
        credentialsNode.fail(error.facts.problem);
      }
    }
    return {
      registry,
      server,
      ...(ca ?? {}),
      timeoutMs: entry.field('timeoutMs').absent
        ? CONFIG_DEFAULTS.notaryTimeoutMs
        : entry.field('timeoutMs').integer(1, 120_000),
      ...(credentials ?? {}),
    };
  });
}

function parseServerUrl(node: ConfigNode): string {
  const text = node.string();
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return node.fail('must be an https:// URL');
  }
  if (url.protocol !== 'https:')
    node.fail('must be an https:// URL (notary serves trust data over TLS)');
  if (url.username !== '' || url.password !== '') {
    node.fail('must not hold credentials; use the credentials file');
  }
  if (url.search !== '' || url.hash !== '') node.fail('must not have a query or fragment');
  return url.href.replace(/\/+$/, '');
}

function parseRule(
  node: ConfigNode,
  index: number,
  globalDetection: boolean,
  files: FileAccess,
  warnings: string[],
): PolicyRule {
  const rule = node.object([
    'name',
    'images',
    'namespaces',
    'excludeNamespaces',
    'allow',
    'deny',
    'trust',
    'tofu',
    'requireDigest',
    'detectionMode',
  ]);
  const imagesNode = rule.required('images');
  const written = imagesNode.stringList();
  if (written.length === 0) imagesNode.fail('must name at least one image pattern');
  // Matched against canonical names (registry.ts): `REGISTRY.corp.com:443/**` means registry.corp.com.
  const images = written.map((pattern, i) => {
    const at =
      (typeof imagesNode.value === 'string' ? imagesNode : imagesNode.array()[i]) ?? imagesNode;
    const problem = imagePatternProblem(pattern);
    if (problem !== undefined) at.fail(`"${pattern}" ${problem}`);
    const canonical = canonicalImagePattern(pattern);
    compileImageGlob(canonical);
    // Valid but matching nothing: a warning, not an error, since such a rule still fails closed.
    const never = imagePatternNeverMatches(canonical);
    if (never !== undefined) warnings.push(`${node.source}: ${at.path} "${pattern}" ${never}`);
    return canonical;
  });

  const allow = rule.field('allow').absent ? false : rule.field('allow').boolean();
  const deny = rule.field('deny').absent ? false : rule.field('deny').boolean();
  const hasTrust = rule.has('trust');
  const tofuNode = rule.field('tofu');
  const tofu = tofuNode.absent ? false : tofuNode.boolean();
  const chosen = [allow, deny, hasTrust || tofu].filter(Boolean).length;
  if (chosen !== 1) {
    rule.fail('needs exactly one of "allow: true", "deny: true" or "trust: {…}" (or "tofu: true")');
  }

  const namespaces = rule.field('namespaces');
  const base = {
    name: rule.field('name').absent ? written.join(',') : rule.field('name').string(),
    index,
    images,
    ...(namespaces.absent ? {} : { namespaces: namespaceGlobs(namespaces) }),
    excludeNamespaces: namespaceGlobs(rule.field('excludeNamespaces')),
    requireDigest: rule.field('requireDigest').absent
      ? false
      : rule.field('requireDigest').boolean(),
    detectionMode: rule.field('detectionMode').absent
      ? globalDetection
      : rule.field('detectionMode').boolean(),
  };
  if (allow) return { ...base, action: 'allow' };
  if (deny) return { ...base, action: 'deny' };
  return { ...base, action: 'verify', trust: parseTrust(rule, tofu, files) };
}

function parseTrust(rule: ObjectNode, ruleTofu: boolean, files: FileAccess): RuleTrust {
  const node = rule.field('trust');
  const trust = node.absent
    ? undefined
    : node.object(['rootKeys', 'rootKeysPem', 'ca', 'tofu', 'signers', 'signersThreshold']);
  const rootKeyIds = trust ? keyIds(trust.field('rootKeys')) : [];
  const rootKeysPem = trust
    ? pemList(trust.field('rootKeysPem'), files, 'a PEM public key or certificate')
    : [];
  const caPem = trust ? pemList(trust.field('ca'), files, 'a PEM CA certificate') : [];
  const tofu =
    ruleTofu ||
    (trust !== undefined && !trust.field('tofu').absent && trust.field('tofu').boolean());
  const anchor: TrustAnchor = {
    ...(rootKeyIds.length > 0 ? { rootKeyIds } : {}),
    ...(rootKeysPem.length > 0 ? { rootKeysPem } : {}),
    ...(caPem.length > 0 ? { caPem } : {}),
    ...(tofu ? { tofu: true } : {}),
  };
  const at = trust ?? rule;
  if (!tofu && rootKeyIds.length === 0 && rootKeysPem.length === 0 && caPem.length === 0) {
    at.fail(
      'pins no root key, certificate or CA: add rootKeys, rootKeysPem or ca (nothing is trusted on first use unless "tofu: true")',
    );
  }
  const compiled = compileOrFail(anchor, at);

  const signersNode = trust?.field('signers');
  const signers =
    signersNode === undefined || signersNode.absent
      ? []
      : signersNode.array().map((s) => parseSigner(s, files));
  const roles = new Set<string>();
  for (const [i, s] of signers.entries()) {
    if (roles.has(s.role)) signersNode?.array()[i]?.fail(`names role ${s.role} twice`);
    roles.add(s.role);
  }
  const thresholdNode = trust?.field('signersThreshold');
  let signersThreshold = signers.length;
  if (thresholdNode !== undefined && !thresholdNode.absent) {
    if (signers.length === 0) thresholdNode.fail('needs signers');
    signersThreshold = thresholdNode.integer(1, signers.length);
  }
  return { anchor: compiled, signers, signersThreshold };
}

function compileOrFail(anchor: TrustAnchor, at: ConfigNode): CompiledAnchor {
  try {
    return compileAnchor(anchor);
  } catch (error) {
    return at.fail(
      `pins a key or CA that cannot be used: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

function parseSigner(node: ConfigNode, files: FileAccess): SignerRequirement {
  const signer = node.object(['role', 'keys', 'threshold']);
  const roleNode = signer.required('role');
  const role = roleNode.string();
  if (!TARGETS_ROLE.test(role)) {
    roleNode.fail('must be "targets" or a delegation role such as "targets/releases"');
  }
  const ids: string[] = [];
  const canonicalIds: string[] = [];
  const keysNode = signer.required('keys');
  const keys = keysNode.array();
  if (keys.length === 0) keysNode.fail('must pin at least one key');
  for (const k of keys) {
    const text = k.string();
    if (KEY_ID.test(text)) {
      ids.push(text);
      continue;
    }
    const pem = text.includes('-----BEGIN') ? text : files.read(k, files.path(k));
    canonicalIds.push(canonicalIdOfPem(k, pem));
  }
  const thresholdNode = signer.field('threshold');
  return {
    role,
    keyIds: ids,
    canonicalIds,
    threshold: thresholdNode.absent ? 1 : thresholdNode.integer(1, keys.length),
  };
}

/** notary's canonical key id (of the bare public key) for a PEM public key or certificate. */
function canonicalIdOfPem(node: ConfigNode, pem: string): string {
  try {
    if (pem.includes('BEGIN CERTIFICATE')) return PublicKey.fromCertificatePem(pem).canonicalId;
    return PublicKey.fromKeyObject(createPublicKey(pem)).id;
  } catch (error) {
    return node.fail(
      `is not a usable PEM public key or certificate (${error instanceof Error ? error.message : String(error)})`,
    );
  }
}

function keyIds(node: ConfigNode): string[] {
  if (node.absent) return [];
  return node.array().map((n) => {
    const id = n.string();
    if (!KEY_ID.test(id)) n.fail('must be a key id: 64 lowercase hex digits');
    return id;
  });
}

/** Entries that are PEM text are taken as is; anything else is a file path holding PEM. */
function pemList(node: ConfigNode, files: FileAccess, what: string): string[] {
  if (node.absent) return [];
  const items = typeof node.value === 'string' ? [node] : node.array();
  return items.map((n) => {
    const text = n.string();
    const pem = text.includes('-----BEGIN') ? text : files.read(n, files.path(n));
    if (!pem.includes('-----BEGIN')) n.fail(`must be ${what} (PEM text or a file holding it)`);
    return pem;
  });
}

function namespaceGlobs(node: ConfigNode): string[] {
  if (node.absent) return [];
  return node.array().map((n) => {
    const pattern = n.string();
    const problem = namespacePatternProblem(pattern);
    if (problem !== undefined) n.fail(problem);
    return pattern;
  });
}

function parseBreakGlass(node: ConfigNode): BreakGlassConfig {
  if (node.absent) return { enabled: false, annotation: DEFAULT_BREAK_GLASS_ANNOTATION };
  const section = node.object(['annotation', 'enabled']);
  const annotationNode = section.field('annotation');
  const annotation = annotationNode.absent
    ? DEFAULT_BREAK_GLASS_ANNOTATION
    : annotationNode.string();
  if (!FORWARDED_ANNOTATION.test(annotation)) {
    annotationNode.fail(
      'must be an annotation key under "<prefix>.image-policy.k8s.io/" — the apiserver forwards no other annotations',
    );
  }
  return {
    // Writing the section at all opts in; `enabled: false` keeps the key but switches it off.
    enabled: section.field('enabled').absent ? true : section.field('enabled').boolean(),
    annotation,
  };
}

function parseCache(node: ConfigNode): CacheConfig {
  const section = node.absent
    ? undefined
    : node.object([
        'maxRepositories',
        'ttlSeconds',
        'maxTrustStates',
        'staleIfErrorSeconds',
        'negativeTtlSeconds',
        'refreshAheadSeconds',
      ]);
  const seconds = (key: string, fallback: number, max: number): number =>
    section?.has(key) === true ? section.field(key).integer(0, max) : fallback;
  const maxRepositories =
    section?.has('maxRepositories') === true
      ? section.field('maxRepositories').integer(1, 10_000_000)
      : CONFIG_DEFAULTS.maxRepositories;
  const maxTrustStates =
    section?.has('maxTrustStates') === true
      ? section.field('maxTrustStates').integer(maxRepositories, 100_000_000)
      : maxRepositories * CONFIG_DEFAULTS.trustStatesPerRepository;
  return {
    maxRepositories,
    ttlSeconds:
      section?.has('ttlSeconds') === true
        ? section.field('ttlSeconds').integer(0, 86_400)
        : CONFIG_DEFAULTS.ttlSeconds,
    maxTrustStates,
    // A week at most: a stale answer is still bounded by every role's own expiry.
    staleIfErrorSeconds: seconds(
      'staleIfErrorSeconds',
      CONFIG_DEFAULTS.staleIfErrorSeconds,
      604_800,
    ),
    negativeTtlSeconds: seconds('negativeTtlSeconds', CONFIG_DEFAULTS.negativeTtlSeconds, 300),
    refreshAheadSeconds: seconds(
      'refreshAheadSeconds',
      CONFIG_DEFAULTS.refreshAheadSeconds,
      86_400,
    ),
  };
}

function parseCircuitBreaker(node: ConfigNode): CircuitBreakerConfig {
  const section = node.absent ? undefined : node.object(['failureThreshold', 'cooldownSeconds']);
  return {
    failureThreshold:
      section?.has('failureThreshold') === true
        ? section.field('failureThreshold').integer(0, 1_000)
        : CONFIG_DEFAULTS.breakerFailureThreshold,
    cooldownSeconds:
      section?.has('cooldownSeconds') === true
        ? section.field('cooldownSeconds').integer(1, 3_600)
        : CONFIG_DEFAULTS.breakerCooldownSeconds,
  };
}

/** Resolves and reads files named in the config, failing with the key path that named them. */
class FileAccess {
  private readonly source: string;
  private readonly baseDir: string;
  private readonly readFile: ConfigFileReader;

  constructor(source: string, baseDir: string, readFile: ConfigFileReader) {
    this.source = source;
    this.baseDir = baseDir;
    this.readFile = readFile;
  }

  /** The node's string as an absolute path (relative ones against the config file's directory). */
  path(node: ConfigNode): string {
    const p = node.string();
    return isAbsolute(p) ? p : resolve(this.baseDir, p);
  }

  read(node: ConfigNode, absolutePath: string): string {
    try {
      return this.readFile(absolutePath);
    } catch (error) {
      const code =
        (error as NodeJS.ErrnoException).code ??
        (error instanceof Error ? error.message : 'read error');
      throw configError(
        this.source,
        node.path,
        `names ${absolutePath}, which cannot be read (${code})`,
      );
    }
  }
}

/** Freezes plain objects and arrays recursively; class instances (keys, certificates) are left as they are. */
function deepFreeze<T>(value: T): T {
  if (Array.isArray(value)) {
    for (const item of value) deepFreeze(item);
    return Object.freeze(value);
  }
  if (
    typeof value === 'object' &&
    value !== null &&
    Object.getPrototypeOf(value) === Object.prototype
  ) {
    for (const item of Object.values(value)) deepFreeze(item);
    return Object.freeze(value);
  }
  return value;
}
