/**
 * A loopback stand-in for kube-apiserver's core v1 Secrets endpoints, answering as the real one
 * does (k8s.io/apimachinery `pkg/api/errors`, apiserver `endpoints/handlers/responsewriters`):
 *
 * - `GET /api/v1/namespaces/{ns}/secrets/{name}` (get), `GET …/secrets` (list),
 *   `POST …/secrets` (create); anything else on a Secrets path is 405, any other path 404.
 * - Failures are `metav1.Status` objects with the apiserver's exact fields and messages:
 *   `secrets "x" not found` (404 NotFound), `secrets "x" already exists` (409 AlreadyExists),
 *   `Unauthorized` (401), and RBAC denials as `secrets "x" is forbidden: User "u" cannot get
 *   resource "secrets" in API group "" in the namespace "ns"` (403 Forbidden; a create carries
 *   no name, since authorization runs before the body is read).
 * - Creates are validated as the apiserver does: a DNS-1123 name, config-key data keys, strict
 *   base64 data, at most 1 MiB; `stringData` is folded into `data`; metadata gains uid,
 *   resourceVersion, creationTimestamp and managedFields.
 * - Bearer-token authentication; an optional authorizer (see {@link rbacAuthorizer}) for 403s;
 *   every request recorded; a hook to hold responses back, to line concurrent clients up.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createCertificates } from '../stack/certs.js';
import { forgetOnExit, removeOnExit } from '../stack/processes.js';

/** The verbs the fake serves, as RBAC names them. */
export type SecretVerb = 'get' | 'list' | 'create';

/** What an authorizer decides on (the apiserver's authorizer.Attributes, trimmed). */
export interface AuthorizationAttributes {
  readonly user: string;
  readonly verb: SecretVerb;
  readonly namespace: string;
  readonly resource: 'secrets';
  /** Absent for list and create: the apiserver authorizes a create before reading its body. */
  readonly name?: string;
}

/** Allows (true) or forbids (false) one request. */
export type Authorizer = (attributes: AuthorizationAttributes) => boolean;

/** One rule of a Role, restricted to Secrets in the namespace it is bound in. */
export interface RbacRule {
  readonly verbs: readonly SecretVerb[];
  /** As in RBAC: when given, only requests naming one of these match (so never a create). */
  readonly resourceNames?: readonly string[];
}

/** A Kubernetes Secret as the fake stores and serves it. */
export interface SecretObject {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    resourceVersion: string;
    creationTimestamp: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    managedFields?: unknown[];
  };
  immutable?: boolean;
  data?: Record<string, string>;
  type: string;
}

/** What a test seeds directly into the store (no validation, no authorization). */
export interface SeededSecret {
  readonly name: string;
  readonly data?: Readonly<Record<string, string>>;
  /** Plain text values, base64-encoded into `data` as the apiserver does. */
  readonly stringData?: Readonly<Record<string, string>>;
  readonly type?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** One request as the fake saw and answered it. */
export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly verb?: SecretVerb;
  readonly namespace?: string;
  /** The Secret's name: from the path, or for a create from the body. */
  readonly name?: string;
  /** The authenticated user, when the token was valid. */
  readonly user?: string;
  readonly status: number;
  /** The Status reason for failures (`NotFound`, `AlreadyExists`, `Forbidden`, …). */
  readonly reason?: string;
}

/** Runs after a response is decided and before it is written; a returned promise holds it back. */
export type ResponseHook = (request: RecordedRequest) => Promise<void> | void;

/** How to start the fake. */
export interface FakeApiserverOptions {
  /** HTTPS with a throw-away CA (default), or plain HTTP (clients must then skip TLS checks). */
  readonly tls?: boolean;
  /** Accepted bearer tokens and the user each authenticates as; default: one random token. */
  readonly tokens?: Readonly<Record<string, string>>;
  /** Namespaces that exist (a create elsewhere is 404 `namespaces "x" not found`); default: all. */
  readonly namespaces?: readonly string[];
  /** Decides each authenticated request; default: everything is allowed. */
  readonly authorize?: Authorizer;
}

/** How {@link FakeApiserver.writeKubeconfig} writes a kubeconfig. */
export interface KubeconfigOptions {
  /** The context's namespace. */
  readonly namespace?: string;
  /** The user's bearer token; the default token when absent. */
  readonly token?: string;
  /** Embed the CA (`certificate-authority-data`, default) or point at its file. */
  readonly ca?: 'data' | 'file';
}

