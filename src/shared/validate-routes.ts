/**
 * Validation of the L7 resources on the kit (shared/validate.ts): RouteConfig (routes, matches,
 * retries, faults, destination policy, L7 authorization), GatewayServer and GatewayListener.
 * validate-resource.ts calls them for pushed resources. Issues about certificate or key text
 * never carry the text itself.
 */
import { isRetryOnToken, OVERRIDABLE_METRICS, RETRY_ON_TOKENS } from './routes.js';
import { parseAccessFilter } from './access-filter.js';
import { parseAccessLogFormat } from './access-log-format.js';
import { ISTIO_HTTP_LABELS } from './istio-metrics.js';
import { arr, cidrProblem, int, isInt, isPercent, isRecord, stringMap, strList, Issues, type Issue } from './validate.js';

function intList(issues: Issues, v: unknown, path: string, min: number, max: number): void {
  (arr(issues, v, path) ?? []).forEach((x, i) => int(issues, x, `${path}[${i}]`, { min, max }));
}





function stringMatcher(issues: Issues, v: unknown, path: string, allowPresent: boolean): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object with exact, prefix or regex', v);
  const keys = Object.keys(v);
  if (keys.length !== 1) return issues.add(path, 'must set exactly one of exact, prefix, regex' + (allowPresent ? ', present' : ''), v);
  const k = keys[0]!;
  const x = v[k];
  if (k === 'present' && allowPresent) {
    if (typeof x !== 'boolean') issues.add(`${path}.present`, 'must be a boolean', x);
    return;
  }
  if (k !== 'exact' && k !== 'prefix' && k !== 'regex') return issues.add(path, `unknown matcher ${JSON.stringify(k)}`, v);
  if (typeof x !== 'string') return issues.add(`${path}.${k}`, 'must be a string', x);
  if (k === 'regex') {
    try {
      new RegExp(`^(?:${x})$`);
    } catch {
      issues.add(`${path}.regex`, 'must be a valid regular expression', x);
    }
  }
}

function authzMatches(issues: Issues, v: unknown, path: string): void {
  if (v === undefined) return;
  if (!Array.isArray(v)) return issues.add(path, 'must be a list', v);
  v.forEach((m, i) => {
    const p = `${path}[${i}]`;
    if (!isRecord(m) || Object.keys(m).length !== 1) return issues.add(p, 'must set exactly one of exact, prefix, suffix, presence', m);
    const [k, x] = Object.entries(m)[0]!;
    if (k === 'presence') {
      if (x !== true) issues.add(`${p}.presence`, 'must be true', x);
    } else if (k === 'exact' || k === 'prefix' || k === 'suffix') {
      if (typeof x !== 'string') issues.add(`${p}.${k}`, 'must be a string', x);
    } else issues.add(p, `unknown matcher ${JSON.stringify(k)}`, m);
  });
}


function headerOps(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object with set, add, remove', v);
  stringMap(issues, v['set'], `${path}.set`);
  stringMap(issues, v['add'], `${path}.add`);
  strList(issues, v['remove'], `${path}.remove`);
}

function backend(issues: Issues, v: unknown, path: string, needWeight: boolean): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (typeof v['host'] !== 'string' || v['host'].length === 0) issues.add(`${path}.host`, 'must be a non-empty hostname', v['host']);
  if (v['port'] !== undefined && !isInt(v['port'], 1, 65535)) issues.add(`${path}.port`, 'must be a port 1..65535', v['port']);
  if (v['subset'] !== undefined && typeof v['subset'] !== 'string') issues.add(`${path}.subset`, 'must be a string', v['subset']);
  stringMap(issues, v['subsetLabels'], `${path}.subsetLabels`);
  if (v['refused'] !== undefined && v['refused'] !== true) issues.add(`${path}.refused`, 'must be true when set', v['refused']);
  if (needWeight && !isInt(v['weight'], 0, 1_000_000)) issues.add(`${path}.weight`, 'must be an integer 0..1000000', v['weight']);
  if (!needWeight && !isPercent(v['percent'])) issues.add(`${path}.percent`, 'must be a number 0..100', v['percent']);
}

function retryPolicy(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (!isInt(v['attempts'], 0, 100)) issues.add(`${path}.attempts`, 'must be an integer 0..100', v['attempts']);
  if (v['perTryTimeoutMs'] !== undefined && !isInt(v['perTryTimeoutMs'], 1)) issues.add(`${path}.perTryTimeoutMs`, 'must be a positive integer', v['perTryTimeoutMs']);
  if (v['backoffMs'] !== undefined && !isInt(v['backoffMs'], 0)) issues.add(`${path}.backoffMs`, 'must be a non-negative integer', v['backoffMs']);
  strList(issues, v['retryOn'], `${path}.retryOn`, { required: true });
  if (Array.isArray(v['retryOn'])) {
    v['retryOn'].forEach((t, i) => {
      if (typeof t === 'string' && !isRetryOnToken(t)) issues.add(`${path}.retryOn[${i}]`, `unknown retry condition; use one of ${RETRY_ON_TOKENS.join(', ')}`, t);
    });
  }
  if (!Array.isArray(v['retriableStatusCodes'])) issues.add(`${path}.retriableStatusCodes`, 'must be a list of integers', v['retriableStatusCodes']);
  else intList(issues, v['retriableStatusCodes'], `${path}.retriableStatusCodes`, 100, 599);
  if (v['retryNonIdempotent'] !== undefined && typeof v['retryNonIdempotent'] !== 'boolean') issues.add(`${path}.retryNonIdempotent`, 'must be a boolean', v['retryNonIdempotent']);
  const b = v['budget'];
  if (b !== undefined) {
    if (!isRecord(b)) issues.add(`${path}.budget`, 'must be an object', b);
    else {
      if (!isPercent(b['percent'])) issues.add(`${path}.budget.percent`, 'must be a number 0..100', b['percent']);
      if (!isInt(b['minConcurrency'], 0)) issues.add(`${path}.budget.minConcurrency`, 'must be a non-negative integer', b['minConcurrency']);
    }
  }
}

