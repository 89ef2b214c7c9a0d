import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadManifests } from '../../../src/controller/source/manifests.js';
import { objectKey } from '../../../src/controller/objects.js';
import { translateAll } from '../../../src/controller/translate/translate.js';
import { isProblem } from '../../../src/controller/controller.js';

const FOLDER = fileURLToPath(new URL('../../../../test/fixtures/istio-folder', import.meta.url));

test('a config folder with kinds Ambit does not know loads: those objects are refused one by one with the reason, the rest is kept', async () => {
  const { objects, refused } = await loadManifests([FOLDER]);
  assert.deepEqual(
    refused.map((r) => [r.where.slice(FOLDER.length + 1), r.object, r.reason]),
    [
      ['00-app.yaml#3', 'Job shop/migrate', 'kind Job of group batch is not served by Ambit; the object was not applied'],
      ['10-mesh.yaml#6', 'Certificate shop/shop-cert', 'kind Certificate of group cert-manager.io is not served by Ambit; the object was not applied'],
    ],
  );
  assert.deepEqual(objects.map((o) => o.kind), ['Namespace', 'Service', 'ServiceEntry', 'WorkloadEntry', 'Sidecar', 'RequestAuthentication', 'Telemetry', 'Gateway', 'TCPRoute', 'TLSRoute', 'ReferenceGrant', 'Ingress']);
});

test('every Istio, Gateway API and Ingress object of the folder not served as written has a status condition saying so', async () => {
  const { objects } = await loadManifests([FOLDER]);
  const all = translateAll(objects);
  const conditions = [...all.model.conditions, ...all.routes.conditions];
  // Served whole: a TCPRoute on a Service, a TLSRoute on an ingress Gateway's TLS Passthrough listener, that Gateway, a
  // ReferenceGrant, and the Telemetry (access logs through Istio's built-in `envoy` provider, 10% tracing).
  const servedWhole = ['Gateway', 'TCPRoute', 'TLSRoute', 'ReferenceGrant', 'Telemetry'];
  for (const o of objects.filter((x) => servedWhole.includes(x.kind))) {
    assert.deepEqual(conditions.filter((c) => c.objectKey === objectKey(o) && isProblem(c)), [], o.kind);
  }
  for (const o of objects) {
    if (['Namespace', 'Service', ...servedWhole].includes(o.kind)) continue;
    const mine = conditions.filter((c) => c.objectKey === objectKey(o) && isProblem(c));
    assert.ok(mine.length > 0, `${o.kind} ${o.metadata.name} has a problem condition: ${JSON.stringify(conditions.filter((c) => c.objectKey === objectKey(o)))}`);
    for (const c of mine) assert.match(c.message, /not (served|supported)|no effect/, `${o.kind}: ${c.message}`);
  }
  const tls = all.routes.routes.find((r) => r.gateway === 'shop/ingress')!;
  assert.deepEqual(tls.tlsRoutes?.map((r) => r.match), [[{ port: 8443, sniHosts: ['echo.example.com'] }]], 'the TLSRoute is the tls route of the listener port, by SNI');
  const sidecar = conditions.find((c) => c.objectKey === 'Sidecar/shop/default');
  assert.equal(sidecar?.message, 'Warning: Sidecar shop/default is accepted but has no effect: it configures sidecar proxies, which ambient mode does not run; ignored: spec.egress');
});

test('a problem is a refused condition, a partly applied one, or a field warning; Accepted and Bound are not', () => {
  assert.equal(isProblem({ type: 'Accepted', status: 'True', reason: 'Accepted' }), false);
  assert.equal(isProblem({ type: 'istio.io/WaypointBound', status: 'True', reason: 'Bound' }), false);
  assert.equal(isProblem({ type: 'Accepted', status: 'False', reason: 'Unsupported' }), true);
  assert.equal(isProblem({ type: 'Accepted', status: 'True', reason: 'PartiallyApplied' }), true);
  assert.equal(isProblem({ type: 'Warning', status: 'True', reason: 'UnsupportedFields' }), true);
});
