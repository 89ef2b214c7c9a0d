/**
 * The controller in Kubernetes mode against local mode's API server, running as its own service
 * account with exactly the RBAC of daemonset/core/rbac-controller.yaml: an invalid
 * AuthorizationPolicy applied with kubectl shows its condition in `kubectl get -o yaml` while
 * a config-stream subscriber keeps the previous policy; Gateway API statuses; a waypoint Gateway
 * makes its owned Deployment/ServiceAccount/Service and deleting it removes them; the CA Secret
 * and the root ConfigMaps; TokenReview-based authentication over real gRPC CA calls.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { parse } from 'yaml';
import { KubernetesController } from '../../../src/controller/kubernetes-mode.js';
import { createCaClient } from '../../../src/shared/certs/ca-client.js';
import { createKeyAndCsr } from '../../../src/shared/certs/csr.js';
import { isAmbitError } from '../../../src/shared/errors.js';
import { createRegistry } from '../../../src/shared/metrics.js';
import { ConfigClient, type ConfigState } from '../../../src/shared/xds/client.js';
import { podObject, put, setPodRunning, startCluster, startKubernetesController, testLog, waitUntil, type Cluster } from './helpers.js';

const DEMO = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo', labels: { 'istio.io/dataplane-mode': 'ambient' } } };
const sa = (name: string, ns = 'demo') => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: ns } });

/** Nodes node-1 and node-2, demo/web on node-1, demo/client on node-2, an agent pod on each node. */
async function seed(c: Cluster): Promise<void> {
  const s = c.ts.server;
  await put(s, [
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' } },
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-2' } },
    DEMO,
    sa('web'),
    sa('client'),
    podObject('web', 'demo', { node: 'node-1', sa: 'web' }),
    podObject('client', 'demo', { node: 'node-2', sa: 'client' }),
    podObject('ambit-agent-n1', 'istio-system', { node: 'node-1', sa: 'ambit-agent' }),
    podObject('ambit-agent-n2', 'istio-system', { node: 'node-2', sa: 'ambit-agent' }),
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'demo' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
  ]);
  await setPodRunning(s, 'demo', 'web', '10.1.0.5');
  await setPodRunning(s, 'demo', 'client', '10.1.0.6');
}

function agentToken(c: Cluster, node: 'n1' | 'n2'): string {
  return c.ts.server.issueServiceAccountToken({ namespace: 'istio-system', serviceAccount: 'ambit-agent', audiences: ['istio-ca'], pod: `ambit-agent-${node}` }).token;
}

function subscribe(t: TestContext, kc: KubernetesController, token: string, nodeName: string): { state: () => ConfigState | undefined } {
  let state: ConfigState | undefined;
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  const client = new ConfigClient({
    address: kc.controller.address,
    credentials: grpc.credentials.createSsl(Buffer.from(kc.controller.ca.rootCertPem)),
    callMetadata: md,
    node: { id: `agent~${nodeName}~1`, nodeName, role: 'agent' },
    onUpdate: (s) => {
      state = s;
    },
    log: testLog(),
    registry: createRegistry(),
  });
  client.start();
  t.after(() => client.close());
  return { state: () => state };
}

async function getYaml(c: Cluster, args: string[]): Promise<any> {
  const r = await c.ts.kubectl(['get', ...args, '-o', 'yaml']);
  assert.equal(r.code, 0, r.stderr);
  return parse(r.stdout);
}

