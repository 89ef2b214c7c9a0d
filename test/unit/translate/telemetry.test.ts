import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../../src/controller/objects.js';
import { translateRoutes } from '../../../src/controller/translate/routes.js';
import { telemetryKnobs } from '../../../src/controller/translate/telemetry.js';
import { ISTIO_DEFAULT_TEXT_FORMAT } from '../../../src/shared/access-log-format.js';
import { validateRouteConfig } from '../../../src/shared/validate-routes.js';
import { namespace, pod, service, waypointGateway } from './helpers.js';

function telemetry(name: string, ns: string, spec: Record<string, unknown>, created = '2026-01-01T00:00:00Z'): KubeObject {
  return { apiVersion: 'telemetry.istio.io/v1', kind: 'Telemetry', metadata: { name, namespace: ns, creationTimestamp: created }, spec };
}

/** shop (waypoint `waypoint` for the namespace) with reviews and ratings; web in another namespace without a waypoint. */
const cluster: KubeObject[] = [
  namespace('shop', { 'istio.io/use-waypoint': 'waypoint' }),
  namespace('web'),
  waypointGateway('waypoint', { ns: 'shop' }),
  service('reviews', { ns: 'shop', clusterIP: '10.96.0.11' }),
  service('ratings', { ns: 'shop', clusterIP: '10.96.0.12' }),
  service('front', { ns: 'web', clusterIP: '10.96.0.13' }),
];

function knobsOf(objects: KubeObject[]): Record<string, unknown> {
  const out = translateRoutes([...cluster, ...objects]);
  for (const r of out.routes) assert.deepEqual(validateRouteConfig(r), [], r.name);
  return Object.fromEntries(out.routes.map((r) => [r.hostname.split('.')[0], r.telemetry]));
}

test('telemetryKnobs: disabled entries turn the log off only when every entry is disabled; tracing reads the first entry', () => {
  assert.deepEqual(telemetryKnobs({}), {});
  // accessLogFilters [] means "every request" and overrides a lower level's filters.
  assert.deepEqual(telemetryKnobs({ accessLogging: [{ disabled: true }] }), { accessLog: false, accessLogFilters: [] });
  assert.deepEqual(telemetryKnobs({ accessLogging: [{ disabled: true }, { providers: [{ name: 'envoy' }] }] }), { accessLog: true, accessLogFilters: [] });
  assert.deepEqual(telemetryKnobs({ accessLogging: [{ filter: { expression: 'response.code >= 400' } }, { disabled: true, filter: { expression: 'true' } }] }), { accessLog: true, accessLogFilters: ['response.code >= 400'] });
  assert.deepEqual(telemetryKnobs({ accessLogging: [{ filter: { expression: 'response.code >= 400' } }, {}] }), { accessLog: true, accessLogFilters: [] }, 'an entry without a filter logs everything');
  assert.deepEqual(telemetryKnobs({ accessLogging: [{ filter: { expression: 'response.code >=' } }] }), { problems: ['spec.accessLogging[0].filter.expression "response.code >=": unexpected the end'] });
  assert.deepEqual(telemetryKnobs({ tracing: [{ randomSamplingPercentage: 2.5, disableSpanReporting: true }] }), { samplingPercent: 2.5, reportSpans: false });
  assert.deepEqual(telemetryKnobs({ tracing: [{ randomSamplingPercentage: 101 }] }), {}, 'an out-of-range percentage (refused by validation) sets nothing');
});

test('no Telemetry: configs carry no telemetry (the waypoint defaults apply)', () => {
  assert.deepEqual(knobsOf([]), { front: undefined, ratings: undefined, reviews: undefined });
});

test('mesh default < namespace < targetRefs, knob by knob', () => {
  const got = knobsOf([
    telemetry('mesh', 'istio-system', { tracing: [{ randomSamplingPercentage: 1 }] }),
    telemetry('ns', 'shop', { accessLogging: [{ disabled: true }] }),
    telemetry('reviews', 'shop', { targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], tracing: [{ randomSamplingPercentage: 100, disableSpanReporting: true }] }),
  ]);
  assert.deepEqual(got, {
    front: { accessLog: true, samplingPercent: 1, reportSpans: true },
    ratings: { accessLog: false, samplingPercent: 1, reportSpans: true },
    reviews: { accessLog: false, samplingPercent: 100, reportSpans: false },
  });
});

test('a waypoint Gateway target applies to every Service bound to it; at one level the oldest object wins', () => {
  const got = knobsOf([
    telemetry('newer', 'shop', { targetRef: { kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }, tracing: [{ randomSamplingPercentage: 50 }] }, '2026-02-01T00:00:00Z'),
    telemetry('older', 'shop', { targetRef: { kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }, tracing: [{ randomSamplingPercentage: 20 }] }, '2026-01-01T00:00:00Z'),
  ]);
  assert.deepEqual(got, {
    front: undefined,
    ratings: { accessLog: true, samplingPercent: 20, reportSpans: true },
    reviews: { accessLog: true, samplingPercent: 20, reportSpans: true },
  });
});