function faultPolicy(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  const d = v['delay'];
  if (d !== undefined) {
    if (!isRecord(d)) issues.add(`${path}.delay`, 'must be an object', d);
    else {
      if (!isPercent(d['percent'])) issues.add(`${path}.delay.percent`, 'must be a number 0..100', d['percent']);
      if (!isInt(d['fixedDelayMs'], 0)) issues.add(`${path}.delay.fixedDelayMs`, 'must be a non-negative integer', d['fixedDelayMs']);
    }
  }
  const a = v['abort'];
  if (a !== undefined) {
    if (!isRecord(a)) issues.add(`${path}.abort`, 'must be an object', a);
    else {
      if (!isPercent(a['percent'])) issues.add(`${path}.abort.percent`, 'must be a number 0..100', a['percent']);
      const hasHttp = a['httpStatus'] !== undefined;
      const hasGrpc = a['grpcStatus'] !== undefined;
      if (hasHttp === hasGrpc) issues.add(`${path}.abort`, 'must set exactly one of httpStatus, grpcStatus', a);
      if (hasHttp && !isInt(a['httpStatus'], 200, 599)) issues.add(`${path}.abort.httpStatus`, 'must be an HTTP status 200..599', a['httpStatus']);
      if (hasGrpc && !isInt(a['grpcStatus'], 0, 16)) issues.add(`${path}.abort.grpcStatus`, 'must be a gRPC status code 0..16', a['grpcStatus']);
    }
  }
}

function routeMatch(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (v['uri'] !== undefined) stringMatcher(issues, v['uri'], `${path}.uri`, false);
  if (v['method'] !== undefined && (typeof v['method'] !== 'string' || !/^[A-Z]+$/.test(v['method']))) issues.add(`${path}.method`, 'must be an uppercase HTTP method', v['method']);
  if (v['port'] !== undefined && !isInt(v['port'], 1, 65535)) issues.add(`${path}.port`, 'must be a port 1..65535', v['port']);
  if (v['sourceNamespace'] !== undefined && typeof v['sourceNamespace'] !== 'string') issues.add(`${path}.sourceNamespace`, 'must be a namespace name', v['sourceNamespace']);
  if (v['sourceLabels'] !== undefined) stringMap(issues, v['sourceLabels'], `${path}.sourceLabels`);
  for (const key of ['headers', 'queryParams'] as const) {
    const list = v[key];
    if (!Array.isArray(list)) {
      issues.add(`${path}.${key}`, 'must be a list', list);
      continue;
    }
    list.forEach((h, i) => {
      const p = `${path}.${key}[${i}]`;
      if (!isRecord(h)) return issues.add(p, 'must be an object with name and match', h);
      if (typeof h['name'] !== 'string' || h['name'].length === 0) issues.add(`${p}.name`, 'must be a non-empty string', h['name']);
      else if (key === 'headers' && h['name'] !== h['name'].toLowerCase()) issues.add(`${p}.name`, 'must be lowercase', h['name']);
      stringMatcher(issues, h['match'], `${p}.match`, true);
    });
  }
}

const REDIRECT_CODES = [301, 302, 303, 307, 308];

function redirectPolicy(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (!REDIRECT_CODES.includes(v['code'] as number)) issues.add(`${path}.code`, `must be one of ${REDIRECT_CODES.join(', ')}`, v['code']);
  for (const k of ['scheme', 'authority', 'uri']) if (v[k] !== undefined && typeof v[k] !== 'string') issues.add(`${path}.${k}`, 'must be a string', v[k]);
  if (v['port'] !== undefined) int(issues, v['port'], `${path}.port`, { min: 1, max: 65535 });
  if (v['derivePort'] !== undefined && v['derivePort'] !== 'FROM_REQUEST_PORT' && v['derivePort'] !== 'FROM_PROTOCOL_DEFAULT') issues.add(`${path}.derivePort`, 'must be FROM_REQUEST_PORT or FROM_PROTOCOL_DEFAULT', v['derivePort']);
  if (v['port'] !== undefined && v['derivePort'] !== undefined) issues.add(path, 'must not set both port and derivePort', v);
}

