import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { countReply, ingressUrl, newTally, splitRows } from '../../../src/cli/demo.js';
import { loadManifests } from '../../../src/controller/source/manifests.js';

const repoRoot = join(fileURLToPath(import.meta.url), '..', '..', '..', '..', '..');
const front = (text: string, client = '::ffff:10.244.2.4'): string => JSON.stringify({ frontend: 'frontend-0', backend: { text, pod: 'backend-0', client, path: '/' } });

test('countReply counts backend texts and sources; bad status, non-JSON and replies without a backend text are failures', () => {
  const t = newTally();
  countReply(t, true, front('backend v1'));
  countReply(t, true, front('backend v1', '10.244.1.2'));
  countReply(t, true, front('backend v2'));
  countReply(t, false, front('backend v1')); // e.g. a 503 whose body still parses
  countReply(t, true, '');
  countReply(t, true, 'no healthy upstream');
  countReply(t, true, JSON.stringify({ frontend: 'f', error: 'backend timed out' }));
  countReply(t, true, JSON.stringify({ frontend: 'f', backend: 'upstream connect error' }));
  countReply(t, true, 'null');
  assert.deepEqual(Object.fromEntries(t.byVersion), { 'backend v1': 2, 'backend v2': 1, failed: 6 });
  assert.equal(t.failures, 6);
  assert.deepEqual([...t.sources].sort(), ['10.244.1.2', '10.244.2.4']);
});

test('splitRows puts client and ingress counts side by side, zero where one side has none, failures last', () => {
  const client = newTally();
  const ingress = newTally();
  for (const text of ['backend v2', 'backend v1', 'backend v1']) countReply(client, true, front(text));
  countReply(ingress, true, front('backend v1'));
  countReply(ingress, false, '');
  assert.deepEqual(splitRows(client, ingress), [
    ['backend v1', '2', '1'],
    ['backend v2', '1', '0'],
    ['failed', '0', '1'],
  ]);
});

test('examples/demo loads: the waypoint namespace plus an Istio Gateway and VirtualService for demo.example.com', async () => {
  const { objects } = await loadManifests([join(repoRoot, 'examples/demo')]);
  const gw = objects.find((o) => o.kind === 'Gateway' && o.apiVersion.startsWith('networking.istio.io/'));
  assert.ok(gw, 'an Istio Gateway');
  assert.deepEqual((gw.spec as { selector: unknown }).selector, { istio: 'ingressgateway' });
  const vs = objects.find((o) => o.kind === 'VirtualService' && (o.spec as { gateways?: string[] }).gateways?.includes(gw.metadata.name));
  assert.deepEqual((vs?.spec as { hosts: string[] } | undefined)?.hosts, ['demo.example.com']);
});

test('ingressUrl: the plain-HTTP listener of a ready gateway that serves demo.example.com, else none', () => {
  const gw = (ready: boolean, listeners: Array<{ port: number; protocol: 'HTTP' | 'HTTPS'; hosts: string[] }>) => ({
    namespace: 'istio-system', pod: 'istio-ingressgateway-0', ip: '10.244.1.9', ready, metrics: 'http://10.244.1.9:15020/metrics', gateways: ['demo/demo-gateway'],
    listeners: listeners.map((l) => ({ ...l, url: `${l.protocol === 'HTTP' ? 'http' : 'https'}://10.244.1.9:${l.port}/` })),
  });
  const https = { port: 443, protocol: 'HTTPS' as const, hosts: ['demo.example.com'] };
  assert.equal(ingressUrl({ ingressGateways: [gw(true, [https, { port: 8080, protocol: 'HTTP', hosts: ['*.example.com', 'demo.example.com'] }])] }), 'http://10.244.1.9:8080/');
  assert.equal(ingressUrl({ ingressGateways: [gw(false, [{ port: 80, protocol: 'HTTP', hosts: ['demo.example.com'] }])] }), undefined, 'not ready');
  assert.equal(ingressUrl({ ingressGateways: [gw(true, [https, { port: 80, protocol: 'HTTP', hosts: ['example.com'] }])] }), undefined, 'no plain listener for the host');
  assert.equal(ingressUrl({ ingressGateways: [] }), undefined);
});
