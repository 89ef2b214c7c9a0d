import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../../src/controller/objects.js';
import { meshExtensionProviders } from '../../../src/controller/translate/mesh-config.js';
import { translateRoutes } from '../../../src/controller/translate/routes.js';
import { validateRouteConfig } from '../../../src/shared/validate-routes.js';

function meshConfig(mesh: string, ns = 'istio-system', name = 'istio'): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, data: { mesh } };
}

const MESH = `
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
extensionProviders:
- name: sample-ext-authz-http
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: "8000"
    pathPrefix: /check
    timeout: 0.5s
    includeRequestHeadersInCheck: ["x-ext-authz", "x-user-*"]
    headersToUpstreamOnAllow: ["x-user"]
    headersToDownstreamOnDeny: ["x-ext-authz-check-result"]
    statusOnError: "503"
- name: sample-ext-authz-grpc
  envoyExtAuthzGrpc:
    service: foo/ext-authz.foo.svc.cluster.local
    port: 9000
    failOpen: true
- name: slow
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: 8000
    timeout: soon
- name: body
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: 8000
    includeRequestBodyInCheck: { maxRequestBytes: 100, allowPartialMessage: true }
    includeAdditionalHeadersInCheck: { X-Extra: fixed, x-n: 7 }
    headersToDownstreamOnAllow: ["x-note"]
- name: body-grpc
  envoyExtAuthzGrpc:
    service: ext-authz.foo.svc.cluster.local
    port: 9000
    includeRequestBodyInCheck: { maxRequestBytes: 0 }
- name: bad-extra
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: 8000
    includeAdditionalHeadersInCheck: { "bad header": x }
- name: later
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: 8000
    clearRouteCache: true
- name: tracer
  zipkin: { service: zipkin.istio-system.svc.cluster.local, port: 9411 }
`;

test('mesh config: extensionProviders are read from ConfigMap istio-system/istio key mesh, each checked on its own', () => {
  const p = meshExtensionProviders([meshConfig(MESH), meshConfig('extensionProviders: [{name: other}]', 'default')], 'istio-system');
  assert.equal(p.error, undefined);
  assert.deepEqual(p.byName.get('sample-ext-authz-http'), {
    ok: true,
    provider: {
      name: 'sample-ext-authz-http',
      protocol: 'http',
      service: 'ext-authz.foo.svc.cluster.local',
      port: 8000,
      timeoutMs: 500,
      failOpen: false,
      statusOnError: 503,
      pathPrefix: '/check',
      includeRequestHeadersInCheck: [{ exact: 'x-ext-authz' }, { prefix: 'x-user-' }],
      headersToUpstreamOnAllow: [{ exact: 'x-user' }],
      headersToDownstreamOnDeny: [{ exact: 'x-ext-authz-check-result' }],
    },
  });
  assert.deepEqual(p.byName.get('sample-ext-authz-grpc'), { ok: true, namespace: 'foo', provider: { name: 'sample-ext-authz-grpc', protocol: 'grpc', service: 'ext-authz.foo.svc.cluster.local', port: 9000, timeoutMs: 600_000, failOpen: true } });
  const slow = p.byName.get('slow')!;
  assert.equal(slow.ok, false);
  assert.match(!slow.ok ? slow.reason : '', /extensionProviders\[2\]: envoyExtAuthzHttp\.timeout "soon" is not a positive duration/);
  assert.deepEqual(p.byName.get('body'), {
    ok: true,
    provider: {
      name: 'body', protocol: 'http', service: 'ext-authz.foo.svc.cluster.local', port: 8000, timeoutMs: 600_000, failOpen: false,
      includeRequestBodyInCheck: { maxRequestBytes: 100, allowPartialMessage: true, packAsBytes: false },
      headersToDownstreamOnAllow: [{ exact: 'x-note' }],
      includeAdditionalHeadersInCheck: { 'x-extra': 'fixed', 'x-n': '7' },
    },
  });
  assert.match(JSON.stringify(p.byName.get('body-grpc')), /envoyExtAuthzGrpc\.includeRequestBodyInCheck\.maxRequestBytes 0 is not a byte count/);
  assert.match(JSON.stringify(p.byName.get('bad-extra')), /includeAdditionalHeadersInCheck: \\"bad header\\" is not a header name/);
  assert.match(JSON.stringify(p.byName.get('later')), /envoyExtAuthzHttp\.clearRouteCache is not supported/);
  assert.match(JSON.stringify(p.byName.get('tracer')), /is not envoyExtAuthzHttp or envoyExtAuthzGrpc/);
  assert.equal(p.byName.has('other'), false, 'only the root namespace ConfigMap counts');

  assert.match(meshExtensionProviders([], 'istio-system').error!, /ConfigMap istio-system\/istio key mesh does not exist/);
  assert.match(meshExtensionProviders([meshConfig('extensionProviders: [')], 'istio-system').error!, /is not valid YAML/);
  const dup = meshExtensionProviders([meshConfig('extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: x.y, port: 1}}, {name: a, envoyExtAuthzGrpc: {service: x.y, port: 2}}]')], 'istio-system');
  assert.match(JSON.stringify(dup.byName.get('a')), /is not unique/);
});

