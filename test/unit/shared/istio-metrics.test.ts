import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  clusterOfUid,
  createIstioHttpMetrics,
  createIstioTcpMetrics,
  ISTIO_HTTP_LABELS,
  ISTIO_METRIC_LABELS,
  ISTIO_TCP_LABELS,
  istioHttpLabels,
  istioTcpLabels,
  peerLabels,
  peerOfWorkload,
  recordIstioRequest,
  serviceLabels,
  serviceLabelsOfHost,
  unknownPeer,
} from '../../../src/shared/istio-metrics.js';
import { createRegistry } from '../../../src/shared/metrics.js';
import type { Service, Workload } from '../../../src/shared/model.js';
import { trafficLabels } from '../../../src/agent/proxy/metrics.js';
import { terminationReason } from '../../../src/shared/xds/client.js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { createDnsMetrics } from '../../../src/agent/dns/metrics.js';

function workload(over: Partial<Workload> = {}): Workload {
  return {
    uid: 'Kubernetes//v1/Pod/bookinfo/reviews-v2-7d8f-0',
    name: 'reviews-v2-7d8f-0',
    namespace: 'bookinfo',
    serviceAccount: 'bookinfo-reviews',
    trustDomain: 'cluster.local',
    node: 'node1',
    addresses: ['10.1.0.7'],
    tunnelProtocol: 'HBONE',
    canonicalName: 'reviews',
    canonicalRevision: 'v2',
    workloadName: 'reviews-v2',
    workloadType: 'deployment',
    labels: { app: 'reviews', version: 'v2' },
    services: {},
    status: 'Healthy',
    authorizationPolicies: [],
    peerAuthentication: 'PERMISSIVE',
    portPeerAuthentication: {},
    ...over,
  };
}

const reviews: Service = {
  name: 'reviews',
  namespace: 'bookinfo',
  hostname: 'reviews.bookinfo.svc.cluster.local',
  vips: ['10.96.0.9'],
  ports: [{ name: 'http', port: 9080, targetPort: 9080, protocol: 'http' }],
  subjectAltNames: [],
  routingPreference: [],
  endpoints: [],
};

const REVIEWS_ID = 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews';

test('peerOfWorkload: owner name, canonical service and revision as app and version, cluster from the uid', () => {
  assert.deepEqual(peerOfWorkload(workload(), REVIEWS_ID), {
    workload: 'reviews-v2',
    namespace: 'bookinfo',
    principal: REVIEWS_ID,
    app: 'reviews',
    version: 'v2',
    canonicalService: 'reviews',
    canonicalRevision: 'v2',
    cluster: 'Kubernetes',
  });
  assert.equal(peerOfWorkload(workload({ workloadName: '' })).workload, 'reviews-v2-7d8f-0', 'a bare pod is its own workload');
  assert.equal(peerOfWorkload(workload()).principal, 'unknown', 'no identity proved: unknown principal');
  assert.equal(clusterOfUid('east//v1/Pod/a/b'), 'east');
  assert.equal(clusterOfUid('no-cluster'), 'unknown');
});

test('peerLabels: unknown everywhere without facts; a known workload without revision is "latest"', () => {
  assert.deepEqual(Object.values(unknownPeer()), Array(8).fill('unknown'));
  const p = unknownPeer('spiffe://cluster.local/ns/x/sa/y', 'x');
  assert.equal(p.principal, 'spiffe://cluster.local/ns/x/sa/y');
  assert.equal(p.namespace, 'x');
  assert.equal(p.workload, 'unknown');
  const bare = peerLabels({ workload: 'waypoint', namespace: 'bookinfo' });
  assert.equal(bare.canonicalService, 'waypoint', 'canonical service defaults to the workload name');
  assert.equal(bare.canonicalRevision, 'latest');
  assert.equal(bare.version, 'latest');
  assert.equal(peerLabels({ workload: '' }).workload, 'unknown', 'empty is unknown');
});