function corsPolicy(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  (arr(issues, v['allowOrigins'], `${path}.allowOrigins`) ?? []).forEach((m, i) => stringMatcher(issues, m, `${path}.allowOrigins[${i}]`, false));
  for (const k of ['allowMethods', 'allowHeaders', 'exposeHeaders']) strList(issues, v[k], `${path}.${k}`);
  if (v['maxAgeSeconds'] !== undefined) int(issues, v['maxAgeSeconds'], `${path}.maxAgeSeconds`, { min: 0 });
  if (v['allowCredentials'] !== undefined && typeof v['allowCredentials'] !== 'boolean') issues.add(`${path}.allowCredentials`, 'must be a boolean', v['allowCredentials']);
  if (v['unmatchedPreflights'] !== 'FORWARD' && v['unmatchedPreflights'] !== 'IGNORE') issues.add(`${path}.unmatchedPreflights`, 'must be FORWARD or IGNORE', v['unmatchedPreflights']);
}

function httpRoute(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (typeof v['name'] !== 'string') issues.add(`${path}.name`, 'must be a string', v['name']);
  if (!Array.isArray(v['match'])) issues.add(`${path}.match`, 'must be a list (empty matches every request)', v['match']);
  else v['match'].forEach((m, i) => routeMatch(issues, m, `${path}.match[${i}]`));
  const direct = v['directResponse'];
  if (direct !== undefined) {
    if (!isRecord(direct) || !isInt(direct['status'], 200, 599)) issues.add(`${path}.directResponse.status`, 'must be an HTTP status 200..599', isRecord(direct) ? direct['status'] : direct);
  }
  if (v['redirect'] !== undefined) redirectPolicy(issues, v['redirect'], `${path}.redirect`);
  if (v['cors'] !== undefined) corsPolicy(issues, v['cors'], `${path}.cors`);
  const local = direct !== undefined || v['redirect'] !== undefined;
  if (direct !== undefined && v['redirect'] !== undefined) issues.add(path, 'must not set both directResponse and redirect', Object.keys(v));
  if (!Array.isArray(v['backends'])) issues.add(`${path}.backends`, 'must be a list', v['backends']);
  else {
    if (v['backends'].length === 0 && !local) issues.add(`${path}.backends`, 'must name at least one backend (or set directResponse or redirect)', v['backends']);
    v['backends'].forEach((b, i) => backend(issues, b, `${path}.backends[${i}]`, true));
    const total = v['backends'].reduce((s: number, b) => s + (isRecord(b) && isInt(b['weight']) ? b['weight'] : 0), 0);
    if (v['backends'].length > 0 && total === 0) issues.add(`${path}.backends`, 'weights must not all be zero', v['backends']);
  }
  const rw = v['rewrite'];
  if (rw !== undefined) {
    if (!isRecord(rw)) issues.add(`${path}.rewrite`, 'must be an object', rw);
    else {
      if (rw['uriPrefix'] !== undefined && typeof rw['uriPrefix'] !== 'string') issues.add(`${path}.rewrite.uriPrefix`, 'must be a string', rw['uriPrefix']);
      for (const k of ['authority', 'matchPrefix', 'fullPath']) {
        if (rw[k] !== undefined && typeof rw[k] !== 'string') issues.add(`${path}.rewrite.${k}`, 'must be a string', rw[k]);
      }
      if (rw['uriPrefix'] !== undefined && rw['fullPath'] !== undefined) issues.add(`${path}.rewrite`, 'must not set both uriPrefix and fullPath', rw);
    }
  }
  if (!isRecord(v['headers'])) issues.add(`${path}.headers`, 'must be an object with request and response', v['headers']);
  else {
    headerOps(issues, v['headers']['request'], `${path}.headers.request`);
    headerOps(issues, v['headers']['response'], `${path}.headers.response`);
  }
  if (v['mirror'] !== undefined) backend(issues, v['mirror'], `${path}.mirror`, false);
  if (v['timeoutMs'] !== undefined && !isInt(v['timeoutMs'], 1)) issues.add(`${path}.timeoutMs`, 'must be a positive integer', v['timeoutMs']);
  if (v['retries'] !== undefined) retryPolicy(issues, v['retries'], `${path}.retries`);
  if (v['fault'] !== undefined) faultPolicy(issues, v['fault'], `${path}.fault`);
}

function l4Route(issues: Issues, v: unknown, path: string, tls: boolean): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (typeof v['name'] !== 'string') issues.add(`${path}.name`, 'must be a string', v['name']);
  (arr(issues, v['match'], `${path}.match`) ?? []).forEach((m, i) => {
    const mp = `${path}.match[${i}]`;
    if (!isRecord(m)) return issues.add(mp, 'must be an object', m);
    if (m['port'] !== undefined) int(issues, m['port'], `${mp}.port`, { min: 1, max: 65535 });
    if (m['sniHosts'] !== undefined) strList(issues, m['sniHosts'], `${mp}.sniHosts`);
    if (tls && !Array.isArray(m['sniHosts'])) issues.add(`${mp}.sniHosts`, 'is required in a TLS route', m['sniHosts']);
    if (m['sourceNamespace'] !== undefined && typeof m['sourceNamespace'] !== 'string') issues.add(`${mp}.sourceNamespace`, 'must be a namespace name', m['sourceNamespace']);
    if (m['sourceLabels'] !== undefined) stringMap(issues, m['sourceLabels'], `${mp}.sourceLabels`);
    if (m['destinationSubnets'] !== undefined) {
      (arr(issues, m['destinationSubnets'], `${mp}.destinationSubnets`) ?? []).forEach((c, k) => {
        const problem = typeof c === 'string' ? cidrProblem(c) : 'must be a CIDR';
        if (problem !== undefined) issues.add(`${mp}.destinationSubnets[${k}]`, problem, c);
      });
    }
  });
  const backends = arr(issues, v['backends'], `${path}.backends`) ?? [];
  if (backends.length === 0) issues.add(`${path}.backends`, 'must name at least one backend', v['backends']);
  backends.forEach((b, i) => backend(issues, b, `${path}.backends[${i}]`, true));
}

