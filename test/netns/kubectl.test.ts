/**
 * The real kubectl against a running local mesh: `kubectl apply` a Deployment and a Service, the
 * pods come up in network namespaces (running as their securityContext says), `kubectl label
 * namespace ... istio.io/dataplane-mode=ambient` enrolls the running pods without restarting them
 * (the agents mark them `ambient.istio.io/redirection: enabled` through the API), traffic between
 * them then crosses the mesh in mutual TLS (the agents' metrics say so), removing the label
 * unenrolls them, and `kubectl delete` removes the pods and their netns. The controller runs in
 * Kubernetes mode against the local API server: it holds its Lease, an AuthorizationPolicy made
 * invalid with kubectl shows the controller's condition in `kubectl get -o yaml` while its previous
 * version stays enforced, and a waypoint Gateway applied with kubectl gets a controller-owned
 * Deployment whose pod serves the Service bound to it (deleting the Gateway removes them), as an
 * ingress Gateway of class istio gets a Deployment serving its HTTPRoute.
 * Prometheus' pod discovery, done as Prometheus does it with its own account against the API
 * server, finds every agent (their mirror pods) and the waypoint by the scrape annotations, and
 * their metrics count the traffic.
 *
 * Every wait is on an event: a watch of the API server (kubectl's own or an informer here), or
 * the reply of a request. The block's mesh lock is taken before the test starts, so waiting for
 * another test file's mesh does not count against this test's time limit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ambit, destroyMesh, isRoot, leftovers, lockLocalMesh, meshLogTail, meshName, meshStatus, metricSum, netnsGone, podExec, repoRoot } from '../helpers/local-mesh.js';
import { kubeClientFromKubeconfig, podReady, watchUntil } from '../helpers/kube-watch.js';
import { runKubectl } from '../integration/apiserver/helpers.js';
import type { LocalStatus } from '../../src/local/mesh.js';
import { KubeClient } from '../../src/local/kube-client.js';
import type { KubeObject } from '../../src/controller/objects.js';

const fx = (f: string): string => join(repoRoot, 'test/fixtures/kubectl', f);
const REDIRECTION = 'ambient.istio.io/redirection';

interface PodJson {
  metadata: { name: string; uid: string };
  spec: { nodeName: string };
  status: { podIP?: string; containerStatuses?: Array<{ restartCount: number }> };
}

const unlock = isRoot() ? await lockLocalMesh() : undefined;

test('kubectl drives a running local mesh: apply, enroll by namespace label, mTLS traffic, delete', { skip: isRoot() ? false : 'requires root (network namespaces, BPF)' }, async (t) => {
  const name = meshName('tk');
  const cache = mkdtempSync(join(tmpdir(), 'ambit-kubectl-'));
  // How long each phase took, reported with the test's result (where the time goes under load).
  let phaseStart = Date.now();
  const phase = (what: string): void => {
    t.diagnostic(`${what}: ${((Date.now() - phaseStart) / 1000).toFixed(1)} s`);
    phaseStart = Date.now();
  };
  t.after(async () => {
    await destroyMesh(name);
    rmSync(cache, { recursive: true, force: true });
    unlock?.();
  });
  const up = await ambit(['local', 'up', '-f', fx('client.yaml'), '--name', name]);
  assert.equal(up.code, 0, `local up failed:\n${up.stderr}`);
  phase('ambit local up');
  const kc = await ambit(['local', 'kubeconfig', '--name', name]);
  assert.equal(kc.code, 0, kc.stderr);
  const kubeconfig = kc.stdout.trim();
  const admin = kubeClientFromKubeconfig(kubeconfig);
  const kubectl = async (args: string[]) => {
    const r = await runKubectl(kubeconfig, cache, args);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}\n${meshLogTail(name)}`);
    return r.stdout;
  };
  const podsJson = async (): Promise<PodJson[]> => (JSON.parse(await kubectl(['get', 'pods', '-n', 'kdemo', '-l', 'app=web', '-o', 'json'])) as { items: PodJson[] }).items;
  const curl = async (): Promise<string> => {
    const r = await podExec(name, 'kdemo/client', ['curl', '-s', '-m', '5', 'http://web.kdemo/']);
    assert.equal(r.code, 0, `curl: ${r.stderr}`);
    return r.stdout;
  };
  const appPods = (items: KubeObject[]): KubeObject[] => items.filter((p) => ['web', 'client'].includes(p.metadata.labels?.['app'] ?? ''));

  assert.match(await kubectl(['get', 'nodes']), /node1\s+Ready/);
  await kubectl(['apply', '-f', fx('web.yaml')]);
  await kubectl(['rollout', 'status', 'deployment/web', '-n', 'kdemo', '--timeout=90s']);
  phase('kubectl apply and rollout of web');
  const before = await podsJson();
  assert.equal(before.length, 2);
  // The CLI's own status and exec, once each (the rest asks the daemon from this process).
  const st = JSON.parse((await ambit(['local', 'status', '--name', name, '-o', 'json'])).stdout) as LocalStatus;
  for (const p of before) {
    const view = st.pods.find((x) => x.namespace === 'kdemo' && x.name === p.metadata.name);
    assert.ok(view?.netns, `pod ${p.metadata.name} runs in a netns of its own`);
    assert.ok(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.includes(view.netns));
    assert.equal(view.ip, p.status.podIP);
    assert.equal(view.enrolled, false, 'namespace kdemo is not in the mesh yet');
  }
  const plain = await ambit(['local', 'exec', '--name', name, 'kdemo/client', '--', 'curl', '-s', '-m', '5', 'http://web.kdemo/']);
  assert.equal(plain.code, 0, `curl: ${plain.stderr}`);
  assert.match(plain.stdout, /"text":"web"/, 'plain traffic reaches the Service before enrollment');
  assert.ok(appPods((await admin.get<{ items: KubeObject[] }>('/api/v1/namespaces/kdemo/pods')).items).every((p) => p.metadata.annotations?.[REDIRECTION] === undefined), 'no pod is marked redirected before enrollment');
  phase('status, exec and plain traffic');

  // Enroll the namespace: the running pods are captured, not restarted; each node's agent marks
  // the pods it captures through the API server, as on a cluster.
  await kubectl(['label', 'namespace', 'kdemo', 'istio.io/dataplane-mode=ambient']);
  await kubectl(['wait', '--for=jsonpath={.metadata.annotations.ambient\\.istio\\.io/redirection}=enabled', 'pod', '--all', '-n', 'kdemo', '--timeout=60s']);
  phase('enrollment by namespace label');
  // The agents authenticated to the controller with their service-account tokens, checked by the
  // API server (TokenReview): no credential of local mode's own.
  const controllerMetrics = await (await fetch(`http://${st.controller.split(':')[0]!}:15014/metrics`)).text();
  assert.ok(metricSum(controllerMetrics, 'ambit_token_reviews_total', { result: 'node', cached: 'false' }) >= st.nodes.length, `every agent reviewed as its node:\n${controllerMetrics.split('\n').filter((l) => l.startsWith('ambit_token_reviews_total')).join('\n')}`);
  assert.equal(metricSum(controllerMetrics, 'ambit_token_reviews_total', { result: 'error' }), 0, 'no TokenReview failed');
  const after = await podsJson();
  assert.deepEqual(after.map((p) => p.metadata.uid).sort(), before.map((p) => p.metadata.uid).sort(), 'the same pods, not new ones');
  assert.ok(after.every((p) => (p.status.containerStatuses ?? []).every((c) => c.restartCount === 0)), 'no container restarted');

  // The destination side counts a connection before its bytes reach the app, so once curl has
  // its answer the count is there.
  const scrapeAgents = (): Promise<string[]> => Promise.all(st.nodes.map(async (n) => (await fetch(n.metrics)).text()));
  const opened = (texts: string[]): number => texts.reduce((s, m) => s + metricSum(m, 'istio_tcp_connections_opened_total', { reporter: 'destination', destination_workload: 'web', connection_security_policy: 'mutual_tls', source_principal: 'spiffe://cluster.local/ns/kdemo/sa/client' }), 0);
  const metricsBefore = opened(await scrapeAgents());
  for (let i = 0; i < 4; i++) assert.match(await curl(), /"text":"web"/);
  assert.ok(opened(await scrapeAgents()) >= metricsBefore + 4, 'the destination agents count mTLS connections from the client');
  const enrolledView = (await meshStatus(name)).pods.filter((p) => p.namespace === 'kdemo');
  assert.equal(enrolledView.length, 3);
  assert.ok(enrolledView.every((p) => p.enrolled), `every kdemo pod enrolled: ${JSON.stringify(enrolledView)}`);
  phase('mTLS traffic');

  // The controller is the one a cluster runs: it holds its Lease in istio-system.
  assert.equal(await kubectl(['get', 'lease', 'ambit-controller', '-n', 'istio-system', '-o', 'jsonpath={.spec.holderIdentity}']), `${name}-controller`, 'the controller holds the Lease');

  // An AuthorizationPolicy applied with kubectl is enforced by web's agents; made invalid, it gets
  // the controller's condition in its status and its previous version stays in force.
  const reaches = async (): Promise<boolean> => (await podExec(name, 'kdemo/client', ['curl', '-s', '-m', '3', 'http://web.kdemo/'])).code === 0;
  const until = async (what: string, want: boolean): Promise<void> => {
    // The agents apply a pushed policy within moments; bounded in count.
    for (let i = 0; i < 60; i++) {
      if ((await reaches()) === want) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.fail(`${what}\n${meshLogTail(name)}`);
  };
  await kubectl(['apply', '-f', fx('deny-client.yaml')]);
  await until('the DENY policy applied with kubectl refuses the client', false);
  await kubectl(['apply', '-f', fx('deny-client-invalid.yaml')]);
  const policyPath = '/apis/security.istio.io/v1/namespaces/kdemo/authorizationpolicies';
  await watchUntil(admin, policyPath, 'the invalid policy\'s Accepted=False condition', (items) => {
    const conds = ((items.find((p) => p.metadata.name === 'deny-client')?.status?.['conditions'] ?? []) as Array<Record<string, unknown>>);
    return conds.some((c) => c['type'] === 'Accepted' && c['status'] === 'False' && c['observedGeneration'] === 2) ? true : undefined;
  });
  const policyYaml = await kubectl(['get', 'authorizationpolicy', 'deny-client', '-n', 'kdemo', '-o', 'yaml']);
  assert.match(policyYaml, /reason: Invalid/, policyYaml);
  assert.match(policyYaml, /spec\.rules\[0\]\.from\[0\]\.source\.principals\[1\]: may use "\*" only as a whole\s+value, a prefix or a suffix/, policyYaml);
  assert.match(policyYaml, /the previous\s+version stays in force/, policyYaml);
  assert.match(policyYaml, /code: IST0106/, 'Istio\'s analyzer code for a schema error');
  assert.equal(await reaches(), false, 'the previous (valid) version of the policy stays enforced');
  await kubectl(['delete', '-f', fx('deny-client.yaml')]);
  await until('deleting the policy lets the client through again', true);
  phase('AuthorizationPolicy status and last good version');

  // A waypoint Gateway applied with kubectl: the controller makes its ServiceAccount, Deployment
  // and Service, owned by the Gateway; local mode's controllers and nodes run the Deployment's pod,
  // which authenticates with its projected token and serves the Service bound to it.
  await kubectl(['apply', '-f', fx('waypoint.yaml')]);
  const waypointPod = await watchUntil(admin, '/api/v1/namespaces/kdemo/pods', 'the waypoint pod ready', (items) => items.find((p) => podReady(p))?.metadata.name, { labelSelector: 'gateway.networking.k8s.io/gateway-name=waypoint', timeoutMs: 90_000 });
  await kubectl(['rollout', 'status', 'deployment/waypoint', '-n', 'kdemo', '--timeout=60s']);
  const gatewayUid = (await kubectl(['get', 'gateways.gateway.networking.k8s.io', 'waypoint', '-n', 'kdemo', '-o', 'jsonpath={.metadata.uid}'])).trim();
  for (const kind of ['deployment', 'service', 'serviceaccount']) {
    const o = JSON.parse(await kubectl(['get', kind, 'waypoint', '-n', 'kdemo', '-o', 'json'])) as KubeObject;
    assert.equal(o.metadata.labels?.['app.kubernetes.io/managed-by'], 'ambit-controller', `${kind} made by the controller`);
    assert.deepEqual((o.metadata.ownerReferences ?? []).map((r) => [r.kind, r.name, r.uid, r.controller]), [['Gateway', 'waypoint', gatewayUid, true]], `${kind} owned by the Gateway`);
  }
  const wpJson = JSON.parse(await kubectl(['get', 'pod', waypointPod, '-n', 'kdemo', '-o', 'json'])) as KubeObject;
  assert.equal(wpJson.metadata.ownerReferences?.[0]?.kind, 'ReplicaSet', 'the waypoint pod is the Deployment\'s');
  assert.ok((wpJson.spec?.['volumes'] as Array<{ name: string }>).some((v) => v.name === 'istio-token'), 'it carries the projected istio-ca token');
  assert.ok((await meshStatus(name)).waypoints.some((w) => w.namespace === 'kdemo' && w.gateway === 'waypoint' && w.pod === waypointPod), 'local status lists the waypoint pod');
  const gwStatus = await kubectl(['get', 'gateways.gateway.networking.k8s.io', 'waypoint', '-n', 'kdemo', '-o', 'jsonpath={.status.conditions[?(@.type=="Programmed")].status}']);
  assert.equal(gwStatus, 'True', 'the Gateway is Programmed');
  await kubectl(['label', 'service', 'web', '-n', 'kdemo', 'istio.io/use-waypoint=waypoint']);
  const wpMetrics = `http://${String(wpJson.status?.['podIP'])}:15020/metrics`;
  const served = async (): Promise<number> => metricSum(await (await fetch(wpMetrics)).text(), 'istio_requests_total', { reporter: 'waypoint', destination_workload: 'web', response_code: '200' });
  // While the binding reaches the client's and web's agents, a request may be refused once (web's
  // agent already admits only the waypoint); bounded in count.
  for (let i = 0; i < 60 && (await served()) === 0; i++) {
    await reaches();
    if ((await served()) > 0) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.match(await curl(), /"text":"web"/);
  assert.ok((await served()) > 0, 'requests to web go through the waypoint pod');
  const reviews = await (await fetch(`http://${st.controller.split(':')[0]!}:15014/metrics`)).text();
  assert.ok(metricSum(reviews, 'ambit_token_reviews_total', { result: 'pod', cached: 'false' }) >= 1, 'the waypoint pod authenticated with its service-account token (TokenReview)');
  await kubectl(['label', 'service', 'web', '-n', 'kdemo', 'istio.io/use-waypoint-']);
  await until('web answers directly again once the binding is gone from every agent', true);
  phase('waypoint Deployment');

  // What Prometheus' pod discovery (kubernetes_sd_configs, role pod) does, as its own service
  // account: list and watch the pods, keep those annotated prometheus.io/scrape=true, scrape
  // podIP:port/path. (Debian's prometheus 2.42 is built without kubernetes_sd_configs, so the test
  // plays its part.)
  await kubectl(['apply', '-f', fx('prometheus-rbac.yaml')]);
  const promToken = (await kubectl(['create', 'token', 'prometheus', '-n', 'monitoring'])).trim();
  const ca = Buffer.from(await kubectl(['config', 'view', '--raw', '-o', 'jsonpath={.clusters[0].cluster.certificate-authority-data}']), 'base64').toString('utf8');
  const asPrometheus = new KubeClient({ server: st.api.url, caPem: ca, token: () => promToken });
  const scrapeTargets = (items: KubeObject[]): Array<{ pod: string; url: string }> =>
    items
      .filter((p) => p.metadata.annotations?.['prometheus.io/scrape'] === 'true' && p.status?.['podIP'])
      .map((p) => ({ pod: p.metadata.name, url: `http://${String(p.status!['podIP'])}:${p.metadata.annotations!['prometheus.io/port']}${p.metadata.annotations!['prometheus.io/path'] ?? '/metrics'}` }));
  const targets = await watchUntil(asPrometheus, '/api/v1/pods', 'both agents and the waypoint discoverable', (items) => {
    const found = scrapeTargets(items);
    return found.length === 3 ? found : undefined;
  });
  assert.deepEqual(targets.map((x) => x.pod).sort(), ['ambit-agent-node1', 'ambit-agent-node2', waypointPod].sort(), 'every agent and the waypoint, found by their scrape annotations');
  const agentsWide = await kubectl(['get', 'pods', '-n', 'istio-system', '-l', 'app=ambit-agent', '-o', 'wide']);
  for (const n of st.nodes) assert.match(agentsWide, new RegExp(`ambit-agent-${n.name}\\s+1/1\\s+Running\\s+0\\s+\\S+\\s+${n.ip.replace(/\./g, '\\.')}\\s+${n.name}`), agentsWide);
  await assert.rejects(asPrometheus.get('/api/v1/secrets'), /403/, 'Prometheus\' account reads pods, nothing else');
  for (let i = 0; i < 2; i++) assert.match(await curl(), /"text":"web"/);
  const scraped = await Promise.all(targets.map(async (x) => ({ pod: x.pod, text: await (await fetch(x.url)).text() })));
  for (const x of scraped) assert.match(x.text, x.pod.startsWith('ambit-agent-') ? /^istio_tcp_connections_opened_total\{/m : /^# TYPE istio_requests_total counter/m, `${x.pod} serves Istio's metrics`);
  const total = scraped.reduce((sum, x) => sum + metricSum(x.text, 'istio_tcp_connections_opened_total', { reporter: 'destination', destination_workload: 'web' }), 0);
  assert.ok(total >= 6, `the discovered agents report the connections to web (${total})`);
  phase('Prometheus discovery and scrapes');
  // Deleting the Gateway removes what the controller made for it.
  await kubectl(['delete', '-f', fx('waypoint.yaml')]);
  await kubectl(['wait', '--for=delete', 'deployment/waypoint', 'service/waypoint', 'serviceaccount/waypoint', '-n', 'kdemo', '--timeout=60s']);
  await kubectl(['wait', '--for=delete', 'pod', '-l', 'gateway.networking.k8s.io/gateway-name=waypoint', '-n', 'kdemo', '--timeout=60s']);
  phase('waypoint removed with its Gateway');

  // A Gateway API ingress gateway (class istio) applied with kubectl: the controller makes its
  // Deployment and LoadBalancer Service; its pod serves the HTTPRoute from the root namespace.
  await kubectl(['apply', '-f', fx('ingress-gateway.yaml')]);
  await kubectl(['wait', '--for=create', 'deployment/web-gw-istio', '-n', 'kdemo', '--timeout=60s']);
  await kubectl(['rollout', 'status', 'deployment/web-gw-istio', '-n', 'kdemo', '--timeout=60s']);
  assert.equal(await kubectl(['get', 'service', 'web-gw-istio', '-n', 'kdemo', '-o', 'jsonpath={.spec.type}']), 'LoadBalancer');
  const gwIp = await kubectl(['get', 'pod', '-n', 'kdemo', '-l', 'gateway.networking.k8s.io/gateway-name=web-gw', '-o', 'jsonpath={.items[0].status.podIP}']);
  // The pod is ready once its listener is open; the HTTPRoute's routes reach it in the same or
  // the next push (bounded in count).
  const viaGateway = (): string => spawnSync('curl', ['-sS', '-m', '3', '-H', 'Host: web.example', `http://${gwIp}:8080/`], { encoding: 'utf8' }).stdout;
  let body = viaGateway();
  for (let i = 0; i < 40 && !/"text":"web"/.test(body); i++) {
    await new Promise((r) => setTimeout(r, 250));
    body = viaGateway();
  }
  assert.match(body, /"text":"web"/, `the gateway pod routes web.example to Service web\n${meshLogTail(name)}`);
  await kubectl(['delete', '-f', fx('ingress-gateway.yaml')]);
  await kubectl(['wait', '--for=delete', 'deployment/web-gw-istio', 'service/web-gw-istio', '-n', 'kdemo', '--timeout=60s']);
  phase('Gateway API ingress gateway');

  // Unenroll: the agents release the pods and take their mark off; traffic still flows directly.
  await kubectl(['label', 'namespace', 'kdemo', 'istio.io/dataplane-mode-']);
  await watchUntil(admin, '/api/v1/namespaces/kdemo/pods', 'the kdemo pods released by the agents', (items) => {
    const pods = appPods(items);
    return pods.length === 3 && pods.every((p) => p.metadata.annotations?.[REDIRECTION] === undefined) ? true : undefined;
  });
  const ours = new Set(['client', ...before.map((p) => p.metadata.name)]);
  const released = (await meshStatus(name)).pods.filter((p) => p.namespace === 'kdemo' && ours.has(p.name));
  assert.equal(released.length, 3);
  assert.ok(released.every((p) => !p.enrolled && !p.captured), `kdemo pods out of the mesh: ${JSON.stringify(released)}`);
  assert.match(await curl(), /"text":"web"/);

  phase('unenrollment');
  // kubectl delete: pods and their netns go.
  const netns = released.filter((p) => p.name.startsWith('web-')).map((p) => p.netns);
  assert.equal(netns.length, 2);
  await kubectl(['delete', '-f', fx('web.yaml'), '--timeout=60s']);
  await kubectl(['wait', '--for=delete', 'pod', '-l', 'app=web', '-n', 'kdemo', '--timeout=60s']);
  await netnsGone('the web pods\' netns removed', (n) => netns.includes(n));
  assert.equal((await runKubectl(kubeconfig, cache, ['get', 'pods', '-n', 'kdemo', '-l', 'app=web', '-o', 'name'])).stdout.trim(), '');
  phase('kubectl delete');

  const down = await ambit(['local', 'down', '--name', name]);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(leftovers(name), []);
  phase('ambit local down');
});
