/**
 * The parts of Istio's mesh config Ambit reads, from where Istio keeps it: ConfigMap `istio` in the
 * root namespace (istio-system), key `mesh`, a YAML MeshConfig. Today that is `extensionProviders`
 * of kind `envoyExtAuthzHttp` and `envoyExtAuthzGrpc` (the external authorizers CUSTOM
 * AuthorizationPolicies name) and `defaultConfig.gatewayTopology.numTrustedProxies`. A provider that cannot be used keeps its name with the reason, so
 * a policy naming it can say why it denies (pure).
 */
import { parse as parseYaml } from 'yaml';
import type { ExtAuthzProvider } from '../../shared/routes.js';
import { MAX_CHECK_BODY_BYTES } from '../../shared/validate-routes.js';
import { ISTIO_DEFAULT_TEXT_FORMAT, parseAccessLogFormat, unsupportedOperators } from '../../shared/access-log-format.js';
import { tryParseDuration } from '../../shared/duration.js';
import type { KubeObject } from '../objects.js';
import { toStringMatch } from './string-match.js';
import { asArray, asRecord, asString, nsOf } from './util.js';

export const MESH_CONFIG_MAP = 'istio';
export const MESH_CONFIG_KEY = 'mesh';
/** Istio's default ext_authz timeout (the HTTP service's server_uri timeout). */
const DEFAULT_TIMEOUT_MS = 600_000;

/** A provider as declared, before its service is looked up; `service` without the namespace part. */
export type DeclaredProvider = { ok: true; provider: ExtAuthzProvider; namespace?: string } | { ok: false; name: string; reason: string };

export interface MeshExtensionProviders {
  /** Where they came from, for messages: `istio-system/istio` key `mesh`, or that it is missing. */
  source: string;
  /** Why the whole mesh config could not be read (every provider is then unknown). */
  error?: string;
  byName: Map<string, DeclaredProvider>;
}

const HTTP_FIELDS = new Set(['service', 'port', 'timeout', 'pathPrefix', 'failOpen', 'statusOnError', 'includeRequestHeadersInCheck', 'includeHeadersInCheck', 'includeAdditionalHeadersInCheck', 'includeRequestBodyInCheck', 'headersToUpstreamOnAllow', 'headersToDownstreamOnDeny', 'headersToDownstreamOnAllow', 'clearRouteCache']);
const GRPC_FIELDS = new Set(['service', 'port', 'timeout', 'failOpen', 'statusOnError', 'includeRequestBodyInCheck', 'clearRouteCache']);
/** Fields Ambit reads; the others are named in the policy's condition as not supported. */
const SERVED = new Set(['service', 'port', 'timeout', 'pathPrefix', 'failOpen', 'statusOnError', 'includeRequestHeadersInCheck', 'includeHeadersInCheck', 'headersToUpstreamOnAllow', 'headersToDownstreamOnDeny', 'headersToDownstreamOnAllow', 'includeAdditionalHeadersInCheck', 'includeRequestBodyInCheck']);

/** The mesh config of the objects of one retranslate, parsed, or why there is none. */
function readMesh(configMaps: readonly KubeObject[], rootNamespace: string): { source: string; mesh?: Record<string, unknown>; error?: string } {
  const source = `ConfigMap ${rootNamespace}/${MESH_CONFIG_MAP} key ${MESH_CONFIG_KEY}`;
  const cm = configMaps.find((c) => nsOf(c) === rootNamespace && c.metadata.name === MESH_CONFIG_MAP);
  const text = asString(asRecord(cm?.['data'])[MESH_CONFIG_KEY]);
  if (text === undefined) return { source, error: `${source} does not exist` };
  try {
    return { source, mesh: asRecord(parseYaml(text)) };
  } catch (e) {
    return { source, error: `${source} is not valid YAML: ${(e as Error).message.split('\n')[0]}` };
  }
}

/** The proxy defaults of the mesh config (`defaultConfig`) Ambit reads: `gatewayTopology.numTrustedProxies`. */
export interface MeshProxyDefaults {
  numTrustedProxies?: number;
}

/**
 * `defaultConfig` of the mesh config: what every proxy gets unless its pod's `proxy.istio.io/config`
 * annotation says otherwise (Istio's precedence). A missing or unreadable mesh config, or a value
 * that is not a count, gives no default.
 */
export function meshProxyDefaults(configMaps: readonly KubeObject[], rootNamespace: string): MeshProxyDefaults {
  const { mesh } = readMesh(configMaps, rootNamespace);
  const n = asRecord(asRecord(asRecord(mesh)['defaultConfig'])['gatewayTopology'])['numTrustedProxies'];
  return validTrustedProxies(n) ? { numTrustedProxies: n } : {};
}

/** A usable `gatewayTopology.numTrustedProxies` (an integer 0..64). */
export function validTrustedProxies(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 64;
}

