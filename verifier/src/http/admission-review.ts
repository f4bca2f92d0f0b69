/**
 * The wire form of `admission.k8s.io/v1` AdmissionReview, as kube-apiserver's webhook dispatcher
 * sends and decodes it: strict validation of the request, and a reply that carries exactly the
 * fields of the contract.
 *
 * What the dispatcher does with a reply decides how problems are answered: a reply whose
 * `response.uid` differs from the request's is an error (failurePolicy decides), and so is any
 * non-200 status. So a request whose uid we can read gets a 200 with `allowed: false` and a 400
 * status when the rest of it is unusable, and only a body without a usable uid gets an HTTP 400.
 * Either way nothing malformed is ever admitted.
 */
import { describe, isRecord, type JsonRecord } from './json-shape.js';

/** The only API version served (the webhook configurations list only it). */
export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
/** The only kind accepted and answered. */
export const ADMISSION_REVIEW_KIND = 'AdmissionReview';

/** kube-apiserver uses 36-character UUIDs; anything far longer is not from it. */
const MAX_UID_LENGTH = 128;

/** What was asked, as the apiserver names it. */
export type AdmissionOperation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';

const OPERATIONS: ReadonlySet<string> = new Set(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);

/** The parts of `request` the webhooks use. */
export interface AdmissionRequest {
  readonly uid: string;
  /** `request.kind`: the group (empty for the core group), version and kind of `object`. */
  readonly kind: { readonly group: string; readonly version: string; readonly kind: string };
  /** `request.resource.resource`, e.g. `pods`. */
  readonly resource: string;
  /** `request.subResource`, empty when the resource itself is admitted. */
  readonly subResource: string;
  readonly operation: AdmissionOperation;
  /** Empty for cluster-scoped objects. */
  readonly namespace: string;
  readonly object: JsonRecord | undefined;
  readonly oldObject: JsonRecord | undefined;
}

/** A request that fits the contract; or why not, with the uid when it can be echoed. */
export type ParsedAdmissionReview =
  | { readonly ok: true; readonly request: AdmissionRequest }
  | { readonly ok: false; readonly uid: string | undefined; readonly problem: string };

/** `response.status` of a refusal, as metav1.Status. */
export interface AdmissionStatus {
  readonly code: number;
  readonly message: string;
}

/** `response` of the reply; optional fields are omitted when empty (Go `omitempty`). */
export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly status?: AdmissionStatus;
  readonly patchType?: 'JSONPatch';
  /** base64 of the JSON Patch (RFC 6902) document. */
  readonly patch?: string;
  readonly warnings?: readonly string[];
}

/** The reply body. */
export interface AdmissionReviewReply {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: typeof ADMISSION_REVIEW_KIND;
  readonly response: AdmissionResponse;
}

/** An optional string field: absent means empty (Go `omitempty`), another type is malformed. */
function optionalString(record: JsonRecord, field: string, at: string): string | Error {
  const value = record[field] ?? '';
  return typeof value === 'string'
    ? value
    : new Error(`${at}.${field} must be a string, got ${describe(value)}`);
}

/** Validates a parsed JSON body as an AdmissionReview request. */
export function parseAdmissionReview(body: unknown): ParsedAdmissionReview {
  if (!isRecord(body)) {
    return {
      ok: false,
      uid: undefined,
      problem: `the body must be a JSON object, got ${describe(body)}`,
    };
  }
  const request = body['request'];
  const rawUid = isRecord(request) ? request['uid'] : undefined;
  const uid =
    typeof rawUid === 'string' && rawUid.length > 0 && rawUid.length <= MAX_UID_LENGTH
      ? rawUid
      : undefined;
  const fail = (problem: string): ParsedAdmissionReview => ({ ok: false, uid, problem });
  // A review in another version is not one we can answer in its own terms: no uid to echo.
  if (body['apiVersion'] !== ADMISSION_API_VERSION) {
    return {
      ok: false,
      uid: undefined,
      problem: `apiVersion must be "${ADMISSION_API_VERSION}", got ${describe(body['apiVersion'])}`,
    };
  }
  if (body['kind'] !== ADMISSION_REVIEW_KIND) {
    return {
      ok: false,
      uid: undefined,
      problem: `kind must be "${ADMISSION_REVIEW_KIND}", got ${describe(body['kind'])}`,
    };
  }
  if (!isRecord(request)) return fail(`request must be an object, got ${describe(request)}`);
  if (uid === undefined) {
    return fail(
      `request.uid must be a non-empty string of at most ${MAX_UID_LENGTH} characters, got ${describe(rawUid)}`,
    );
  }

  const kind = request['kind'];
  if (!isRecord(kind)) return fail(`request.kind must be an object, got ${describe(kind)}`);
  const group = optionalString(kind, 'group', 'request.kind');
  const version = optionalString(kind, 'version', 'request.kind');
  const kindName = optionalString(kind, 'kind', 'request.kind');
  for (const part of [group, version, kindName])
    if (part instanceof Error) return fail(part.message);

  const resource = request['resource'];
  if (!isRecord(resource))
    return fail(`request.resource must be an object, got ${describe(resource)}`);
  const resourceName = optionalString(resource, 'resource', 'request.resource');
  if (resourceName instanceof Error) return fail(resourceName.message);
  const subResource = optionalString(request, 'subResource', 'request');
  if (subResource instanceof Error) return fail(subResource.message);
  const namespace = optionalString(request, 'namespace', 'request');
  if (namespace instanceof Error) return fail(namespace.message);

  const operation = request['operation'];
  if (typeof operation !== 'string' || !OPERATIONS.has(operation)) {
    return fail(
      `request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got ${describe(operation)}`,
    );
  }
  const object = request['object'] ?? undefined;
  if (object !== undefined && !isRecord(object)) {
    return fail(`request.object must be an object, got ${describe(object)}`);
  }
  const oldObject = request['oldObject'] ?? undefined;
  if (oldObject !== undefined && !isRecord(oldObject)) {
    return fail(`request.oldObject must be an object, got ${describe(oldObject)}`);
  }
  return {
    ok: true,
    request: {
      uid,
      kind: { group: group as string, version: version as string, kind: kindName as string },
      resource: resourceName,
      subResource,
      operation: operation as AdmissionOperation,
      namespace,
      object,
      oldObject,
    },
  };
}

/** Wraps a response in the reply envelope. */
export function admissionReviewReply(response: AdmissionResponse): AdmissionReviewReply {
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_REVIEW_KIND, response };
}

/** A refusal: `allowed: false` with the status the apiserver shows the client. */
export function refusal(uid: string, code: number, message: string): AdmissionReviewReply {
  return admissionReviewReply({ uid, allowed: false, status: { code, message } });
}
