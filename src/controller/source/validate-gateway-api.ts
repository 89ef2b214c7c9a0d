/** Validation of Gateway API objects (Gateway, GatewayClass, HTTPRoute, GRPCRoute, TCPRoute, TLSRoute, ReferenceGrant). */
import type { KindInfo } from '../objects.js';
import { Issues, int, isDnsLabel, knownFields, port, rec, recs, str, strList } from '../../shared/validate.js';
import { gatewayDuration } from './kube-fields.js';

export function validateGatewayApiSpec(c: Issues, obj: Record<string, unknown>, info: KindInfo): void {
  switch (info.kind) {
    case 'Gateway':
      validateGateway(c, obj['spec']);
      return;
    case 'GatewayClass': {
      const spec = rec(c, obj['spec'], 'spec', true);
      if (spec) str(c, spec['controllerName'], 'spec.controllerName', { required: true });
      return;
    }
    case 'HTTPRoute':
      validateRoute(c, obj['spec'], 'http');
      return;
    case 'GRPCRoute':
      validateRoute(c, obj['spec'], 'grpc');
      return;
    case 'TCPRoute':
    case 'TLSRoute':
      validateL4Route(c, obj['spec'], info.kind === 'TLSRoute');
      return;
    case 'ReferenceGrant':
      validateReferenceGrant(c, obj['spec']);
      return;
  }
}

function backendRefs(c: Issues, v: unknown, path: string, extra: readonly string[]): void {
  for (const [b, bp] of recs(c, v, path)) {
    knownFields(c, b, bp, ['group', 'kind', 'name', 'namespace', 'port', 'weight', ...extra]);
    str(c, b['name'], `${bp}.name`, { required: true });
    str(c, b['namespace'], `${bp}.namespace`);
    const kind = str(c, b['kind'], `${bp}.kind`) ?? 'Service';
    const group = str(c, b['group'], `${bp}.group`) ?? '';
    port(c, b['port'], `${bp}.port`, kind === 'Service' && group === '');
    int(c, b['weight'], `${bp}.weight`, { min: 0, max: 1_000_000 });
  }
}

/** TCPRoute and TLSRoute: parents, (TLS) SNI hostnames, and one or more rules of weighted backends. */
function validateL4Route(c: Issues, v: unknown, tls: boolean): void {
  const spec = rec(c, v, 'spec', true);
  if (!spec) return;
  knownFields(c, spec, 'spec', tls ? ['parentRefs', 'hostnames', 'rules'] : ['parentRefs', 'rules']);
  parentRefs(c, spec['parentRefs'], 'spec.parentRefs');
  if (tls) strList(c, spec['hostnames'], 'spec.hostnames');
  for (const [r, rp] of recs(c, spec['rules'], 'spec.rules', { required: true, nonEmpty: true })) {
    knownFields(c, r, rp, ['name', 'backendRefs']);
    str(c, r['name'], `${rp}.name`);
    backendRefs(c, r['backendRefs'], `${rp}.backendRefs`, []);
  }
}

function validateReferenceGrant(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec', true);
  if (!spec) return;
  knownFields(c, spec, 'spec', ['from', 'to']);
  for (const [f, fp] of recs(c, spec['from'], 'spec.from', { required: true, nonEmpty: true })) {
    knownFields(c, f, fp, ['group', 'kind', 'namespace']);
    str(c, f['group'], `${fp}.group`, { required: true, allowEmpty: true });
    str(c, f['kind'], `${fp}.kind`, { required: true });
    str(c, f['namespace'], `${fp}.namespace`, { required: true, test: isDnsLabel, expect: 'a namespace name' });
  }
  for (const [t, tp] of recs(c, spec['to'], 'spec.to', { required: true, nonEmpty: true })) {
    knownFields(c, t, tp, ['group', 'kind', 'name']);
    str(c, t['group'], `${tp}.group`, { required: true, allowEmpty: true });
    str(c, t['kind'], `${tp}.kind`, { required: true });
    str(c, t['name'], `${tp}.name`);
  }
}

const LISTENER_PROTOCOL = /^(HTTP|HTTPS|TLS|TCP|UDP|HBONE|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+)$/;

function validateGateway(c: Issues, v: unknown): void {
  const spec = rec(c, v, 'spec', true);
  if (!spec) return;
  str(c, spec['gatewayClassName'], 'spec.gatewayClassName', { required: true });
  const names = new Set<string>();
  for (const [l, lp] of recs(c, spec['listeners'], 'spec.listeners', { required: true, nonEmpty: true })) {
    const name = str(c, l['name'], `${lp}.name`, { required: true, test: isDnsLabel, expect: 'a DNS label' });
    if (name !== undefined) {
      if (names.has(name)) c.add(`${lp}.name`, 'duplicates another listener name', name);
      names.add(name);
    }
    port(c, l['port'], `${lp}.port`, true);
    str(c, l['protocol'], `${lp}.protocol`, {
      required: true,
      test: (s) => LISTENER_PROTOCOL.test(s),
      expect: 'HTTP, HTTPS, TLS, TCP, UDP, HBONE or a domain-prefixed protocol',
    });
    str(c, l['hostname'], `${lp}.hostname`);
  }
  for (const [a, ap] of recs(c, spec['addresses'], 'spec.addresses')) str(c, a['value'], `${ap}.value`, { required: true });
}