test('a selector Telemetry changes nothing and says why; a missing target is named', () => {
  const out = translateRoutes([
    ...cluster,
    telemetry('sel', 'shop', { selector: { matchLabels: { app: 'reviews' } }, accessLogging: [{ disabled: true }] }),
    telemetry('gone', 'shop', { targetRefs: [{ kind: 'Service', group: '', name: 'nope' }], accessLogging: [{ disabled: true }] }),
  ]);
  assert.ok(out.routes.every((r) => r.telemetry === undefined));
  const byObject = Object.fromEntries(out.conditions.map((c) => [c.objectKey, `${c.reason}: ${c.message}`]));
  assert.match(byObject['Telemetry/shop/sel'] ?? '', /^NotEnforced: .*selector.*sidecars/);
  assert.match(byObject['Telemetry/shop/gone'] ?? '', /^PartiallyApplied: target Service shop\/nope does not exist/);
});

test('validateRouteConfig names a bad telemetry knob', () => {
  const cfg = { name: 'shop/a', namespace: 'shop', hostname: 'a', aliases: [], ports: [], routes: [], authorization: [], telemetry: { accessLog: 'no', samplingPercent: 200, reportSpans: true } };
  assert.deepEqual(
    validateRouteConfig(cfg).map((i) => i.path),
    ['routeConfig.telemetry.accessLog', 'routeConfig.telemetry.samplingPercent'],
  );
});

test('access-log filters: layered as a unit (a more specific level without filters logs everything); a bad expression is reported and sets nothing', () => {
  const got = knobsOf([
    telemetry('mesh', 'istio-system', { accessLogging: [{ filter: { expression: 'response.code >= 500' } }] }),
    telemetry('reviews', 'shop', { targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], accessLogging: [{ providers: [{ name: 'envoy' }] }] }),
  ]);
  assert.deepEqual(got, {
    front: { accessLog: true, accessLogFilters: ['response.code >= 500'], samplingPercent: 100, reportSpans: true },
    ratings: { accessLog: true, accessLogFilters: ['response.code >= 500'], samplingPercent: 100, reportSpans: true },
    // Naming Istio's built-in `envoy` provider gives its text format.
    reviews: { accessLog: true, samplingPercent: 100, reportSpans: true, accessLogFormat: { text: ISTIO_DEFAULT_TEXT_FORMAT } },
  });
  const out = translateRoutes([...cluster, telemetry('bad', 'shop', { accessLogging: [{ filter: { expression: 'connection.mtls' } }] })]);
  assert.ok(out.routes.every((r) => r.telemetry === undefined), 'a Telemetry whose filter cannot be evaluated changes nothing');
  const c = out.conditions.find((x) => x.objectKey === 'Telemetry/shop/bad');
  assert.match(`${c?.reason}: ${c?.message}`, /^PartiallyApplied: spec\.accessLogging\[0\]\.filter\.expression "connection\.mtls": attribute connection\.mtls is not supported/);
});

test('metrics overrides: Istio metric names become request metric families; what is not served is named', () => {
  const k = telemetryKnobs({
    metrics: [
      {
        providers: [{ name: 'prometheus' }],
        overrides: [
          { match: { metric: 'REQUEST_COUNT', mode: 'SERVER' }, tagOverrides: { request_protocol: { operation: 'REMOVE' }, source_app: { value: "request.headers['x-tenant']" }, tenant: { value: '"a"' } } },
          { match: { metric: 'ALL_METRICS' }, disabled: true },
          { match: { metric: 'TCP_SENT_BYTES' }, disabled: true },
          { match: { metric: 'REQUEST_SIZE' }, tagOverrides: { response_code: { value: 'request.nope' } } },
        ],
      },
    ],
  });
  assert.deepEqual(k.metricOverrides, [
    { metrics: ['requests'], mode: 'SERVER', tags: { request_protocol: { remove: true }, source_app: { value: "request.headers['x-tenant']" } } },
    { metrics: ['requests', 'duration', 'requestBytes', 'responseBytes'], mode: 'CLIENT_AND_SERVER', disabled: true },
    { metrics: ['requestBytes'], mode: 'CLIENT_AND_SERVER' },
  ]);
  assert.deepEqual(k.notes, [
    "spec.metrics[0].overrides[0].tagOverrides.tenant: only Istio's standard labels can be changed (a new label is not added)",
    "spec.metrics[0].overrides[1]: ALL_METRICS changes the request metrics; the istio_tcp_* metrics keep Istio's defaults",
    "spec.metrics[0].overrides[2].match.metric TCP_SENT_BYTES: only the request metrics (REQUEST_COUNT, REQUEST_DURATION, REQUEST_SIZE, RESPONSE_SIZE, ALL_METRICS) can be overridden; TCP and gRPC message metrics keep Istio's defaults",
    'spec.metrics[0].overrides[3].tagOverrides.response_code.value "request.nope": attribute request.nope is not supported (supported: request.method, request.path, request.url_path, request.host, request.scheme, request.protocol, request.id, request.headers, request.useragent, request.referer, request.size, request.duration, response.code, response.grpc_status, response.size, response.flags)',
  ]);
  const got = knobsOf([telemetry('m', 'shop', { targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], metrics: [{ overrides: [{ match: { metric: 'REQUEST_DURATION' }, disabled: true }] }] })]);
  assert.deepEqual(got['reviews'], { accessLog: true, samplingPercent: 100, reportSpans: true, metricOverrides: [{ metrics: ['duration'], mode: 'CLIENT_AND_SERVER', disabled: true }] });
});

