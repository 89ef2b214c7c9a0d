/** The error type every Ambit component throws, and the catalogue of its codes. */

/**
 * Every code Ambit can raise. Keys equal values; each is documented in README.md
 * ("Error codes"), which a unit test checks. Never renumber or reuse a retired code.
 */
export const ErrorCodes = {
  AMBIT_ERR_CONFIG_INVALID: 'AMBIT_ERR_CONFIG_INVALID',
  AMBIT_ERR_MANIFEST_INVALID: 'AMBIT_ERR_MANIFEST_INVALID',
  AMBIT_ERR_MANIFEST_READ: 'AMBIT_ERR_MANIFEST_READ',
  AMBIT_ERR_UNKNOWN_KIND: 'AMBIT_ERR_UNKNOWN_KIND',
  AMBIT_ERR_DURATION_INVALID: 'AMBIT_ERR_DURATION_INVALID',
  AMBIT_ERR_SPIFFE_INVALID: 'AMBIT_ERR_SPIFFE_INVALID',
  AMBIT_ERR_CA_INIT: 'AMBIT_ERR_CA_INIT',
  AMBIT_ERR_CA_CSR_INVALID: 'AMBIT_ERR_CA_CSR_INVALID',
  AMBIT_ERR_CA_UNAUTHENTICATED: 'AMBIT_ERR_CA_UNAUTHENTICATED',
  AMBIT_ERR_CA_IDENTITY_DENIED: 'AMBIT_ERR_CA_IDENTITY_DENIED',
  AMBIT_ERR_CERT_FETCH: 'AMBIT_ERR_CERT_FETCH',
  AMBIT_ERR_CERT_UNAVAILABLE: 'AMBIT_ERR_CERT_UNAVAILABLE',
  AMBIT_ERR_XDS_NACK: 'AMBIT_ERR_XDS_NACK',
  AMBIT_ERR_XDS_STREAM: 'AMBIT_ERR_XDS_STREAM',
  AMBIT_ERR_XDS_SYNC_TIMEOUT: 'AMBIT_ERR_XDS_SYNC_TIMEOUT',
  AMBIT_ERR_BPF_UNSUPPORTED: 'AMBIT_ERR_BPF_UNSUPPORTED',
  AMBIT_ERR_BPF_LOAD: 'AMBIT_ERR_BPF_LOAD',
  AMBIT_ERR_BPF_ATTACH: 'AMBIT_ERR_BPF_ATTACH',
  AMBIT_ERR_BPF_MAP: 'AMBIT_ERR_BPF_MAP',
  AMBIT_ERR_NATIVE_CALL: 'AMBIT_ERR_NATIVE_CALL',
  AMBIT_ERR_NETNS_ENTER: 'AMBIT_ERR_NETNS_ENTER',
  AMBIT_ERR_NFT_APPLY: 'AMBIT_ERR_NFT_APPLY',
  AMBIT_ERR_CAPTURE_FAILED: 'AMBIT_ERR_CAPTURE_FAILED',
  AMBIT_ERR_TUNNEL_HANDSHAKE: 'AMBIT_ERR_TUNNEL_HANDSHAKE',
  AMBIT_ERR_TUNNEL_CONNECT: 'AMBIT_ERR_TUNNEL_CONNECT',
  AMBIT_ERR_TUNNEL_IDENTITY: 'AMBIT_ERR_TUNNEL_IDENTITY',
  AMBIT_ERR_TUNNEL_REFUSED: 'AMBIT_ERR_TUNNEL_REFUSED',
  AMBIT_ERR_NO_ROUTE: 'AMBIT_ERR_NO_ROUTE',
  AMBIT_ERR_NO_ENDPOINT: 'AMBIT_ERR_NO_ENDPOINT',
  AMBIT_ERR_POLICY_DENIED: 'AMBIT_ERR_POLICY_DENIED',
  AMBIT_ERR_UPSTREAM_CONNECT: 'AMBIT_ERR_UPSTREAM_CONNECT',
  AMBIT_ERR_UPSTREAM_TIMEOUT: 'AMBIT_ERR_UPSTREAM_TIMEOUT',
  AMBIT_ERR_UPSTREAM_OVERFLOW: 'AMBIT_ERR_UPSTREAM_OVERFLOW',
  AMBIT_ERR_DNS_UPSTREAM: 'AMBIT_ERR_DNS_UPSTREAM',
  AMBIT_ERR_REQUEST_CANCELLED: 'AMBIT_ERR_REQUEST_CANCELLED',
  AMBIT_ERR_LOCAL_NOT_RUNNING: 'AMBIT_ERR_LOCAL_NOT_RUNNING',
  AMBIT_ERR_LOCAL_ALREADY_RUNNING: 'AMBIT_ERR_LOCAL_ALREADY_RUNNING',
  AMBIT_ERR_LOCAL_SETUP: 'AMBIT_ERR_LOCAL_SETUP',
  AMBIT_ERR_LOCAL_TIMEOUT: 'AMBIT_ERR_LOCAL_TIMEOUT',
  AMBIT_ERR_LOCAL_POD_NOT_FOUND: 'AMBIT_ERR_LOCAL_POD_NOT_FOUND',
  AMBIT_ERR_LOCAL_SANDBOX: 'AMBIT_ERR_LOCAL_SANDBOX',
  AMBIT_ERR_REQUIRES_ROOT: 'AMBIT_ERR_REQUIRES_ROOT',
  AMBIT_ERR_CLI_USAGE: 'AMBIT_ERR_CLI_USAGE',
  AMBIT_ERR_ADMIN_UNAVAILABLE: 'AMBIT_ERR_ADMIN_UNAVAILABLE',
  AMBIT_ERR_CRD_SCHEMA_INVALID: 'AMBIT_ERR_CRD_SCHEMA_INVALID',
  AMBIT_ERR_CNI_INVALID: 'AMBIT_ERR_CNI_INVALID',
  AMBIT_ERR_CNI_KUBE_LOOKUP: 'AMBIT_ERR_CNI_KUBE_LOOKUP',
  AMBIT_ERR_CNI_AGENT_UNREACHABLE: 'AMBIT_ERR_CNI_AGENT_UNREACHABLE',
  AMBIT_ERR_CNI_AGENT_REFUSED: 'AMBIT_ERR_CNI_AGENT_REFUSED',
  AMBIT_ERR_CNI_REQUEST_INVALID: 'AMBIT_ERR_CNI_REQUEST_INVALID',
  AMBIT_ERR_CNI_INSTALL: 'AMBIT_ERR_CNI_INSTALL',
  AMBIT_ERR_APISERVER_START: 'AMBIT_ERR_APISERVER_START',
  AMBIT_ERR_APISERVER_STATE: 'AMBIT_ERR_APISERVER_STATE',
  AMBIT_ERR_APISERVER_REQUEST: 'AMBIT_ERR_APISERVER_REQUEST',
  AMBIT_ERR_KUBE_API: 'AMBIT_ERR_KUBE_API',
  AMBIT_ERR_KUBE_CONFIG: 'AMBIT_ERR_KUBE_CONFIG',
  AMBIT_ERR_TOKEN_REVIEW: 'AMBIT_ERR_TOKEN_REVIEW',
  AMBIT_ERR_TOKEN_FILE: 'AMBIT_ERR_TOKEN_FILE',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export interface AmbitErrorOptions {
  cause?: unknown;
  /** Structured context (never key material): paths, values, verifier logs. */
  details?: Record<string, unknown>;
}

export class AmbitError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: AmbitErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AmbitError';
    this.code = code;
    this.details = options.details;
  }
}

/** The message of anything thrown, for logs; never throws itself. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

/** The `code` of anything thrown (AmbitError codes, Node's `E...` codes), or undefined. */
export function errorCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const c = (e as { code: unknown }).code;
    if (typeof c === 'string') return c;
    if (typeof c === 'number') return String(c);
  }
  return undefined;
}

export function isAmbitError(e: unknown, code?: ErrorCode): e is AmbitError {
  return e instanceof AmbitError && (code === undefined || e.code === code);
}