/** A running fake apiserver. */
export interface FakeApiserver {
  /** `https://127.0.0.1:PORT` (or http). */
  readonly url: string;
  readonly port: number;
  /** The default bearer token (absent when `tokens` were given). */
  readonly token: string;
  /** The user the default token authenticates as. */
  readonly user: string;
  /** PEM of the CA that issued the server certificate (HTTPS only). */
  readonly caPem: string | undefined;
  /** Path of that CA file (HTTPS only). */
  readonly caFile: string | undefined;
  /** Every request so far, in arrival order of their responses being decided. */
  readonly requests: readonly RecordedRequest[];
  /** How many recorded requests match every given field. */
  count(filter?: Partial<RecordedRequest>): number;
  /** Replaces the authorizer (undefined allows everything). */
  setAuthorizer(authorize: Authorizer | undefined): void;
  /** Installs (or with undefined removes) the response hook. */
  setResponseHook(hook: ResponseHook | undefined): void;
  /** Stores a Secret directly, bypassing validation and authorization; returns what GET serves. */
  seedSecret(namespace: string, secret: SeededSecret): SecretObject;
  /** The stored Secret (a copy), if any. */
  getSecret(namespace: string, name: string): SecretObject | undefined;
  /** Removes a Secret directly; true when it existed. */
  deleteSecret(namespace: string, name: string): boolean;
  /** Writes a kubeconfig pointing at this server and returns its path. */
  writeKubeconfig(file: string, options?: KubeconfigOptions): Promise<string>;
  /**
   * Writes `<prefix>/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}` as the
   * kubelet mounts them and returns the environment an in-cluster client reads.
   */
  writeServiceAccount(
    prefix: string,
    namespace: string,
    token?: string,
  ): Promise<{ KUBERNETES_SERVICE_HOST: string; KUBERNETES_SERVICE_PORT: string }>;
  /** Stops listening, drops open connections and removes the temporary CA. */
  close(): Promise<void>;
}

/** The user the default token authenticates as. */
export const DEFAULT_USER = 'system:serviceaccount:kpack-builds:kpack-trust-signer';

/** The largest total Secret data the apiserver accepts (core/validation MaxSecretSize). */
export const MAX_SECRET_BYTES = 1024 * 1024;

const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;
const SUBDOMAIN_MESSAGE =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', " +
  "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for " +
  "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const CONFIG_KEY_MESSAGE =
  "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', " +
  " or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const SECRETS_PATH = /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/]+))?\/?$/;
const BASE64 = /^[A-Za-z0-9+/]$/;

/** An RBAC Role for one subject (all subjects when `subject` is absent), as the RBAC authorizer applies it. */
export function rbacAuthorizer(rules: readonly RbacRule[], subject?: string): Authorizer {
  return (attributes) => {
    if (subject !== undefined && attributes.user !== subject) return false;
    return rules.some(
      (rule) =>
        rule.verbs.includes(attributes.verb) &&
        (rule.resourceNames === undefined ||
          rule.resourceNames.length === 0 ||
          (attributes.name !== undefined && rule.resourceNames.includes(attributes.name))),
    );
  };
}

/** A field error of a 422 Invalid (field.Error). */
interface FieldError {
  readonly type: 'FieldValueRequired' | 'FieldValueInvalid' | 'FieldValueTooLong';
  readonly field: string;
  readonly detail: string;
  readonly value?: string;
}

/** A decided answer: status code and JSON body. */
interface Answer {
  readonly status: number;
  readonly body: unknown;
  readonly reason?: string;
  readonly name?: string;
}

/** metav1.Status for a failure, with the fields in the order Go marshals them. */
function failure(
  code: number,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): Answer {
  return {
    status: code,
    reason,
    body: {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message,
      reason,
      ...(details === undefined ? {} : { details }),
      code,
    },
  };
}

function notFound(name: string): Answer {
  return failure(404, 'NotFound', `secrets "${name}" not found`, { name, kind: 'secrets' });
}