test('an invalid AuthorizationPolicy shows its condition in kubectl get -o yaml; subscribers keep the previous policy', async (t) => {
  const c = await startCluster(t);
  await seed(c);
  const kc = await startKubernetesController(t, c);
  const sub = subscribe(t, kc, agentToken(c, 'n1'), 'node-1');
  const policy = (ipBlock: string) => `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-client, namespace: demo }
spec:
  selector: { matchLabels: { app: web } }
  action: ALLOW
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/demo/sa/client"], ipBlocks: ["${ipBlock}"] } }] }]
`;
  const held = () => JSON.stringify([...(sub.state()?.authorizations.values() ?? [])]);
  let r = await c.ts.kubectl(['apply', '-f', '-'], { input: policy('10.1.0.0/16') });
  assert.equal(r.code, 0, r.stderr);
  await waitUntil('the agent holds the policy', () => (held().includes('10.1.0.0/16') ? true : undefined), 20_000);

  r = await c.ts.kubectl(['apply', '-f', '-'], { input: policy('not-an-address') });
  assert.equal(r.code, 0, `the CRD schema accepts it; Ambit's validation does not: ${r.stderr}`);
  const obj = await waitUntil('the condition in kubectl get -o yaml', async () => {
    const o = await getYaml(c, ['authorizationpolicy', '-n', 'demo', 'allow-client']);
    return o.status?.conditions?.some((x: any) => x.type === 'Accepted' && x.status === 'False') ? o : undefined;
  }, 20_000);
  const accepted = obj.status.conditions.find((x: any) => x.type === 'Accepted');
  assert.equal(accepted.reason, 'Invalid');
  assert.match(accepted.message, /spec\.rules\[0\]\.from\[0\]\.source\.ipBlocks\[0\]: must be an IP address or CIDR/);
  assert.match(accepted.message, /the previous version stays in force/);
  assert.equal(accepted.observedGeneration, obj.metadata.generation);
  assert.ok(accepted.lastTransitionTime);
  assert.ok(obj.status.validationMessages.some((m: any) => m.type.code === 'IST0106' && m.level === 'ERROR'), JSON.stringify(obj.status));
  const ztunnel = obj.status.conditions.find((x: any) => x.type === 'ZtunnelAccepted');
  assert.equal(ztunnel?.status, 'True', 'what the agents enforce (the previous version) is said too');
  assert.ok(held().includes('10.1.0.0/16') && !held().includes('not-an-address'), 'the subscriber still holds the previous policy');
  const t1 = kc.controller.translation().authorizations.find((a) => a.name === 'allow-client');
  assert.ok(JSON.stringify(t1).includes('10.1.0.0/16'), 'the translation keeps the previous version');

  // Fixed: the condition goes, the new version is enforced.
  r = await c.ts.kubectl(['apply', '-f', '-'], { input: policy('10.2.0.0/16') });
  assert.equal(r.code, 0, r.stderr);
  await waitUntil('the fixed version held', () => (held().includes('10.2.0.0/16') ? true : undefined), 20_000);
  const fixed = await waitUntil('the Invalid condition removed', async () => {
    const o = await getYaml(c, ['authorizationpolicy', '-n', 'demo', 'allow-client']);
    return o.status?.conditions?.every((x: any) => x.type !== 'Accepted') ? o : undefined;
  }, 20_000);
  assert.ok(!(fixed.status.validationMessages ?? []).some((m: any) => m.type.code === 'IST0106'));

  // A ServiceEntry without addresses: its condition and its host's allocated addresses in its status, as Istio writes them.
  r = await c.ts.kubectl(['apply', '-f', '-'], {
    input: `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: api, namespace: demo }
spec:
  hosts: [api.example.com]
  resolution: STATIC
  endpoints: [{ address: 192.0.2.10 }]
  ports: [{ number: 80, name: http, protocol: HTTP }]
`,
  });
  assert.equal(r.code, 0, r.stderr);
  const entry = await waitUntil('the ServiceEntry status', async () => {
    const o = await getYaml(c, ['serviceentry', '-n', 'demo', 'api']);
    return o.status?.addresses?.length === 2 && o.status.conditions?.length > 0 ? o : undefined;
  }, 20_000);
  assert.match(entry.status.addresses[0].value, /^240\.240\.\d+\.\d+$/);
  assert.match(entry.status.addresses[1].value, /^2001:2::/, 'and an IPv6 address of 2001:2::/48, as istiod allocates one of each');
  assert.deepEqual(entry.status.addresses.map((a: any) => a.host), ['api.example.com', 'api.example.com']);
  assert.match(entry.status.conditions.find((x: any) => x.type === 'Accepted').message, new RegExp(`api\\.example\\.com=${entry.status.addresses[0].value.replaceAll('.', '\\.')} and ${entry.status.addresses[1].value}`));
  const vip = kc.controller.translation().services.find((x) => x.hostname === 'api.example.com')?.vips;
  assert.deepEqual(vip, entry.status.addresses.map((a: any) => a.value), 'the addresses agents capture are the ones in the status');
});