test('a selector Telemetry that selects ingress gateway pods sets the knobs of the Gateways they serve', () => {
  const objects: KubeObject[] = [
    ...cluster,
    namespace('istio-system'),
    pod('istio-ingressgateway-0', { ns: 'istio-system', ip: '10.0.9.1', labels: { istio: 'ingressgateway' } }),
    { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'web' }, spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['*'] }] } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'front', namespace: 'web' }, spec: { hosts: ['front.example.com'], gateways: ['edge'], http: [{ route: [{ destination: { host: 'front' } }] }] } },
    telemetry('gw-logs', 'istio-system', { selector: { matchLabels: { istio: 'ingressgateway' } }, accessLogging: [{ filter: { expression: 'response.code >= 500' } }] }),
  ];
  const out = translateRoutes(objects);
  const edge = out.routes.find((r) => r.gateway === 'web/edge')!;
  assert.deepEqual(edge.telemetry, { accessLog: true, accessLogFilters: ['response.code >= 500'], samplingPercent: 100, reportSpans: true });
  assert.ok(out.routes.filter((r) => !r.gateway).every((r) => r.telemetry === undefined), 'mesh configs are not touched');
  const c = out.conditions.find((x) => x.objectKey === 'Telemetry/istio-system/gw-logs');
  assert.deepEqual([c?.status, c?.reason], ['True', 'Accepted']);
  assert.match(c?.message ?? '', /enforced by the ingress gateway pods it selects \(Gateway web\/edge\)/);
});

test('access-log providers: an envoyFileAccessLog provider named by the Telemetry (or the mesh default) gives the format; others are reported', () => {
  const meshCm: KubeObject = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'istio', namespace: 'istio-system' },
    data: {
      mesh: [
        'defaultProviders: { accessLogging: [json-log] }',
        'extensionProviders:',
        '- name: json-log',
        '  envoyFileAccessLog: { path: /dev/stdout, logFormat: { labels: { code: "%RESPONSE_CODE%", path: "%REQ(:PATH)%", peer: "%DOWNSTREAM_PEER_URI_SAN%" } } }',
        '- name: short',
        '  envoyFileAccessLog: { path: /var/log/a.log, logFormat: { text: "%REQ(:METHOD)% %RESPONSE_CODE%\\n" } }',
        '- name: otel',
        '  envoyOtelAls: { service: otel.istio-system.svc.cluster.local, port: 4317 }',
      ].join('\n'),
    },
  };
  const got = knobsOf([meshCm, telemetry('ns', 'shop', { accessLogging: [{}] }), telemetry('reviews', 'shop', { targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], accessLogging: [{ providers: [{ name: 'otel' }, { name: 'short' }, { name: 'envoy' }] }] })]);
  assert.deepEqual(got['ratings'], { accessLog: true, samplingPercent: 100, reportSpans: true, accessLogFormat: { labels: { code: '%RESPONSE_CODE%', path: '%REQ(:PATH)%', peer: '%DOWNSTREAM_PEER_URI_SAN%' } } }, 'no provider named: the mesh default');
  assert.deepEqual(got['reviews'], { accessLog: true, samplingPercent: 100, reportSpans: true, accessLogFormat: { text: '%REQ(:METHOD)% %RESPONSE_CODE%\n' } });
  const out = translateRoutes([...cluster, meshCm, telemetry('ns', 'shop', { accessLogging: [{}] }), telemetry('reviews', 'shop', { targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], accessLogging: [{ providers: [{ name: 'otel' }, { name: 'short' }, { name: 'envoy' }] }] })]);
  const msg = (n: string) => out.conditions.find((c) => c.objectKey === `Telemetry/shop/${n}`)?.message ?? '';
  assert.match(msg('ns'), /provider json-log: command operators DOWNSTREAM_PEER_URI_SAN are not supported and render "-"/);
  assert.match(msg('reviews'), /provider otel is envoyOtelAls; Ambit writes access logs as envoyFileAccessLog providers describe them/);
  assert.match(msg('reviews'), /provider short: path \/var\/log\/a\.log is not used/);
  assert.match(msg('reviews'), /access-log provider envoy is not used: a proxy writes one access log \(short's\)/);
});
