/**
 * metav1.Status failures with the codes, reasons, messages and details the real API server
 * returns (apimachinery pkg/api/errors), and field errors rendered as apimachinery's field.Error.
 * Every handler failure becomes one of these; nothing else reaches the wire as an error.
 */

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

/** A resource named by group and plural, as errors name it (`deployments.apps`). */
export interface GroupResource {
  group: string;
  resource: string;
}

/** A failure the API answers with a Status object. */
export class ApiError extends Error {
  readonly status: Status;
  /** Extra response headers (Retry-After). */
  readonly headers: Record<string, string>;

  constructor(status: Status, headers: Record<string, string> = {}) {
    super(status.message ?? status.reason ?? 'error');
    this.name = 'ApiError';
    this.status = status;
    this.headers = headers;
  }

  get code(): number {
    return this.status.code;
  }

  get reason(): string {
    return this.status.reason ?? '';
  }
}

export function failure(code: number, reason: string, message: string, details?: StatusDetails): ApiError {
  const status: Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
  if (details !== undefined) status.details = details;
  return new ApiError(status);
}

export function qualifiedResource(gr: GroupResource): string {
  return gr.group === '' ? gr.resource : `${gr.resource}.${gr.group}`;
}

function grDetails(gr: GroupResource, name?: string): StatusDetails {
  const d: StatusDetails = {};
  if (name !== undefined && name !== '') d.name = name;
  if (gr.group !== '') d.group = gr.group;
  d.kind = gr.resource;
  return d;
}

export function notFound(gr: GroupResource, name: string): ApiError {
  return failure(404, 'NotFound', `${qualifiedResource(gr)} "${name}" not found`, grDetails(gr, name));
}

export function alreadyExists(gr: GroupResource, name: string): ApiError {
  return failure(409, 'AlreadyExists', `${qualifiedResource(gr)} "${name}" already exists`, grDetails(gr, name));
}

export function conflict(gr: GroupResource, name: string, why: string): ApiError {
  return failure(409, 'Conflict', `Operation cannot be fulfilled on ${qualifiedResource(gr)} "${name}": ${why}`, grDetails(gr, name));
}

export const CONFLICT_MODIFIED =
  'the object has been modified; please apply your changes to the latest version and try again';

export function badRequest(message: string): ApiError {
  return failure(400, 'BadRequest', message);
}

export function methodNotAllowed(): ApiError {
  return failure(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
}

export function pathNotFound(): ApiError {
  return failure(404, 'NotFound', 'the server could not find the requested resource', {});
}

export function expired(message: string): ApiError {
  return failure(410, 'Expired', message);
}

export function gone(message: string): ApiError {
  return failure(410, 'Gone', message);
}

export function unauthorized(): ApiError {
  return failure(401, 'Unauthorized', 'Unauthorized');
}

export function forbidden(gr: GroupResource, name: string, why: string): ApiError {
  const subject = name === '' ? qualifiedResource(gr) : `${qualifiedResource(gr)} "${name}"`;
  return failure(403, 'Forbidden', `${subject} is forbidden: ${why}`, grDetails(gr, name));
}

export function forbiddenPath(why: string): ApiError {
  return failure(403, 'Forbidden', `forbidden: ${why}`, {});
}

export function unsupportedMediaType(accepted: string[]): ApiError {
  return failure(
    415,
    'UnsupportedMediaType',
    `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`,
  );
}

export function notAcceptable(accepted: string[]): ApiError {
  return failure(406, 'NotAcceptable', `only the following media types are accepted: ${accepted.join(', ')}`);
}

export function tooLarge(limitBytes: number): ApiError {
  return failure(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${limitBytes}`);
}

export function internalError(message: string): ApiError {
  return failure(500, 'InternalError', `Internal error occurred: ${message}`, {
    causes: [{ message }],
  });
}

export function timeout(message: string, retryAfterSeconds: number): ApiError {
  return failure(504, 'Timeout', message, { retryAfterSeconds });
}

/** The type of a field error (apimachinery field.ErrorType): cause reason and rendered text. */
export const FieldErrorTypes = {
  NotFound: ['FieldValueNotFound', 'Not found'],
  Required: ['FieldValueRequired', 'Required value'],
  Duplicate: ['FieldValueDuplicate', 'Duplicate value'],
  Invalid: ['FieldValueInvalid', 'Invalid value'],
  NotSupported: ['FieldValueNotSupported', 'Unsupported value'],
  Forbidden: ['FieldValueForbidden', 'Forbidden'],
  TooLong: ['FieldValueTooLong', 'Too long'],
  TooMany: ['FieldValueTooMany', 'Too many'],
  Internal: ['InternalError', 'Internal error'],
  TypeInvalid: ['FieldValueTypeInvalid', 'Invalid value'],
} as const;

export type FieldErrorType = keyof typeof FieldErrorTypes;

export interface FieldError {
  type: FieldErrorType;
  /** Dotted path with `[i]`/`[key]` segments, as apimachinery's field.Path renders it. */
  field: string;
  /** The offending value; omitted for Required/Forbidden/TooLong/Internal. */
  value?: unknown;
  detail?: string;
}

export function fieldError(type: FieldErrorType, field: string, value: unknown, detail?: string): FieldError {
  const e: FieldError = { type, field };
  if (value !== undefined) e.value = value;
  if (detail !== undefined) e.detail = detail;
  return e;
}

function renderBadValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === null) return 'null';
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

/** The text after the field path (`Invalid value: "x": must be ...`). */
export function fieldErrorBody(e: FieldError): string {
  const text = FieldErrorTypes[e.type][1];
  const omitsValue = e.type === 'Required' || e.type === 'Forbidden' || e.type === 'TooLong' || e.type === 'Internal';
  let s = omitsValue || !('value' in e) ? text : `${text}: ${renderBadValue(e.value)}`;
  if (e.detail !== undefined && e.detail !== '') s += `: ${e.detail}`;
  return s;
}

export function fieldErrorText(e: FieldError): string {
  return `${e.field}: ${fieldErrorBody(e)}`;
}

/** `Kind` or `Kind.group`, as NewInvalid names the object. */
export interface GroupKind {
  group: string;
  kind: string;
}

/** 422 Invalid listing every field error, with causes as the real server sends them. */
export function invalid(gk: GroupKind, name: string, errors: FieldError[]): ApiError {
  const qualified = gk.group === '' ? gk.kind : `${gk.kind}.${gk.group}`;
  const texts = errors.map(fieldErrorText);
  const agg = texts.length === 1 ? texts[0]! : `[${texts.join(', ')}]`;
  const details: StatusDetails = {};
  if (name !== '') details.name = name;
  if (gk.group !== '') details.group = gk.group;
  details.kind = gk.kind;
  details.causes = errors.map((e) => ({ reason: FieldErrorTypes[e.type][0], message: fieldErrorBody(e), field: e.field }));
  return failure(422, 'Invalid', `${qualified} "${name}" is invalid: ${agg}`, details);
}

export function isApiError(e: unknown): e is ApiError {
  return e instanceof ApiError;
}