test('TokenReview authentication over real CA calls: node scope, a pod\'s own identity only, fail closed', async (t) => {
  const c = await startCluster(t);
  await seed(c);
  await put(c.ts.server, [sa('waypoint'), podObject('waypoint-abc', 'demo', { node: 'node-2', sa: 'waypoint', labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } })]);
  await setPodRunning(c.ts.server, 'demo', 'waypoint-abc', '10.1.0.9');
  const kc = await startKubernetesController(t, c);
  await waitUntil('the pods known to the controller', () => (kc.controller.access.pod('demo', 'waypoint-abc') ? true : undefined));
  const ask = async (token: string, identity: string): Promise<'issued' | string> => {
    const ca = createCaClient({ address: kc.controller.address, rootsPem: [kc.controller.ca.rootCertPem], token });
    try {
      await ca.fetchCertificate(identity, createKeyAndCsr(identity).csrPem, 3600);
      return 'issued';
    } catch (e) {
      assert.ok(isAmbitError(e, 'AMBIT_ERR_CERT_FETCH'));
      return grpc.status[(e.details?.['grpcCode'] as number) ?? 0] ?? 'unknown';
    } finally {
      ca.close();
    }
  };
  const id = (ns: string, s: string) => `spiffe://cluster.local/ns/${ns}/sa/${s}`;
  const n1 = agentToken(c, 'n1');
  assert.equal(await ask(n1, id('demo', 'web')), 'issued', 'an agent gets identities of pods on its node');
  assert.equal(await ask(n1, id('demo', 'client')), 'PERMISSION_DENIED', 'an agent asking for another node\'s identity is refused');
  const waypoint = c.ts.server.issueServiceAccountToken({ namespace: 'demo', serviceAccount: 'waypoint', audiences: ['istio-ca'], pod: 'waypoint-abc' }).token;
  assert.equal(await ask(waypoint, id('demo', 'waypoint')), 'issued', 'a pod gets its own identity');
  assert.equal(await ask(waypoint, id('demo', 'web')), 'PERMISSION_DENIED', 'and nothing else');
  const wrongAudience = c.ts.server.issueServiceAccountToken({ namespace: 'istio-system', serviceAccount: 'ambit-agent', pod: 'ambit-agent-n1' }).token;
  assert.equal(await ask(wrongAudience, id('demo', 'web')), 'UNAUTHENTICATED', 'a token for another audience is refused');
  const notBound = c.ts.server.issueServiceAccountToken({ namespace: 'istio-system', serviceAccount: 'ambit-agent', audiences: ['istio-ca'] }).token;
  assert.equal(await ask(notBound, id('demo', 'web')), 'UNAUTHENTICATED', 'an agent token bound to no node is refused');

  // TokenReview failing (the controller lost its permission to create them): refused, counted.
  const r = await c.ts.kubectl(['delete', 'clusterrolebinding', 'ambit-controller']);
  assert.equal(r.code, 0, r.stderr);
  const fresh = agentToken(c, 'n1');
  assert.equal(await ask(fresh, id('demo', 'web')), 'UNAUTHENTICATED', 'a TokenReview failure refuses (fail closed)');
  assert.equal(await ask(n1, id('demo', 'web')), 'issued', 'a token reviewed moments ago is still served from the bounded cache');
  const reviews = (await kc.controller.registry.getSingleMetric('ambit_token_reviews_total')!.get()).values;
  const count = (result: string) => reviews.filter((v) => v.labels['result'] === result).reduce((n, v) => n + v.value, 0);
  assert.ok(count('error') >= 1 && count('refused') >= 2 && count('node') >= 2 && count('pod') >= 2, JSON.stringify(reviews));
  const denied = (await kc.controller.registry.getSingleMetric('ambit_ca_requests_total')!.get()).values.find((v) => v.labels['result'] === 'denied');
  assert.equal(denied?.value, 2);
});