/** An access-log provider of the mesh config as a proxy uses it, or why it cannot be. */
export type AccessLogProvider = { format: { text: string } | { labels: Record<string, string> }; note?: string } | { problem: string };

/** The mesh config's access-log providers by name (with Istio's built-in `envoy`), and `defaultProviders.accessLogging`. */
export function meshAccessLogProviders(configMaps: readonly KubeObject[], rootNamespace: string): { byName: Map<string, AccessLogProvider>; defaults: string[] } {
  const { mesh } = readMesh(configMaps, rootNamespace);
  const byName = new Map<string, AccessLogProvider>([['envoy', { format: { text: ISTIO_DEFAULT_TEXT_FORMAT } }]]);
  for (const raw of asArray(asRecord(mesh)['extensionProviders'])) {
    const p = asRecord(raw);
    const name = asString(p['name']);
    if (!name) continue;
    if (p['envoyFileAccessLog'] === undefined) {
      const kind = Object.keys(p).find((k) => k !== 'name') ?? 'nothing';
      byName.set(name, { problem: `provider ${name} is ${kind}; Ambit writes access logs as envoyFileAccessLog providers describe them` });
      continue;
    }
    const file = asRecord(p['envoyFileAccessLog']);
    const fmt = asRecord(file['logFormat']);
    const path = asString(file['path']) ?? '/dev/stdout';
    const note = path === '/dev/stdout' ? undefined : `provider ${name}: path ${path} is not used (lines go to the proxy's standard output)`;
    let format: { text: string } | { labels: Record<string, string> } = { text: ISTIO_DEFAULT_TEXT_FORMAT };
    if (typeof fmt['text'] === 'string') format = { text: fmt['text'] };
    else if (fmt['labels'] !== undefined) {
      const labels: Record<string, string> = {};
      for (const [k, v] of Object.entries(asRecord(fmt['labels']))) labels[k] = String(v);
      format = { labels };
    }
    const texts = 'text' in format ? [format.text] : Object.values(format.labels);
    let problem: string | undefined;
    const unsupported = new Set<string>();
    for (const t of texts) {
      try {
        for (const op of unsupportedOperators(parseAccessLogFormat(t))) unsupported.add(op);
      } catch (e) {
        problem = `provider ${name}: logFormat ${(e as Error).message}`;
      }
    }
    if (problem) byName.set(name, { problem });
    else {
      const notes = [...(note ? [note] : []), ...(unsupported.size > 0 ? [`provider ${name}: command operators ${[...unsupported].join(', ')} are not supported and render "-"`] : [])];
      byName.set(name, { format, ...(notes.length > 0 ? { note: notes.join('; ') } : {}) });
    }
  }
  const defaults = asArray(asRecord(asRecord(mesh)['defaultProviders'])['accessLogging']).filter((x): x is string => typeof x === 'string');
  return { byName, defaults };
}

/** The mesh config's extension providers from the objects of one retranslate. */
export function meshExtensionProviders(configMaps: readonly KubeObject[], rootNamespace: string): MeshExtensionProviders {
  const { source, mesh, error } = readMesh(configMaps, rootNamespace);
  const out: MeshExtensionProviders = { source, byName: new Map() };
  if (error !== undefined) {
    out.error = error;
    return out;
  }
  asArray(asRecord(mesh)['extensionProviders']).forEach((raw, i) => {
    const p = asRecord(raw);
    const name = asString(p['name']) ?? '';
    if (name === '') return;
    if (out.byName.has(name)) {
      out.byName.set(name, { ok: false, name, reason: `extensionProviders[${i}]: the name ${JSON.stringify(name)} is not unique in ${source}` });
      return;
    }
    out.byName.set(name, declaredProvider(name, p, `${source} extensionProviders[${i}]`));
  });
  return out;
}

