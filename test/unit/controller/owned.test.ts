/** The workloads a Gateway asks the controller for (pure rendering) and the subset comparison that decides writes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../../src/controller/objects.js';
import { gatewayRole, renderIstioIngressGateway, renderOwned, type ProxyTemplate } from '../../../src/controller/owned/render.js';
import { isSubset, sameAsWanted } from '../../../src/controller/owned/reconciler.js';
import { validateObject } from '../../../src/controller/source/validate-objects.js';

const T: ProxyTemplate = { image: 'localhost/ambit:0.1.0', controllerAddress: 'ambit-controller.istio-system.svc:15012', trustDomain: 'cluster.local', clusterId: 'Kubernetes', logLevel: 'info' };

function gateway(name: string, cls: string, listeners: Array<Record<string, unknown>> = [{ name: 'mesh', port: 15008, protocol: 'HBONE' }], annotations?: Record<string, string>): KubeObject {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: 'bookinfo', uid: 'gw-uid-1', ...(annotations ? { annotations } : {}) }, spec: { gatewayClassName: cls, listeners } };
}

type Env = Array<{ name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }>;
const podSpec = (d: KubeObject) => (d.spec as any).template.spec;
const envOf = (d: KubeObject): Record<string, string> =>
  Object.fromEntries((podSpec(d).containers[0].env as Env).map((e) => [e.name, e.value ?? `field:${e.valueFrom!.fieldRef.fieldPath}`]));

test('roles by class: waypoint classes, ingress classes, others not served', () => {
  assert.equal(gatewayRole(gateway('a', 'istio-waypoint')), 'waypoint');
  assert.equal(gatewayRole(gateway('a', 'ambit-waypoint')), 'waypoint');
  assert.equal(gatewayRole(gateway('a', 'istio')), 'ingress');
  assert.equal(gatewayRole(gateway('a', 'ambit')), 'ingress');
  assert.equal(gatewayRole(gateway('a', 'nginx')), undefined);
  assert.equal(renderOwned(gateway('a', 'nginx'), T), undefined);
  assert.equal(renderOwned({ ...gateway('a', 'istio'), metadata: { name: 'a', namespace: 'x' } }, T), undefined, 'no uid yet: nothing to own by');
});

test('a waypoint Gateway: ServiceAccount, Deployment and Service named after it, owned by it, pods as Kiali expects', () => {
  const o = renderOwned(gateway('waypoint', 'istio-waypoint'), T)!;
  for (const obj of [o.serviceAccount, o.deployment, o.service]) {
    assert.equal(obj.metadata.name, 'waypoint');
    assert.equal(obj.metadata.namespace, 'bookinfo');
    assert.deepEqual(obj.metadata.ownerReferences, [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'waypoint', uid: 'gw-uid-1', controller: true, blockOwnerDeletion: true }]);
    assert.equal(obj.metadata.labels?.['gateway.networking.k8s.io/gateway-name'], 'waypoint');
    assert.deepEqual(validateObject(obj, 'render', { requireContainerCommand: true }), [], `${obj.kind} is a valid object`);
  }
  const tpl = (o.deployment.spec as any).template;
  assert.equal(tpl.metadata.labels['gateway.istio.io/managed'], 'istio.io-mesh-controller');
  assert.equal(tpl.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'waypoint');
  assert.equal(tpl.metadata.labels['istio.io/dataplane-mode'], 'none', 'the waypoint itself is not captured');
  assert.deepEqual((o.deployment.spec as any).selector, { matchLabels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } });
  assert.equal((o.deployment.spec as any).replicas, undefined, 'replicas are left to kubectl scale / an autoscaler');
  const spec = podSpec(o.deployment);
  assert.equal(spec.serviceAccountName, 'waypoint');
  assert.equal(spec.automountServiceAccountToken, false);
  assert.deepEqual(spec.containers[0].command, ['ambit', 'waypoint']);
  const token = spec.volumes.find((v: any) => v.name === 'istio-token').projected.sources[0].serviceAccountToken;
  assert.deepEqual(token, { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' });
  assert.deepEqual(spec.volumes.find((v: any) => v.name === 'ca-root').configMap, { name: 'ambit-ca-root-cert' });
  const env = envOf(o.deployment);
  assert.equal(env['AMBIT_WAYPOINT_MODE'], 'waypoint');
  assert.equal(env['AMBIT_WAYPOINT_NAME'], 'waypoint');
  assert.equal(env['AMBIT_NODE_NAME'], 'field:spec.nodeName');
  assert.equal(env['POD_IP'], 'field:status.podIP');
  assert.equal(env['AMBIT_TOKEN_FILE'], '/var/run/secrets/tokens/istio-token');
  assert.equal(env['AMBIT_CA_ROOT_FILE'], '/var/run/secrets/ambit/ca/root-cert.pem');
  assert.equal(env['AMBIT_CONTROLLER_ADDR'], T.controllerAddress);
  assert.equal((o.service.spec as any).type, 'ClusterIP');
  assert.deepEqual((o.service.spec as any).ports.map((p: any) => `${p.name}:${p.port}`), ['status-port:15021', 'mesh:15008']);
});

test('an ingress Gateway: `<gateway>-<class>` objects, gateway mode, a LoadBalancer Service from its listeners', () => {
  const gw = gateway('public', 'istio', [
    { name: 'http', port: 80, protocol: 'HTTP' },
    { name: 'https', port: 443, protocol: 'HTTPS' },
    { name: 'http-again', port: 80, protocol: 'HTTP', hostname: 'a.example.com' },
  ]);
  const o = renderOwned(gw, T)!;
  assert.equal(o.deployment.metadata.name, 'public-istio');
  assert.equal(envOf(o.deployment)['AMBIT_WAYPOINT_MODE'], 'gateway');
  assert.equal((o.deployment.spec as any).template.metadata.labels['gateway.istio.io/managed'], 'istio.io-gateway-controller');
  assert.deepEqual(podSpec(o.deployment).securityContext.sysctls, [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }]);
  assert.deepEqual(podSpec(o.deployment).containers[0].ports.map((p: any) => p.containerPort), [80, 443, 15020, 15021]);
  assert.equal((o.service.spec as any).type, 'LoadBalancer');
  assert.deepEqual((o.service.spec as any).ports.map((p: any) => `${p.name}:${p.port}`), ['status-port:15021', 'http-80:80', 'https-443:443']);
  assert.equal((renderOwned({ ...gw, metadata: { ...gw.metadata, annotations: { 'networking.istio.io/service-type': 'ClusterIP' } } }, T)!.service.spec as any).type, 'ClusterIP');
  for (const obj of [o.serviceAccount, o.deployment, o.service]) assert.deepEqual(validateObject(obj, 'render', { requireContainerCommand: true }), []);
});

test('Istio\'s istio-ingressgateway: pods labelled istio=ingressgateway in gateway mode, owned by nothing', () => {
  const o = renderIstioIngressGateway(T);
  assert.equal(o.deployment.metadata.namespace, 'istio-system');
  assert.equal(o.deployment.metadata.ownerReferences, undefined);
  assert.equal((o.deployment.spec as any).template.metadata.labels.istio, 'ingressgateway');
  assert.equal(envOf(o.deployment)['AMBIT_WAYPOINT_MODE'], 'gateway');
  for (const obj of [o.serviceAccount, o.deployment, o.service]) assert.deepEqual(validateObject(obj, 'render', { requireContainerCommand: true }), []);
});

test('subset comparison: server defaults and others\' fields do not count; a changed field of ours does', () => {
  const want = renderOwned(gateway('waypoint', 'istio-waypoint'), T)!.deployment;
  const live = structuredClone(want) as any;
  live.metadata.resourceVersion = '42';
  live.metadata.labels['team'] = 'x';
  live.metadata.ownerReferences.push({ apiVersion: 'v1', kind: 'ConfigMap', name: 'other', uid: 'u2' });
  live.spec.replicas = 3;
  live.spec.template.spec.containers[0].terminationMessagePath = '/dev/termination-log';
  for (const e of live.spec.template.spec.containers[0].env) if (e.valueFrom) e.valueFrom.fieldRef.apiVersion = 'v1';
  live.status = { readyReplicas: 1 };
  assert.ok(sameAsWanted(want, live));
  live.spec.template.spec.containers[0].image = 'old:1';
  assert.ok(!sameAsWanted(want, live));
  assert.ok(!isSubset({ a: [1, 2] }, { a: [1, 2, 3] }), 'lists compare whole');
  assert.ok(isSubset({ a: { b: 1 } }, { a: { b: 1, c: 2 } }));
});