function parentRefs(c: Issues, v: unknown, path: string): void {
  for (const [p, pp] of recs(c, v, path)) {
    str(c, p['name'], `${pp}.name`, { required: true });
    str(c, p['namespace'], `${pp}.namespace`);
    str(c, p['kind'], `${pp}.kind`);
    str(c, p['group'], `${pp}.group`);
    str(c, p['sectionName'], `${pp}.sectionName`);
    port(c, p['port'], `${pp}.port`);
  }
}

function headerMatches(c: Issues, v: unknown, path: string): void {
  for (const [h, hp] of recs(c, v, path)) {
    str(c, h['name'], `${hp}.name`, { required: true });
    str(c, h['value'], `${hp}.value`, { required: true });
    str(c, h['type'], `${hp}.type`, { oneOf: ['Exact', 'RegularExpression'] });
  }
}

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
const HTTP_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'RequestRedirect', 'URLRewrite', 'ExtensionRef', 'CORS'];
const GRPC_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'ExtensionRef'];

function validateRoute(c: Issues, v: unknown, flavour: 'http' | 'grpc'): void {
  const spec = rec(c, v, 'spec', true);
  if (!spec) return;
  knownFields(c, spec, 'spec', ['parentRefs', 'hostnames', 'rules']);
  parentRefs(c, spec['parentRefs'], 'spec.parentRefs');
  strList(c, spec['hostnames'], 'spec.hostnames');
  for (const [r, rp] of recs(c, spec['rules'], 'spec.rules')) {
    knownFields(c, r, rp, flavour === 'http'
      ? ['name', 'matches', 'filters', 'backendRefs', 'timeouts', 'retry', 'sessionPersistence']
      : ['name', 'matches', 'filters', 'backendRefs', 'sessionPersistence']);
    str(c, r['name'], `${rp}.name`);
    for (const [m, mp] of recs(c, r['matches'], `${rp}.matches`)) {
      knownFields(c, m, mp, flavour === 'http' ? ['path', 'headers', 'queryParams', 'method'] : ['method', 'headers']);
      headerMatches(c, m['headers'], `${mp}.headers`);
      if (flavour === 'http') {
        const path = rec(c, m['path'], `${mp}.path`);
        if (path) {
          const type = str(c, path['type'], `${mp}.path.type`, { oneOf: ['Exact', 'PathPrefix', 'RegularExpression'] }) ?? 'PathPrefix';
          const value = str(c, path['value'], `${mp}.path.value`);
          if (value !== undefined && type !== 'RegularExpression' && !value.startsWith('/')) c.add(`${mp}.path.value`, 'must start with "/"', value);
        }
        str(c, m['method'], `${mp}.method`, { oneOf: HTTP_METHODS });
        headerMatches(c, m['queryParams'], `${mp}.queryParams`);
      } else {
        const method = rec(c, m['method'], `${mp}.method`);
        if (method) {
          str(c, method['type'], `${mp}.method.type`, { oneOf: ['Exact', 'RegularExpression'] });
          str(c, method['service'], `${mp}.method.service`);
          str(c, method['method'], `${mp}.method.method`);
          if (method['service'] === undefined && method['method'] === undefined) c.add(`${mp}.method`, 'must set service or method', method);
        }
      }
    }
    for (const [f, fp] of recs(c, r['filters'], `${rp}.filters`)) {
      str(c, f['type'], `${fp}.type`, { required: true, oneOf: flavour === 'http' ? HTTP_FILTERS : GRPC_FILTERS });
    }
    backendRefs(c, r['backendRefs'], `${rp}.backendRefs`, ['filters']);
    if (flavour === 'http') {
      const t = rec(c, r['timeouts'], `${rp}.timeouts`);
      if (t) {
        gatewayDuration(c, t['request'], `${rp}.timeouts.request`);
        gatewayDuration(c, t['backendRequest'], `${rp}.timeouts.backendRequest`);
      }
      const retry = rec(c, r['retry'], `${rp}.retry`);
      if (retry) {
        int(c, retry['attempts'], `${rp}.retry.attempts`, { min: 0 });
        gatewayDuration(c, retry['backoff'], `${rp}.retry.backoff`);
        const codes = retry['codes'];
        if (codes !== undefined) {
          if (!Array.isArray(codes)) c.add(`${rp}.retry.codes`, 'must be a list', codes);
          else codes.forEach((code, i) => int(c, code, `${rp}.retry.codes[${i}]`, { min: 400, max: 599 }));
        }
      }
    }
  }
}