function jwtRule(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (typeof v['issuer'] !== 'string' || v['issuer'] === '') issues.add(`${path}.issuer`, 'must be a non-empty string', v['issuer']);
  strList(issues, v['audiences'], `${path}.audiences`, { required: true });
  strList(issues, v['fromParams'], `${path}.fromParams`, { required: true });
  if ((v['jwks'] === undefined) === (v['jwksUri'] === undefined)) issues.add(path, 'must set exactly one of jwks and jwksUri', v);
  if (v['jwks'] !== undefined && typeof v['jwks'] !== 'string') issues.add(`${path}.jwks`, 'must be JSON text', v['jwks']);
  if (v['jwksUri'] !== undefined && (typeof v['jwksUri'] !== 'string' || !/^https?:\/\//.test(v['jwksUri']))) issues.add(`${path}.jwksUri`, 'must be an http(s) URL', v['jwksUri']);
  (arr(issues, v['fromHeaders'], `${path}.fromHeaders`) ?? []).forEach((h, i) => {
    if (!isRecord(h) || typeof h['name'] !== 'string' || h['name'] === '' || typeof h['prefix'] !== 'string') issues.add(`${path}.fromHeaders[${i}]`, 'must be { name, prefix }', h);
  });
  if (v['outputPayloadToHeader'] !== undefined && typeof v['outputPayloadToHeader'] !== 'string') issues.add(`${path}.outputPayloadToHeader`, 'must be a header name', v['outputPayloadToHeader']);
  if (typeof v['forwardOriginalToken'] !== 'boolean') issues.add(`${path}.forwardOriginalToken`, 'must be a boolean', v['forwardOriginalToken']);
  if (v['pods'] !== undefined) podKeys(issues, v['pods'], `${path}.pods`);
}

/** `ns/name` pod keys (the gateway pods a selector policy is for). */
function podKeys(issues: Issues, v: unknown, path: string): void {
  (arr(issues, v, path) ?? []).forEach((k, i) => {
    if (typeof k !== 'string' || !/^[^/]+\/[^/]+$/.test(k)) issues.add(`${path}[${i}]`, 'must be namespace/name of a pod', k);
  });
}

function destinationPolicy(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  const cp = v['connectionPool'];
  if (cp !== undefined) {
    if (!isRecord(cp)) issues.add(`${path}.connectionPool`, 'must be an object', cp);
    else
      for (const k of ['maxConnections', 'http1MaxPendingRequests', 'http2MaxRequests', 'maxRequestsPerConnection']) {
        if (cp[k] !== undefined && !isInt(cp[k], 1)) issues.add(`${path}.connectionPool.${k}`, 'must be a positive integer', cp[k]);
      }
  }
  const od = v['outlierDetection'];
  if (od !== undefined) {
    if (!isRecord(od)) issues.add(`${path}.outlierDetection`, 'must be an object', od);
    else {
      for (const k of ['consecutive5xxErrors', 'consecutiveGatewayErrors']) {
        if (od[k] !== undefined && !isInt(od[k], 0)) issues.add(`${path}.outlierDetection.${k}`, 'must be a non-negative integer', od[k]);
      }
      for (const k of ['intervalMs', 'baseEjectionTimeMs']) {
        if (!isInt(od[k], 1)) issues.add(`${path}.outlierDetection.${k}`, 'must be a positive integer', od[k]);
      }
      if (!isPercent(od['maxEjectionPercent'])) issues.add(`${path}.outlierDetection.maxEjectionPercent`, 'must be a number 0..100', od['maxEjectionPercent']);
    }
  }
}

function trafficPolicy(issues: Issues, v: unknown, path: string): void {
  destinationPolicy(issues, v, path);
  if (!isRecord(v)) return;
  if (!Array.isArray(v['subsets'])) return issues.add(`${path}.subsets`, 'must be a list', v['subsets']);
  const seen = new Set<string>();
  v['subsets'].forEach((s, i) => {
    const p = `${path}.subsets[${i}]`;
    if (!isRecord(s)) return issues.add(p, 'must be an object', s);
    if (typeof s['name'] !== 'string' || s['name'].length === 0) issues.add(`${p}.name`, 'must be a non-empty string', s['name']);
    else if (seen.has(s['name'])) issues.add(`${p}.name`, 'is a duplicate subset name', s['name']);
    else seen.add(s['name']);
    stringMap(issues, s['labels'], `${p}.labels`);
    if (!isRecord(s['labels'])) issues.add(`${p}.labels`, 'must be a map of strings', s['labels']);
    if (s['trafficPolicy'] !== undefined) destinationPolicy(issues, s['trafficPolicy'], `${p}.trafficPolicy`);
  });
}

function extAuthzProvider(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (typeof v['name'] !== 'string' || v['name'] === '') issues.add(`${path}.name`, 'must be a non-empty string', v['name']);
  if (v['protocol'] !== 'http' && v['protocol'] !== 'grpc') issues.add(`${path}.protocol`, 'must be http or grpc', v['protocol']);
  if (typeof v['service'] !== 'string' || v['service'] === '') issues.add(`${path}.service`, 'must be a non-empty host', v['service']);
  if (!isInt(v['port'], 1, 65535)) issues.add(`${path}.port`, 'must be a port 1..65535', v['port']);
  if (!isInt(v['timeoutMs'], 1)) issues.add(`${path}.timeoutMs`, 'must be a positive integer', v['timeoutMs']);
  if (typeof v['failOpen'] !== 'boolean') issues.add(`${path}.failOpen`, 'must be a boolean', v['failOpen']);
  if (v['statusOnError'] !== undefined && !isInt(v['statusOnError'], 100, 599)) issues.add(`${path}.statusOnError`, 'must be an HTTP status 100..599', v['statusOnError']);
  if (v['pathPrefix'] !== undefined && (typeof v['pathPrefix'] !== 'string' || !v['pathPrefix'].startsWith('/'))) issues.add(`${path}.pathPrefix`, 'must begin with /', v['pathPrefix']);
  for (const k of ['includeRequestHeadersInCheck', 'headersToUpstreamOnAllow', 'headersToDownstreamOnDeny', 'headersToDownstreamOnAllow']) if (v[k] !== undefined) authzMatches(issues, v[k], `${path}.${k}`);
  const extra = v['includeAdditionalHeadersInCheck'];
  if (extra !== undefined && (!isRecord(extra) || Object.entries(extra).some(([k, x]) => typeof x !== 'string' || /[\r\n\0]/.test(x) || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(k)))) {
    issues.add(`${path}.includeAdditionalHeadersInCheck`, 'must map lowercase header names to strings', extra);
  }
  const body = v['includeRequestBodyInCheck'];
  if (body !== undefined) {
    if (!isRecord(body)) issues.add(`${path}.includeRequestBodyInCheck`, 'must be an object', body);
    else {
      if (!isInt(body['maxRequestBytes'], 1, MAX_CHECK_BODY_BYTES)) issues.add(`${path}.includeRequestBodyInCheck.maxRequestBytes`, `must be an integer 1..${MAX_CHECK_BODY_BYTES}`, body['maxRequestBytes']);
      for (const k of ['allowPartialMessage', 'packAsBytes']) if (typeof body[k] !== 'boolean') issues.add(`${path}.includeRequestBodyInCheck.${k}`, 'must be a boolean', body[k]);
    }
  }
}

function metricOverride(issues: Issues, o: unknown, path: string): void {
  if (!isRecord(o)) return issues.add(path, 'must be an object', o);
  const metrics = o['metrics'];
  if (!Array.isArray(metrics) || metrics.length === 0 || metrics.some((m) => !(OVERRIDABLE_METRICS as readonly unknown[]).includes(m))) issues.add(`${path}.metrics`, `must list some of ${OVERRIDABLE_METRICS.join(', ')}`, metrics);
  if (!['CLIENT_AND_SERVER', 'CLIENT', 'SERVER'].includes(String(o['mode']))) issues.add(`${path}.mode`, 'must be CLIENT_AND_SERVER, CLIENT or SERVER', o['mode']);
  if (o['disabled'] !== undefined && typeof o['disabled'] !== 'boolean') issues.add(`${path}.disabled`, 'must be a boolean', o['disabled']);
  const tags = o['tags'];
  if (tags === undefined) return;
  if (!isRecord(tags)) return issues.add(`${path}.tags`, 'must be an object', tags);
  for (const [name, t] of Object.entries(tags)) {
    const tp = `${path}.tags.${name}`;
    if (!(ISTIO_HTTP_LABELS as readonly string[]).includes(name)) issues.add(tp, 'must be a label of Istio\'s request metrics', name);
    if (!isRecord(t) || (t['remove'] !== true && typeof t['value'] !== 'string')) {
      issues.add(tp, 'must be {remove: true} or {value: expression}', t);
      continue;
    }
    if (typeof t['value'] === 'string') {
      try {
        parseAccessFilter(t['value']);
      } catch (e) {
        issues.add(`${tp}.value`, `is not an expression: ${(e as Error).message}`, t['value']);
      }
    }
  }
}

/** The most request body a check may hold (Envoy's buffer limit is of this order too). */
export const MAX_CHECK_BODY_BYTES = 16 * 1024 * 1024;

function authzPolicy(issues: Issues, v: unknown, path: string): void {
  if (!isRecord(v)) return issues.add(path, 'must be an object', v);
  if (typeof v['name'] !== 'string' || !v['name'].includes('/')) issues.add(`${path}.name`, 'must be namespace/name', v['name']);
  if (v['action'] !== 'ALLOW' && v['action'] !== 'DENY' && v['action'] !== 'AUDIT' && v['action'] !== 'CUSTOM') issues.add(`${path}.action`, 'must be ALLOW, DENY, AUDIT or CUSTOM', v['action']);
  if (v['action'] === 'CUSTOM' && (typeof v['providerName'] !== 'string' || v['providerName'] === '')) issues.add(`${path}.providerName`, 'must name the provider of a CUSTOM policy', v['providerName']);
  if (v['provider'] !== undefined) extAuthzProvider(issues, v['provider'], `${path}.provider`);
  if (typeof v['dryRun'] !== 'boolean') issues.add(`${path}.dryRun`, 'must be a boolean', v['dryRun']);
  if (v['pods'] !== undefined) podKeys(issues, v['pods'], `${path}.pods`);
  if (!Array.isArray(v['rules'])) return issues.add(`${path}.rules`, 'must be a list', v['rules']);
  v['rules'].forEach((r, i) => {
    const p = `${path}.rules[${i}]`;
    if (!isRecord(r)) return issues.add(p, 'must be an object with from, to, when', r);
    for (const key of ['from', 'to', 'when', 'fromAll'] as const) {
      const list = r[key];
      if (key === 'fromAll' && list === undefined) continue;
      if (!Array.isArray(list)) {
        issues.add(`${p}.${key}`, 'must be a list', list);
        continue;
      }
      list.forEach((x, j) => {
        const q = `${p}.${key}[${j}]`;
        if (!isRecord(x)) return issues.add(q, 'must be an object', x);
        if (key === 'from' || key === 'fromAll') {
          for (const f of ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'requestPrincipals', 'notRequestPrincipals']) authzMatches(issues, x[f], `${q}.${f}`);
          for (const f of ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks']) {
            if (x[f] === undefined) continue;
            strList(issues, x[f], `${q}.${f}`);
            if (Array.isArray(x[f])) x[f].forEach((b, k) => typeof b === 'string' && cidrProblem(b) !== undefined && issues.add(`${q}.${f}[${k}]`, cidrProblem(b)!, b));
          }
        }
        if (key === 'to') {
          for (const f of ['hosts', 'notHosts', 'paths', 'notPaths']) authzMatches(issues, x[f], `${q}.${f}`);
          strList(issues, x['methods'], `${q}.methods`);
          strList(issues, x['notMethods'], `${q}.notMethods`);
          intList(issues, x['ports'], `${q}.ports`, 1, 65535);
          intList(issues, x['notPorts'], `${q}.notPorts`, 1, 65535);
        }
        if (key === 'when') {
          if (x['claim'] !== undefined) {
            strList(issues, x['claim'], `${q}.claim`);
            if (!Array.isArray(x['claim']) || x['claim'].length === 0) issues.add(`${q}.claim`, 'must name a claim path', x['claim']);
          } else if (typeof x['header'] !== 'string' || x['header'].length === 0) issues.add(`${q}.header`, 'must be a non-empty header name', x['header']);
          authzMatches(issues, x['values'], `${q}.values`);
          authzMatches(issues, x['notValues'], `${q}.notValues`);
        }
      });
    }
  });
}

/** Checks a pushed RouteConfig; returns every problem with its path (empty when valid). */
export function validateRouteConfig(value: unknown, path = 'routeConfig'): Issue[] {
  const issues = new Issues();
  if (!isRecord(value)) {
    issues.add(path, 'must be an object', value);
    return issues.list;
  }
  for (const k of ['name', 'namespace', 'hostname'] as const) {
    if (typeof value[k] !== 'string' || value[k].length === 0) issues.add(`${path}.${k}`, 'must be a non-empty string', value[k]);
  }
  strList(issues, value['aliases'], `${path}.aliases`, { required: true });
  if (value['gateway'] !== undefined && (typeof value['gateway'] !== 'string' || !value['gateway'].includes('/'))) issues.add(`${path}.gateway`, 'must be namespace/name', value['gateway']);
  if (value['waypoint'] !== undefined && (typeof value['waypoint'] !== 'string' || !value['waypoint'].includes('/'))) issues.add(`${path}.waypoint`, 'must be namespace/name', value['waypoint']);
  if (!Array.isArray(value['ports'])) issues.add(`${path}.ports`, 'must be a list', value['ports']);
  else
    value['ports'].forEach((p, i) => {
      if (!isRecord(p) || !isInt(p['port'], 1, 65535) || typeof p['protocol'] !== 'string') issues.add(`${path}.ports[${i}]`, 'must be { port: 1..65535, protocol: string }', p);
    });
  if (!Array.isArray(value['routes'])) issues.add(`${path}.routes`, 'must be a list', value['routes']);
  else {
    const names = new Set<string>();
    value['routes'].forEach((r, i) => {
      httpRoute(issues, r, `${path}.routes[${i}]`);
      if (isRecord(r) && typeof r['name'] === 'string') {
        if (names.has(r['name'])) issues.add(`${path}.routes[${i}].name`, 'is a duplicate route name', r['name']);
        names.add(r['name']);
      }
    });
  }
  for (const k of ['tcpRoutes', 'tlsRoutes'] as const) {
    if (value[k] !== undefined) (arr(issues, value[k], `${path}.${k}`) ?? []).forEach((r, i) => l4Route(issues, r, `${path}.${k}[${i}]`, k === 'tlsRoutes'));
  }
  if (value['jwtRules'] !== undefined) (arr(issues, value['jwtRules'], `${path}.jwtRules`) ?? []).forEach((r, i) => jwtRule(issues, r, `${path}.jwtRules[${i}]`));
  if (value['trafficPolicy'] !== undefined) trafficPolicy(issues, value['trafficPolicy'], `${path}.trafficPolicy`);
  if (value['numTrustedProxies'] !== undefined && !isInt(value['numTrustedProxies'], 0, 64)) issues.add(`${path}.numTrustedProxies`, 'must be an integer 0..64', value['numTrustedProxies']);
  const tel = value['telemetry'];
  if (tel !== undefined) {
    if (!isRecord(tel)) issues.add(`${path}.telemetry`, 'must be an object', tel);
    else {
      for (const k of ['accessLog', 'reportSpans']) if (typeof tel[k] !== 'boolean') issues.add(`${path}.telemetry.${k}`, 'must be a boolean', tel[k]);
      const fmt = tel['accessLogFormat'];
      if (fmt !== undefined) {
        const texts = isRecord(fmt) && typeof fmt['text'] === 'string' ? [fmt['text']] : isRecord(fmt) && isRecord(fmt['labels']) ? Object.values(fmt['labels']) : undefined;
        if (!texts || texts.some((t) => typeof t !== 'string')) issues.add(`${path}.telemetry.accessLogFormat`, 'must be {text: string} or {labels: {name: string}}', fmt);
        else
          for (const t of texts) {
            try {
              parseAccessLogFormat(t as string);
            } catch (e) {
              issues.add(`${path}.telemetry.accessLogFormat`, `is not an access-log format: ${(e as Error).message}`, t);
            }
          }
      }
      if (tel['metricOverrides'] !== undefined) (arr(issues, tel['metricOverrides'], `${path}.telemetry.metricOverrides`) ?? []).forEach((o, i) => metricOverride(issues, o, `${path}.telemetry.metricOverrides[${i}]`));
      if (tel['accessLogFilters'] !== undefined) {
        (arr(issues, tel['accessLogFilters'], `${path}.telemetry.accessLogFilters`) ?? []).forEach((f, i) => {
          const fp = `${path}.telemetry.accessLogFilters[${i}]`;
          if (typeof f !== 'string') return issues.add(fp, 'must be a string', f);
          try {
            parseAccessFilter(f);
          } catch (e) {
            issues.add(fp, `is not a filter expression: ${(e as Error).message}`, f);
          }
        });
      }
      const pct = tel['samplingPercent'];
      if (typeof pct !== 'number' || !(pct >= 0 && pct <= 100)) issues.add(`${path}.telemetry.samplingPercent`, 'must be a number from 0 to 100', pct);
    }
  }
  const rl = value['rateLimit'];
  if (rl !== undefined) {
    if (!isRecord(rl)) issues.add(`${path}.rateLimit`, 'must be an object', rl);
    else
      for (const k of ['maxTokens', 'tokensPerFill', 'fillIntervalMs']) {
        if (!isInt(rl[k], 1)) issues.add(`${path}.rateLimit.${k}`, 'must be a positive integer', rl[k]);
      }
  }
  if (!Array.isArray(value['authorization'])) issues.add(`${path}.authorization`, 'must be a list', value['authorization']);
  else value['authorization'].forEach((a, i) => authzPolicy(issues, a, `${path}.authorization[${i}]`));
  return issues.list;
}

/** Checks a GatewayServer. */
export function validateGatewayServer(value: unknown, path = 'gatewayServer'): Issue[] {
  const issues = new Issues();
  if (!isRecord(value)) {
    issues.add(path, 'must be an object', value);
    return issues.list;
  }
  if (typeof value['gateway'] !== 'string' || !value['gateway'].includes('/')) issues.add(`${path}.gateway`, 'must be namespace/name', value['gateway']);
  if (!isInt(value['port'], 1, 65535)) issues.add(`${path}.port`, 'must be a port 1..65535', value['port']);
  if (!['HTTP', 'HTTPS', 'HTTP2', 'GRPC', 'TLS', 'TCP'].includes(String(value['protocol']))) issues.add(`${path}.protocol`, 'must be HTTP, HTTPS, HTTP2, GRPC, TLS or TCP', value['protocol']);
  strList(issues, value['hosts'], `${path}.hosts`, { required: true });
  stringMap(issues, value['selector'], `${path}.selector`);
  return issues.list;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;
const PEM_CRL = /^\s*(-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----\s*)+$/;
const PEM_KEY = /-----BEGIN ([A-Z]+ )?PRIVATE KEY-----[\s\S]+?-----END ([A-Z]+ )?PRIVATE KEY-----/;

/**
 * Checks a GatewayListener. Issues about certificate or key text never carry the text itself
 * (issues are logged), only what is wrong with it.
 */
export function validateGatewayListener(value: unknown, path = 'gatewayListener'): Issue[] {
  const issues = new Issues();
  if (!isRecord(value)) {
    issues.add(path, 'must be an object', value);
    return issues.list;
  }
  if (typeof value['pod'] !== 'string' || !/^[^/]+\/[^/]+$/.test(value['pod'])) issues.add(`${path}.pod`, 'must be namespace/name', value['pod']);
  if (!isInt(value['port'], 1, 65535)) issues.add(`${path}.port`, 'must be a port 1..65535', value['port']);
  if (!['HTTP', 'HTTPS', 'TCP', 'TLS'].includes(String(value['protocol']))) issues.add(`${path}.protocol`, 'must be HTTP, HTTPS, TCP or TLS', value['protocol']);
  strList(issues, value['gateways'], `${path}.gateways`, { required: true });
  strList(issues, value['hosts'], `${path}.hosts`, { required: true });
  if (value['httpsRedirect'] !== undefined && typeof value['httpsRedirect'] !== 'boolean') issues.add(`${path}.httpsRedirect`, 'must be a boolean', value['httpsRedirect']);
  if (value['httpsRedirect'] === true && value['protocol'] !== 'HTTP') issues.add(`${path}.httpsRedirect`, 'is only valid for HTTP', value['httpsRedirect']);
  const certs = value['certificates'];
  if (!Array.isArray(certs)) issues.add(`${path}.certificates`, 'must be a list', typeof certs);
  else {
    const terminate = value['terminate'];
    if (terminate !== undefined && typeof terminate !== 'boolean') issues.add(`${path}.terminate`, 'must be a boolean', terminate);
    if (terminate === true && value['protocol'] !== 'TCP' && value['protocol'] !== 'TLS') issues.add(`${path}.terminate`, 'is only valid for TCP and TLS (HTTPS always terminates)', terminate);
    // The listener ends TLS itself: HTTPS, or TCP/TLS with terminate.
    const ownTls = value['protocol'] === 'HTTPS' || terminate === true;
    const istioMutual = value['istioMutual'];
    if (istioMutual !== undefined && typeof istioMutual !== 'boolean') issues.add(`${path}.istioMutual`, 'must be a boolean', istioMutual);
    if (istioMutual === true && !ownTls) issues.add(`${path}.istioMutual`, 'is only valid for HTTPS or a listener that terminates TLS', istioMutual);
    if (istioMutual === true && certs.length > 0) issues.add(`${path}.certificates`, 'must be empty with istioMutual (the gateway presents its mesh certificate)');
    if (ownTls && istioMutual !== true && certs.length === 0) issues.add(`${path}.certificates`, `must hold at least one certificate for ${value['protocol'] === 'HTTPS' ? 'HTTPS' : 'a listener that terminates TLS'}`);
    if (!ownTls && certs.length > 0) issues.add(`${path}.certificates`, `must be empty for ${String(value['protocol'])} without terminate`);
    const mutual = certs.filter((c) => isRecord(c) && c['caPem'] !== undefined).length;
    if (mutual > 0 && mutual < certs.length) issues.add(`${path}.certificates`, 'must all carry a caPem (MUTUAL) or none');
    if (value['numTrustedProxies'] !== undefined && !isInt(value['numTrustedProxies'], 0, 64)) issues.add(`${path}.numTrustedProxies`, 'must be an integer 0..64', value['numTrustedProxies']);
    const optional = value['optionalClientCert'];
    if (optional !== undefined && typeof optional !== 'boolean') issues.add(`${path}.optionalClientCert`, 'must be a boolean', optional);
    if (optional === true && (mutual === 0 || !ownTls)) issues.add(`${path}.optionalClientCert`, 'is only valid for a listener that terminates TLS with caPem certificates (OPTIONAL_MUTUAL)', optional);
    certs.forEach((c, i) => {
      const cp = `${path}.certificates[${i}]`;
      if (!isRecord(c)) return issues.add(cp, 'must be an object');
      strList(issues, c['hosts'], `${cp}.hosts`, { required: true });
      if (typeof c['secret'] !== 'string' || !c['secret'].includes('/')) issues.add(`${cp}.secret`, 'must be namespace/name', c['secret']);
      if (typeof c['certPem'] !== 'string' || !PEM_CERT.test(c['certPem'])) issues.add(`${cp}.certPem`, 'must hold a PEM certificate');
      if (typeof c['keyPem'] !== 'string' || !PEM_KEY.test(c['keyPem'])) issues.add(`${cp}.keyPem`, 'must hold a PEM private key');
      if (c['caPem'] !== undefined && (typeof c['caPem'] !== 'string' || !PEM_CERT.test(c['caPem']))) issues.add(`${cp}.caPem`, 'must hold PEM CA certificates');
      if (c['crlPem'] !== undefined && (typeof c['crlPem'] !== 'string' || !PEM_CRL.test(c['crlPem']) || c['caPem'] === undefined)) issues.add(`${cp}.crlPem`, 'must hold PEM X509 CRLs, beside a caPem');
    });
  }
  return issues.list;
}