test('serviceLabelsOfHost: a known Service, a cluster name, an external host; addresses are never labels', () => {
  const lookup = (h: string): Service | undefined => (h === reviews.hostname ? reviews : undefined);
  assert.deepEqual(serviceLabelsOfHost(reviews.hostname, lookup), { service: reviews.hostname, name: 'reviews', namespace: 'bookinfo' });
  assert.deepEqual(serviceLabelsOfHost('ratings.bookinfo.svc.cluster.local'), { service: 'ratings.bookinfo.svc.cluster.local', name: 'ratings', namespace: 'bookinfo' });
  assert.deepEqual(serviceLabelsOfHost('httpbin.org', lookup, 'egress'), { service: 'httpbin.org', name: 'httpbin.org', namespace: 'egress' });
  for (const addr of ['10.96.0.9', '[fd00::9]', 'fd00::9', undefined, '']) {
    assert.deepEqual(serviceLabelsOfHost(addr, lookup, 'bookinfo'), { service: 'unknown', name: 'unknown', namespace: 'unknown' }, `host ${String(addr)}`);
  }
  assert.deepEqual(serviceLabels(reviews), { service: reviews.hostname, name: 'reviews', namespace: 'bookinfo' });
});

test('istioTcpLabels and istioHttpLabels: the full Istio set, in the table, flags and mTLS', () => {
  const src = workload({ uid: 'Kubernetes//v1/Pod/bookinfo/productpage-v1-1', name: 'productpage-v1-1', workloadName: 'productpage-v1', canonicalName: 'productpage', canonicalRevision: 'v1' });
  const tcp = istioTcpLabels({ reporter: 'source', source: peerOfWorkload(src, 'spiffe://cluster.local/ns/bookinfo/sa/pp'), destination: peerOfWorkload(workload(), REVIEWS_ID), service: serviceLabels(reviews), protocol: 'tcp', mtls: true });
  assert.deepEqual(Object.keys(tcp), [...ISTIO_TCP_LABELS]);
  assert.equal(tcp.source_workload, 'productpage-v1');
  assert.equal(tcp.source_app, 'productpage');
  assert.equal(tcp.destination_workload, 'reviews-v2');
  assert.equal(tcp.destination_service_name, 'reviews');
  assert.equal(tcp.response_flags, '-');
  assert.equal(tcp.connection_security_policy, 'mutual_tls');
  assert.equal(tcp.request_protocol, 'tcp');
  const http = istioHttpLabels({ reporter: 'waypoint', source: unknownPeer(), destination: unknownPeer(), service: serviceLabels(undefined), protocol: 'grpc', responseFlags: 'UH', mtls: false, responseCode: 503, grpcStatus: '14' });
  assert.deepEqual(Object.keys(http), [...ISTIO_HTTP_LABELS]);
  assert.equal(http.response_code, '503');
  assert.equal(http.grpc_response_status, '14');
  assert.equal(http.response_flags, 'UH');
  assert.equal(http.connection_security_policy, 'unknown');
  assert.equal(istioHttpLabels({ reporter: 'waypoint', source: unknownPeer(), destination: unknownPeer(), service: serviceLabels(undefined), protocol: 'http', mtls: true, responseCode: 200 }).grpc_response_status, '', 'plain HTTP: empty gRPC status');
  assert.deepEqual(ISTIO_METRIC_LABELS['istio_tcp_sent_bytes_total'], ISTIO_TCP_LABELS);
  assert.deepEqual(ISTIO_METRIC_LABELS['istio_request_duration_milliseconds'], ISTIO_HTTP_LABELS);
  assert.deepEqual(ISTIO_METRIC_LABELS['istio_build'], ['component', 'tag']);
  assert.deepEqual(ISTIO_METRIC_LABELS['istio_xds_message_total'], ['url']);
  assert.deepEqual(ISTIO_METRIC_LABELS['istio_xds_message_bytes_total'], ['url']);
});