test('Gateways: owned waypoint and ingress workloads, Gateway API statuses, deletion removes them', async (t) => {
  const c = await startCluster(t);
  await seed(c);
  const kc = await startKubernetesController(t, c);
  const manifest = `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: demo, labels: { istio.io/waypoint-for: service } }
spec:
  gatewayClassName: istio-waypoint
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: public, namespace: demo }
spec:
  gatewayClassName: istio
  listeners:
  - { name: http, port: 80, protocol: HTTP }
  - { name: https, port: 443, protocol: HTTPS, tls: { certificateRefs: [{ name: missing-cert }] } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: web }, { name: public, sectionName: http }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: broken, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: web }]
  rules: [{ backendRefs: [{ name: nowhere, port: 80 }] }]
---
apiVersion: v1
kind: Namespace
metadata: { name: outside }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: outsider, namespace: outside }
spec:
  parentRefs: [{ name: public, namespace: demo }]
  rules: [{ backendRefs: [{ name: web, namespace: demo, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: on-waypoint, namespace: demo }
spec:
  parentRefs: [{ name: waypoint }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
`;
  const r = await c.ts.kubectl(['apply', '-f', '-'], { input: manifest });
  assert.equal(r.code, 0, r.stderr);
  const gw = await getYaml(c, ['gateways.gateway.networking.k8s.io', '-n', 'demo', 'waypoint']);

  // The waypoint's workload, owned by its Gateway.
  for (const kind of ['deployment', 'serviceaccount', 'service']) {
    const o = await waitUntil(`the waypoint ${kind}`, async () => {
      const got = await c.ts.kubectl(['get', kind, '-n', 'demo', 'waypoint', '-o', 'yaml']);
      return got.code === 0 ? parse(got.stdout) : undefined;
    }, 20_000);
    assert.deepEqual(o.metadata.ownerReferences, [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'waypoint', uid: gw.metadata.uid, controller: true, blockOwnerDeletion: true }], kind);
    if (kind === 'deployment') {
      const tpl = o.spec.template;
      assert.equal(tpl.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'waypoint');
      assert.equal(tpl.metadata.labels['gateway.istio.io/managed'], 'istio.io-mesh-controller');
      assert.deepEqual(tpl.spec.containers[0].command, ['ambit', 'waypoint']);
      assert.equal(tpl.spec.containers[0].image, 'localhost/ambit:test');
    }
  }
  const ingress = await waitUntil('the ingress Service', async () => {
    const got = await c.ts.kubectl(['get', 'service', '-n', 'demo', 'public-istio', '-o', 'yaml']);
    return got.code === 0 ? parse(got.stdout) : undefined;
  }, 20_000);
  assert.equal(ingress.spec.type, 'LoadBalancer');
  assert.deepEqual(ingress.spec.ports.map((p: any) => p.port), [15021, 80, 443]);

  // Gateway statuses: conditions, addresses, listeners.
  const wpStatus = await waitUntil('the waypoint programmed', async () => {
    const o = await getYaml(c, ['gateways.gateway.networking.k8s.io', '-n', 'demo', 'waypoint']);
    return o.status?.conditions?.find((x: any) => x.type === 'Programmed')?.status === 'True' ? o : undefined;
  }, 20_000);
  const svc = await getYaml(c, ['service', '-n', 'demo', 'waypoint']);
  assert.deepEqual(wpStatus.status.addresses, [{ type: 'IPAddress', value: svc.spec.clusterIP }]);
  assert.equal(wpStatus.status.conditions.find((x: any) => x.type === 'Accepted').status, 'True');
  assert.equal(wpStatus.status.conditions[0].observedGeneration, wpStatus.metadata.generation);
  const pub = await waitUntil('the ingress gateway status', async () => {
    const o = await getYaml(c, ['gateways.gateway.networking.k8s.io', '-n', 'demo', 'public']);
    return o.status?.listeners?.length === 2 && o.status.addresses?.length === 1 ? o : undefined;
  }, 20_000);
  const listener = (n: string) => pub.status.listeners.find((l: any) => l.name === n);
  const cond = (l: any, type: string) => l.conditions.find((x: any) => x.type === type);
  assert.equal(cond(listener('http'), 'Programmed').status, 'True');
  assert.equal(listener('http').attachedRoutes, 1);
  assert.deepEqual(listener('http').supportedKinds.map((k: any) => k.kind), ['HTTPRoute', 'GRPCRoute']);
  assert.equal(cond(listener('https'), 'ResolvedRefs').status, 'False');
  assert.equal(cond(listener('https'), 'ResolvedRefs').reason, 'InvalidCertificateRef');
  assert.match(cond(listener('https'), 'ResolvedRefs').message, /Secret demo\/missing-cert not found/);
  assert.equal(pub.status.conditions.find((x: any) => x.type === 'Accepted').reason, 'ListenersNotValid');

  // Route statuses: one parents entry per parent this controller serves.
  const routeParents = async (name: string, n: number) =>
    waitUntil(`route ${name} status`, async () => {
      const o = await getYaml(c, ['httproute', '-n', 'demo', name]);
      return (o.status?.parents ?? []).length === n ? o.status.parents : undefined;
    }, 20_000);
  const web = await routeParents('web', 2);
  for (const p of web) {
    assert.equal(p.controllerName, 'ambit.dev/gateway-controller');
    assert.deepEqual(p.conditions.map((x: any) => `${x.type}=${x.status}`), ['Accepted=True', 'ResolvedRefs=True']);
  }
  const [broken] = await routeParents('broken', 1);
  assert.deepEqual(broken.conditions.map((x: any) => `${x.type}=${x.status}:${x.reason}`), ['Accepted=False:UnsupportedValue', 'ResolvedRefs=False:BackendNotFound']);
  const [onWaypoint] = await routeParents('on-waypoint', 1);
  assert.equal(onWaypoint.conditions[0].reason, 'NotAllowedByListeners');

  // allowedRoutes: the listener takes routes of its own namespace only (Same, the default) until it
  // names a label of the route's Namespace (Selector); attachedRoutes follows.
  const outsiderParents = async (status: string) =>
    waitUntil(`route outsider Accepted=${status}`, async () => {
      const o = await getYaml(c, ['httproute', '-n', 'outside', 'outsider']);
      const p = (o.status?.parents ?? [])[0];
      return p?.conditions?.find((x: any) => x.type === 'Accepted')?.status === status ? p : undefined;
    }, 20_000);
  const refused = await outsiderParents('False');
  assert.equal(refused.conditions.find((x: any) => x.type === 'Accepted').reason, 'NotAllowedByListeners');
  assert.match(refused.conditions.find((x: any) => x.type === 'Accepted').message, /namespace "outside" is not allowed by the parent/);
  const patch = { spec: { listeners: [{ name: 'http', port: 80, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { 'shared-gateway': 'public' } } } } }, pub.spec.listeners[1]] } };
  assert.equal((await c.ts.kubectl(['patch', 'gateways.gateway.networking.k8s.io', '-n', 'demo', 'public', '--type', 'merge', '-p', JSON.stringify(patch)])).code, 0);
  assert.equal((await c.ts.kubectl(['label', 'namespace', 'outside', 'shared-gateway=public'])).code, 0);
  await outsiderParents('True');
  await waitUntil('route web refused by the http listener now', async () => {
    const o = await getYaml(c, ['httproute', '-n', 'demo', 'web']);
    const p = (o.status?.parents ?? []).find((x: any) => x.parentRef?.name === 'public');
    return p?.conditions?.find((x: any) => x.type === 'Accepted')?.reason === 'NotAllowedByListeners' ? p : undefined;
  }, 20_000);
  await waitUntil('attachedRoutes to count the outsider only', async () => {
    const o = await getYaml(c, ['gateways.gateway.networking.k8s.io', '-n', 'demo', 'public']);
    return o.status?.listeners?.find((l: any) => l.name === 'http')?.attachedRoutes === 1 ? o : undefined;
  }, 20_000);

  // The root certificate in every namespace, the CA in its Secret.
  const cm = await waitUntil('the root ConfigMap in demo', async () => {
    const got = await c.ts.kubectl(['get', 'configmap', '-n', 'demo', 'ambit-ca-root-cert', '-o', 'yaml']);
    return got.code === 0 ? parse(got.stdout) : undefined;
  }, 20_000);
  assert.equal(cm.data['root-cert.pem'], kc.controller.ca.rootCertPem);
  const secret = await getYaml(c, ['secret', '-n', 'istio-system', 'ambit-ca']);
  assert.equal(Buffer.from(secret.data['root-cert.pem'], 'base64').toString(), kc.controller.ca.rootCertPem);

  // Deleting the Gateway removes what was made for it (garbage collection by ownerReferences).
  const del = await c.ts.kubectl(['delete', '-n', 'demo', 'gateways.gateway.networking.k8s.io/waypoint']);
  assert.equal(del.code, 0, del.stderr);
  await waitUntil('the waypoint workload gone', async () => {
    const got = await c.ts.kubectl(['get', 'deployment,serviceaccount,service', '-n', 'demo', '-l', 'gateway.networking.k8s.io/gateway-name=waypoint', '-o', 'name']);
    return got.code === 0 && got.stdout.trim() === '' ? true : undefined;
  }, 20_000);
  const still = await c.ts.kubectl(['get', 'deployment', '-n', 'demo', 'public-istio', '-o', 'name']);
  assert.equal(still.stdout.trim(), 'deployment.apps/public-istio', 'the other Gateway\'s workload stays');
});