function invalid(name: string, errors: readonly FieldError[]): Answer {
  const describe = (e: FieldError): string => {
    switch (e.type) {
      case 'FieldValueRequired':
        return `Required value: ${e.detail}`;
      case 'FieldValueTooLong':
        return `Too long: ${e.detail}`;
      case 'FieldValueInvalid':
        return `Invalid value: ${JSON.stringify(e.value ?? '')}: ${e.detail}`;
    }
  };
  const each = errors.map((e) => `${e.field}: ${describe(e)}`);
  // utilerrors.NewAggregate prints one error bare and several as a bracketed list.
  const list = each.length === 1 ? (each[0] ?? '') : `[${each.join(', ')}]`;
  return failure(422, 'Invalid', `Secret "${name}" is invalid: ${list}`, {
    name,
    kind: 'Secret',
    causes: errors.map((e) => ({ reason: e.type, message: describe(e), field: e.field })),
  });
}

function badRequest(message: string): Answer {
  return failure(400, 'BadRequest', message);
}

/**
 * Go's base64.StdEncoding as encoding/json applies it to []byte: padding required, CR and LF
 * skipped. Returns the decoded length, or the offset Go's CorruptInputError would report.
 */
function strictBase64(text: string): { bytes: number } | { corruptAt: number } {
  const chars: { c: string; at: number }[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i] ?? '';
    if (c !== '\r' && c !== '\n') chars.push({ c, at: i });
  }
  let bytes = 0;
  for (let q = 0; q < chars.length; q += 4) {
    const quantum = chars.slice(q, q + 4);
    if (quantum.length < 4) return { corruptAt: quantum[0]?.at ?? text.length };
    const padding = quantum.findIndex((x) => x.c === '=');
    const last = q + 4 >= chars.length;
    for (let j = 0; j < 4; j++) {
      const x = quantum[j];
      if (x === undefined) break;
      if (padding !== -1 && j >= padding) {
        // `=` only in the last quantum, only in positions 2–3, and only trailing.
        if (x.c !== '=' || padding < 2 || !last) return { corruptAt: x.at };
      } else if (!BASE64.test(x.c)) {
        return { corruptAt: x.at };
      }
    }
    bytes += padding === -1 ? 3 : padding - 1;
  }
  return { bytes };
}

function timestamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function stringMap(value: unknown): Record<string, string> | undefined | 'invalid' {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) return 'invalid';
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== 'string') return 'invalid';
    out[k] = v;
  }
  return out;
}

function fieldsOf(map: Record<string, string> | undefined): Record<string, unknown> | undefined {
  if (map === undefined) return undefined;
  const out: Record<string, unknown> = { '.': {} };
  for (const key of Object.keys(map)) out[`f:${key}`] = {};
  return out;
}