const services: KubeObject[] = [
  { apiVersion: 'v1', kind: 'Service', metadata: { name: 'httpbin', namespace: 'foo' }, spec: { ports: [{ name: 'http', port: 8000 }] } },
  { apiVersion: 'v1', kind: 'Service', metadata: { name: 'ext-authz', namespace: 'foo' }, spec: { ports: [{ name: 'http', port: 8000 }, { name: 'grpc', port: 9000 }] } },
];

function custom(name: string, provider: string, paths = ['/headers']): KubeObject {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace: 'foo' },
    spec: { targetRefs: [{ kind: 'Service', group: '', name: 'httpbin' }], action: 'CUSTOM', provider: { name: provider }, rules: [{ to: [{ operation: { paths } }] }] },
  };
}

test('CUSTOM AuthorizationPolicy: a declared provider goes out with the policy; an unknown or unusable one is reported and the policy denies', () => {
  const out = translateRoutes([...services, meshConfig(MESH), custom('ok', 'sample-ext-authz-http'), custom('grpc', 'sample-ext-authz-grpc', ['/grpc']), custom('missing', 'nope', ['/missing']), custom('bad', 'slow', ['/slow'])]);
  const httpbin = out.routes.find((r) => r.hostname === 'httpbin.foo.svc.cluster.local')!;
  assert.deepEqual(validateRouteConfig(httpbin), [], 'the pushed config is valid');
  const byName = new Map(httpbin.authorization.map((p) => [p.name, p]));
  assert.equal(byName.get('foo/ok')!.action, 'CUSTOM');
  assert.equal(byName.get('foo/ok')!.provider!.pathPrefix, '/check');
  assert.equal(byName.get('foo/grpc')!.provider!.protocol, 'grpc');
  assert.deepEqual(byName.get('foo/grpc')!.rules[0]!.to[0]!.paths, [{ exact: '/grpc' }]);
  assert.equal(byName.get('foo/missing')!.provider, undefined, 'pushed without a provider: waypoints deny what it matches');
  assert.equal(byName.get('foo/missing')!.providerName, 'nope');
  assert.equal(byName.get('foo/bad')!.provider, undefined);
  const cond = (n: string) => out.conditions.find((c) => c.objectKey === `AuthorizationPolicy/foo/${n}`);
  assert.equal(cond('ok'), undefined);
  assert.equal(cond('missing')!.reason, 'InvalidProvider');
  assert.match(cond('missing')!.message, /extension provider "nope" is not declared in ConfigMap istio-system\/istio key mesh \(declared: bad-extra, body, body-grpc, later, sample-ext-authz-grpc, sample-ext-authz-http, slow, tracer\); requests the policy matches are denied/);
  assert.match(cond('bad')!.message, /extension provider "slow" cannot be used: .*timeout "soon"/);

  const noService = translateRoutes([services[0]!, meshConfig(MESH), custom('ok', 'sample-ext-authz-http')]);
  assert.match(noService.conditions.find((c) => c.objectKey === 'AuthorizationPolicy/foo/ok')!.message, /service "ext-authz\.foo\.svc\.cluster\.local" is not a Service or ServiceEntry host of the mesh/);
  const noMesh = translateRoutes([...services, custom('ok', 'sample-ext-authz-http')]);
  assert.match(noMesh.conditions.find((c) => c.objectKey === 'AuthorizationPolicy/foo/ok')!.message, /extension provider "sample-ext-authz-http" is unknown: ConfigMap istio-system\/istio key mesh does not exist/);
});

test('CUSTOM with an HTTP provider on a Service that carries TCP: the policy says TCP connections are not checked (Istio ignores it there); a gRPC provider checks them', () => {
  const tcpService: KubeObject = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'httpbin', namespace: 'foo' }, spec: { ports: [{ name: 'http', port: 8000 }, { name: 'tcp-db', port: 5432 }] } };
  const out = translateRoutes([tcpService, services[1]!, meshConfig(MESH), custom('http', 'sample-ext-authz-http'), custom('grpc', 'sample-ext-authz-grpc')]);
  const cond = (n: string) => out.conditions.find((c) => c.objectKey === `AuthorizationPolicy/foo/${n}`);
  assert.equal(cond('http')!.reason, 'PartiallyApplied');
  assert.match(cond('http')!.message, /extension provider "sample-ext-authz-http" is envoyExtAuthzHttp, which cannot check TCP connections: the policy is ignored for the TCP and TLS passthrough traffic of foo\/httpbin\.foo\.svc\.cluster\.local/);
  assert.equal(cond('grpc'), undefined, 'a gRPC provider serves both');
  const plain = translateRoutes([...services, meshConfig(MESH), custom('http', 'sample-ext-authz-http')]);
  assert.equal(plain.conditions.find((c) => c.objectKey === 'AuthorizationPolicy/foo/http'), undefined, 'an HTTP-only Service: nothing to say');
});