test('the agent and the waypoint label the same workload with the same values', () => {
  const w = workload();
  const agent = trafficLabels({ reporter: 'destination', dst: w, dstIdentity: REVIEWS_ID, service: reviews, mtls: true });
  // What the waypoint builds from its endpoint (waypoint.ts endpointOf: the same Workload fields).
  const waypointDst = peerLabels({ workload: w.workloadName, namespace: w.namespace, principal: REVIEWS_ID, canonicalService: w.canonicalName, canonicalRevision: w.canonicalRevision, cluster: clusterOfUid(w.uid) });
  const http = istioHttpLabels({ reporter: 'waypoint', source: unknownPeer(), destination: waypointDst, service: serviceLabels(reviews), protocol: 'http', mtls: true, responseCode: 200 });
  for (const k of ISTIO_TCP_LABELS.filter((l) => l.startsWith('destination_'))) assert.equal(http[k], agent[k], k);
});

test('families render every label of the table; a request lands in all four request series', async () => {
  const registry = createRegistry();
  const tcp = createIstioTcpMetrics(registry);
  const http = createIstioHttpMetrics(registry);
  const l = istioTcpLabels({ reporter: 'destination', source: unknownPeer(), destination: peerOfWorkload(workload()), service: serviceLabels(reviews), protocol: 'tcp', mtls: false });
  tcp.opened.cell('k', () => l).value++;
  recordIstioRequest(http, istioHttpLabels({ reporter: 'waypoint', source: unknownPeer(), destination: unknownPeer(), service: serviceLabels(reviews), protocol: 'http', mtls: false, responseCode: 404, responseFlags: 'NR' }), { durationMs: 3, requestBytes: 50, responseBytes: 70 });
  // The agent's DNS proxy families, one series each.
  const dns = createDnsMetrics(registry);
  const dl = { request_query_type: 'a', request_protocol: 'udp', source_canonical_service: 'productpage', source_canonical_revision: 'v1' };
  dns.requests.inc(dl);
  dns.upstreamRequests.inc(dl);
  dns.upstreamFailures.inc(dl);
  dns.upstreamDuration.observe(dl, 0.002);
  const text = await registry.metrics();
  for (const [name, labels] of Object.entries(ISTIO_METRIC_LABELS)) {
    if (name === 'istio_build' || name.startsWith('istio_xds_') || (name.startsWith('istio_tcp_') && name !== 'istio_tcp_connections_opened_total')) continue;
    const line = text.split('\n').find((x) => x.startsWith(`${name}{`) || x.startsWith(`${name}_count{`));
    assert.ok(line, `${name} has a series`);
    const names = [...line.matchAll(/([a-z_]+)="/g)].map((m) => m[1]);
    assert.deepEqual(names.sort(), [...labels].sort(), `${name} labels`);
  }
  assert.match(text, /istio_requests_total\{[^}]*response_flags="NR"[^}]*response_code="404"[^}]*\} 1/);
  assert.match(text, /istio_request_bytes_sum\{[^}]*\} 50/);
});

test('a component registry: istio_build, and prom-client\'s process_* and nodejs_* under their standard names', async () => {
  const registry = createRegistry({ processMetrics: true, build: { component: 'ztunnel', tag: '1.2.3' } });
  const text = await registry.metrics();
  assert.match(text, /^istio_build\{component="ztunnel",tag="1\.2\.3"\} 1$/m);
  for (const name of ['process_cpu_user_seconds_total', 'process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'process_open_fds', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_version_info']) {
    assert.match(text, new RegExp(`^${name}(\\{[^}]*\\})? `, 'm'), `${name} is exported`);
  }
  assert.doesNotMatch(text, /ambit_process_/, 'no prefixed copies');
});

test('config stream terminations are counted with ztunnel\'s reasons', () => {
  assert.equal(terminationReason(grpcStatus.OK, false), 'Complete');
  assert.equal(terminationReason(grpcStatus.CANCELLED, true), 'Reconnect', 'restarted to retry an apply');
  assert.equal(terminationReason(grpcStatus.UNAVAILABLE, false), 'ConnectionError');
  assert.equal(terminationReason(grpcStatus.INTERNAL, false), 'Error');
});