/** Starts the fake on a free loopback port. */
export async function startFakeApiserver(
  options: FakeApiserverOptions = {},
): Promise<FakeApiserver> {
  const tls = options.tls ?? true;
  const defaultToken = randomBytes(24).toString('base64url');
  const tokens: Readonly<Record<string, string>> = options.tokens ?? {
    [defaultToken]: DEFAULT_USER,
  };
  const namespaces = options.namespaces === undefined ? undefined : new Set(options.namespaces);
  let authorize = options.authorize;
  let hook: ResponseHook | undefined;
  const store = new Map<string, SecretObject>();
  const requests: RecordedRequest[] = [];
  let resourceVersion = 1000;
  const keyOf = (namespace: string, name: string): string => `${namespace}/${name}`;

  const certDir = tls ? await mkdtemp(join(tmpdir(), 'kpack-fake-apiserver-')) : undefined;
  // The CA key must not outlive an interrupted or crashed run that never reaches close().
  if (certDir !== undefined) removeOnExit(certDir);
  const certs = certDir === undefined ? undefined : await createCertificates(certDir);

  const stored = (
    namespace: string,
    name: string,
    fields: {
      data?: Record<string, string>;
      type?: string;
      labels?: Record<string, string>;
      annotations?: Record<string, string>;
      immutable?: boolean;
    },
    manager: string,
  ): SecretObject => {
    const now = timestamp(new Date());
    const managed: Record<string, unknown> = {};
    const metadataFields: Record<string, unknown> = {};
    const annotationFields = fieldsOf(fields.annotations);
    const labelFields = fieldsOf(fields.labels);
    if (annotationFields !== undefined) metadataFields['f:annotations'] = annotationFields;
    if (labelFields !== undefined) metadataFields['f:labels'] = labelFields;
    const dataFields = fieldsOf(fields.data);
    if (dataFields !== undefined) managed['f:data'] = dataFields;
    if (Object.keys(metadataFields).length > 0) managed['f:metadata'] = metadataFields;
    managed['f:type'] = {};
    const secret: SecretObject = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name,
        namespace,
        uid: randomUUID(),
        resourceVersion: String(++resourceVersion),
        creationTimestamp: now,
        ...(fields.labels === undefined ? {} : { labels: fields.labels }),
        ...(fields.annotations === undefined ? {} : { annotations: fields.annotations }),
        managedFields: [
          {
            manager,
            operation: 'Update',
            apiVersion: 'v1',
            time: now,
            fieldsType: 'FieldsV1',
            fieldsV1: managed,
          },
        ],
      },
      ...(fields.immutable === undefined ? {} : { immutable: fields.immutable }),
      ...(fields.data === undefined ? {} : { data: fields.data }),
      type: fields.type ?? 'Opaque',
    };
    store.set(keyOf(namespace, name), secret);
    return structuredClone(secret);
  };

  const create = (namespace: string, raw: string, manager: string): Answer => {
    let body: unknown;
    try {
      body = JSON.parse(raw) as unknown;
    } catch (err) {
      return badRequest(
        `Secret in version "v1" cannot be handled as a Secret: ${(err as Error).message}`,
      );
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return badRequest('Secret in version "v1" cannot be handled as a Secret: not an object');
    }
    const object = body as Record<string, unknown>;
    const metadata = (object['metadata'] ?? {}) as Record<string, unknown>;
    const data = stringMap(object['data']);
    const stringData = stringMap(object['stringData']);
    const labels = stringMap(metadata['labels']);
    const annotations = stringMap(metadata['annotations']);
    if ([data, stringData, labels, annotations].includes('invalid')) {
      return badRequest(
        'Secret in version "v1" cannot be handled as a Secret: a map field holds a non-string value',
      );
    }
    // Decoding []byte happens before any validation, so bad base64 is a 400, not a 422.
    for (const value of Object.values((data as Record<string, string> | undefined) ?? {})) {
      const decoded = strictBase64(value);
      if ('corruptAt' in decoded) {
        return badRequest(
          `Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte ${decoded.corruptAt}`,
        );
      }
    }
    const given = metadata['namespace'];
    if (typeof given === 'string' && given !== '' && given !== namespace) {
      return badRequest(
        'the namespace of the provided object does not match the namespace sent on the request',
      );
    }
    const name = typeof metadata['name'] === 'string' ? metadata['name'] : '';
    if (namespaces !== undefined && !namespaces.has(namespace)) {
      return {
        ...failure(404, 'NotFound', `namespaces "${namespace}" not found`, {
          name: namespace,
          kind: 'namespaces',
        }),
        name,
      };
    }
    const merged: Record<string, string> = { ...((data as Record<string, string>) ?? {}) };
    for (const [k, v] of Object.entries((stringData as Record<string, string>) ?? {})) {
      merged[k] = Buffer.from(v, 'utf8').toString('base64');
    }
    const errors: FieldError[] = [];
    if (name === '') {
      errors.push({
        type: 'FieldValueRequired',
        field: 'metadata.name',
        detail: 'name or generateName is required',
      });
    } else if (name.length > 253 || !SUBDOMAIN.test(name)) {
      errors.push({
        type: 'FieldValueInvalid',
        field: 'metadata.name',
        value: name,
        detail: SUBDOMAIN_MESSAGE,
      });
    }
    let total = 0;
    for (const [key, value] of Object.entries(merged)) {
      if (!CONFIG_KEY.test(key)) {
        errors.push({
          type: 'FieldValueInvalid',
          field: `data[${key}]`,
          value: key,
          detail: CONFIG_KEY_MESSAGE,
        });
      }
      total += Buffer.from(value, 'base64').length;
    }
    if (total > MAX_SECRET_BYTES) {
      errors.push({
        type: 'FieldValueTooLong',
        field: 'data',
        detail: `must have at most ${MAX_SECRET_BYTES} bytes`,
      });
    }
    if (errors.length > 0) return { ...invalid(name, errors), name };
    if (store.has(keyOf(namespace, name))) {
      return {
        ...failure(409, 'AlreadyExists', `secrets "${name}" already exists`, {
          name,
          kind: 'secrets',
        }),
        name,
      };
    }
    const type =
      typeof object['type'] === 'string' && object['type'] !== '' ? object['type'] : undefined;
    const immutable = typeof object['immutable'] === 'boolean' ? object['immutable'] : undefined;
    const secret = stored(
      namespace,
      name,
      {
        ...(Object.keys(merged).length > 0 ? { data: merged } : {}),
        ...(type === undefined ? {} : { type }),
        ...(labels === undefined ? {} : { labels: labels as Record<string, string> }),
        ...(annotations === undefined
          ? {}
          : { annotations: annotations as Record<string, string> }),
        ...(immutable === undefined ? {} : { immutable }),
      },
      manager,
    );
    return { status: 201, body: secret, name };
  };

  const decide = (
    req: IncomingMessage,
    raw: string,
  ): { answer: Answer; record: Omit<RecordedRequest, 'status' | 'reason'> } => {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = url.pathname;
    const base = { method, path };
    const header = req.headers.authorization ?? '';
    const token = /^Bearer (.+)$/.exec(header)?.[1];
    const user = token === undefined ? undefined : tokens[token];
    if (user === undefined) {
      // authentication runs before routing, so even unknown paths answer 401.
      return { answer: failure(401, 'Unauthorized', 'Unauthorized'), record: base };
    }
    const match = SECRETS_PATH.exec(path);
    if (!match) {
      return {
        answer: failure(404, 'NotFound', 'the server could not find the requested resource', {}),
        record: { ...base, user },
      };
    }
    const namespace = decodeURIComponent(match[1] ?? '');
    const pathName = match[2] === undefined ? undefined : decodeURIComponent(match[2]);
    let verb: SecretVerb;
    if (method === 'GET') verb = pathName === undefined ? 'list' : 'get';
    else if (method === 'POST' && pathName === undefined) verb = 'create';
    else {
      return {
        answer: failure(
          405,
          'MethodNotAllowed',
          'the server does not allow this method on the requested resource',
          {},
        ),
        record: { ...base, user, namespace, ...(pathName === undefined ? {} : { name: pathName }) },
      };
    }
    const record = {
      ...base,
      user,
      verb,
      namespace,
      ...(pathName === undefined ? {} : { name: pathName }),
    };
    const attributes: AuthorizationAttributes = {
      user,
      verb,
      namespace,
      resource: 'secrets',
      ...(pathName === undefined ? {} : { name: pathName }),
    };
    if (authorize !== undefined && !authorize(attributes)) {
      const denial = `User ${JSON.stringify(user)} cannot ${verb} resource "secrets" in API group "" in the namespace ${JSON.stringify(namespace)}`;
      const message =
        pathName === undefined
          ? `secrets is forbidden: ${denial}`
          : `secrets ${JSON.stringify(pathName)} is forbidden: ${denial}`;
      const details =
        pathName === undefined ? { kind: 'secrets' } : { name: pathName, kind: 'secrets' };
      return { answer: failure(403, 'Forbidden', message, details), record };
    }
    switch (verb) {
      case 'get': {
        const secret = store.get(keyOf(namespace, pathName ?? ''));
        return {
          answer: secret ? { status: 200, body: secret } : notFound(pathName ?? ''),
          record,
        };
      }
      case 'list': {
        const items = [...store.values()]
          .filter((s) => s.metadata.namespace === namespace)
          .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1))
          .map((secret) => {
            // List items carry no kind/apiVersion of their own, as the apiserver serves them.
            const item: Partial<SecretObject> = structuredClone(secret);
            delete item.apiVersion;
            delete item.kind;
            return item;
          });
        return {
          answer: {
            status: 200,
            body: {
              kind: 'SecretList',
              apiVersion: 'v1',
              metadata: { resourceVersion: String(resourceVersion) },
              items,
            },
          },
          record,
        };
      }
      case 'create': {
        const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim();
        if (type !== 'application/json') {
          return {
            answer: failure(
              415,
              'UnsupportedMediaType',
              `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/cbor`,
            ),
            record,
          };
        }
        const manager = (req.headers['user-agent'] ?? 'unknown').split('/')[0] ?? 'unknown';
        const answer = create(namespace, raw, manager);
        return {
          answer,
          record: { ...record, ...(answer.name === undefined ? {} : { name: answer.name }) },
        };
      }
    }
  };

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const { answer, record } = decide(req, Buffer.concat(chunks).toString('utf8'));
      const recorded: RecordedRequest = {
        ...record,
        status: answer.status,
        ...(answer.reason === undefined ? {} : { reason: answer.reason }),
      };
      requests.push(recorded);
      const send = (): void => {
        const text = JSON.stringify(answer.body);
        res.writeHead(answer.status, {
          'Content-Type': 'application/json',
          'Cache-Control': 'no-cache, private',
          'Content-Length': Buffer.byteLength(text),
        });
        res.end(text);
      };
      const pending = hook?.(recorded);
      if (pending === undefined) send();
      else {
        pending.then(send, () => {
          res.destroy();
        });
      }
    });
  };

  const server: Server = certs
    ? createHttpsServer(
        {
          cert: readFileSync(certs.server.certFile),
          key: readFileSync(certs.server.keyFile),
        },
        handler,
      )
    : createHttpServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const [firstToken = defaultToken, firstUser = DEFAULT_USER] = Object.entries(tokens)[0] ?? [];

  return {
    url,
    port,
    token: firstToken,
    user: firstUser,
    caPem: certs?.caPem,
    caFile: certs?.caFile,
    requests,
    count(filter = {}) {
      return requests.filter((r) =>
        Object.entries(filter).every(
          ([field, value]) => (r as unknown as Record<string, unknown>)[field] === value,
        ),
      ).length;
    },
    setAuthorizer(next) {
      authorize = next;
    },
    setResponseHook(next) {
      hook = next;
    },
    seedSecret(namespace, secret) {
      const data: Record<string, string> = { ...(secret.data ?? {}) };
      for (const [k, v] of Object.entries(secret.stringData ?? {})) {
        data[k] = Buffer.from(v, 'utf8').toString('base64');
      }
      return stored(
        namespace,
        secret.name,
        {
          ...(Object.keys(data).length > 0 ? { data } : {}),
          ...(secret.type === undefined ? {} : { type: secret.type }),
          ...(secret.labels === undefined ? {} : { labels: { ...secret.labels } }),
          ...(secret.annotations === undefined ? {} : { annotations: { ...secret.annotations } }),
        },
        'test-seed',
      );
    },
    getSecret(namespace, name) {
      const secret = store.get(keyOf(namespace, name));
      return secret === undefined ? undefined : structuredClone(secret);
    },
    deleteSecret(namespace, name) {
      return store.delete(keyOf(namespace, name));
    },
    async writeKubeconfig(file, kubeconfig = {}) {
      const cluster = [`    server: ${JSON.stringify(url)}`];
      if (certs === undefined) cluster.push('    insecure-skip-tls-verify: true');
      else if (kubeconfig.ca === 'file') {
        cluster.push(`    certificate-authority: ${JSON.stringify(certs.caFile)}`);
      } else {
        cluster.push(
          `    certificate-authority-data: ${Buffer.from(certs.caPem).toString('base64')}`,
        );
      }
      const context = ['    cluster: fake', '    user: fake'];
      if (kubeconfig.namespace !== undefined) {
        context.push(`    namespace: ${JSON.stringify(kubeconfig.namespace)}`);
      }
      const text = [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: fake',
        '  cluster:',
        ...cluster,
        'contexts:',
        '- name: fake',
        '  context:',
        ...context,
        'current-context: fake',
        'users:',
        '- name: fake',
        '  user:',
        `    token: ${JSON.stringify(kubeconfig.token ?? firstToken)}`,
        '',
      ].join('\n');
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, text, { mode: 0o600 });
      return file;
    },
    async writeServiceAccount(prefix, namespace, token = firstToken) {
      if (certs === undefined) {
        throw new Error('in-cluster clients always use HTTPS: start the fake with tls enabled');
      }
      const dir = join(prefix, 'var/run/secrets/kubernetes.io/serviceaccount');
      await mkdir(dir, { recursive: true });
      // The kubelet writes the token without a trailing newline; the client sends it verbatim.
      await writeFile(join(dir, 'token'), token, { mode: 0o600 });
      await writeFile(join(dir, 'ca.crt'), certs.caPem);
      await writeFile(join(dir, 'namespace'), namespace);
      return { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(port) };
    },
    async close() {
      hook = undefined;
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      });
      if (certDir !== undefined) {
        await rm(certDir, { recursive: true, force: true });
        forgetOnExit(certDir);
      }
    },
  };
}