function declaredProvider(name: string, p: Record<string, unknown>, where: string): DeclaredProvider {
  const fail = (reason: string): DeclaredProvider => ({ ok: false, name, reason: `${where}: ${reason}` });
  const http = p['envoyExtAuthzHttp'] !== undefined;
  const grpc = p['envoyExtAuthzGrpc'] !== undefined;
  if (!http && !grpc) return fail('is not envoyExtAuthzHttp or envoyExtAuthzGrpc (the only kinds Ambit serves)');
  const spec = asRecord(http ? p['envoyExtAuthzHttp'] : p['envoyExtAuthzGrpc']);
  const kind = http ? 'envoyExtAuthzHttp' : 'envoyExtAuthzGrpc';
  const fields = http ? HTTP_FIELDS : GRPC_FIELDS;
  for (const k of Object.keys(spec)) if (!fields.has(k)) return fail(`${kind}.${k} is not a field of ${kind}`);
  const unsupported = Object.keys(spec).filter((k) => !SERVED.has(k) && spec[k] !== false && spec[k] !== undefined);
  if (unsupported.length > 0) return fail(`${kind}.${unsupported.join(', ')} ${unsupported.length === 1 ? 'is' : 'are'} not supported`);
  const rawService = asString(spec['service']) ?? '';
  if (rawService === '') return fail(`${kind}.service must name the authorizer's service`);
  const slash = rawService.indexOf('/');
  const namespace = slash > 0 ? rawService.slice(0, slash) : undefined;
  const service = (slash > 0 ? rawService.slice(slash + 1) : rawService).toLowerCase();
  const port = Number(spec['port']);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return fail(`${kind}.port ${JSON.stringify(spec['port'])} is not a port 1..65535`);
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  if (spec['timeout'] !== undefined) {
    const t = typeof spec['timeout'] === 'string' ? tryParseDuration(spec['timeout']) : undefined;
    if (t === undefined || t <= 0) return fail(`${kind}.timeout ${JSON.stringify(spec['timeout'])} is not a positive duration such as "0.5s"`);
    timeoutMs = Math.max(1, Math.round(t));
  }
  if (spec['failOpen'] !== undefined && typeof spec['failOpen'] !== 'boolean') return fail(`${kind}.failOpen must be true or false`);
  let statusOnError: number | undefined;
  if (spec['statusOnError'] !== undefined) {
    statusOnError = Number(spec['statusOnError']);
    if (!Number.isInteger(statusOnError) || statusOnError < 100 || statusOnError > 599) return fail(`${kind}.statusOnError ${JSON.stringify(spec['statusOnError'])} is not an HTTP status`);
  }
  const provider: ExtAuthzProvider = { name, protocol: http ? 'http' : 'grpc', service, port, timeoutMs, failOpen: spec['failOpen'] === true, ...(statusOnError !== undefined ? { statusOnError } : {}) };
  if (spec['includeRequestBodyInCheck'] !== undefined) {
    const b = spec['includeRequestBodyInCheck'];
    const body = asRecord(b);
    const max = body['maxRequestBytes'];
    if (b === null || typeof b !== 'object' || Array.isArray(b)) return fail(`${kind}.includeRequestBodyInCheck must be an object`);
    if (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > MAX_CHECK_BODY_BYTES) return fail(`${kind}.includeRequestBodyInCheck.maxRequestBytes ${JSON.stringify(max)} is not a byte count 1..${MAX_CHECK_BODY_BYTES}`);
    for (const k of ['allowPartialMessage', 'packAsBytes']) if (body[k] !== undefined && typeof body[k] !== 'boolean') return fail(`${kind}.includeRequestBodyInCheck.${k} must be true or false`);
    provider.includeRequestBodyInCheck = { maxRequestBytes: max, allowPartialMessage: body['allowPartialMessage'] === true, packAsBytes: body['packAsBytes'] === true };
  }
  if (http) {
    const prefix = asString(spec['pathPrefix']);
    if (prefix !== undefined) {
      if (!prefix.startsWith('/')) return fail(`${kind}.pathPrefix must begin with "/", found ${JSON.stringify(prefix)}`);
      provider.pathPrefix = prefix;
    }
    const headers = (k: string) => asArray(spec[k]).map((h) => toStringMatch(String(h).toLowerCase()));
    // includeHeadersInCheck is the older name of includeRequestHeadersInCheck.
    const include = [...headers('includeRequestHeadersInCheck'), ...headers('includeHeadersInCheck')];
    if (include.length > 0) provider.includeRequestHeadersInCheck = include;
    if (spec['headersToUpstreamOnAllow'] !== undefined) provider.headersToUpstreamOnAllow = headers('headersToUpstreamOnAllow');
    if (spec['headersToDownstreamOnDeny'] !== undefined) provider.headersToDownstreamOnDeny = headers('headersToDownstreamOnDeny');
    if (spec['headersToDownstreamOnAllow'] !== undefined) provider.headersToDownstreamOnAllow = headers('headersToDownstreamOnAllow');
    if (spec['includeAdditionalHeadersInCheck'] !== undefined) {
      const extra = spec['includeAdditionalHeadersInCheck'];
      if (extra === null || typeof extra !== 'object' || Array.isArray(extra)) return fail(`${kind}.includeAdditionalHeadersInCheck must map header names to values`);
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(extra)) {
        const name = k.toLowerCase();
        if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) return fail(`${kind}.includeAdditionalHeadersInCheck: ${JSON.stringify(k)} is not a header name`);
        if ((typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') || /[\r\n\0]/.test(String(v))) return fail(`${kind}.includeAdditionalHeadersInCheck.${k} must be a one-line string`);
        out[name] = String(v);
      }
      provider.includeAdditionalHeadersInCheck = out;
    }
  }
  return { ok: true, provider, ...(namespace ? { namespace } : {}) };
}
