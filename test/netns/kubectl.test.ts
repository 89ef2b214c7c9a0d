/**
 * The real kubectl against a running local mesh: `kubectl apply` a Deployment and a Service, the
 * pods come up in network namespaces (running as their securityContext says), `kubectl label
 * namespace ... istio.io/dataplane-mode=ambient` enrolls the running pods without restarting them,
 * traffic between them then crosses the mesh in mutual TLS (the agents' metrics say so), removing
 * the label unenrolls them, and `kubectl delete` removes the pods and their netns. A waypoint
 * Gateway applied with kubectl gets its pod; Prometheus' pod discovery, done as Prometheus does it
 * with its own account against the API server, finds every agent (their mirror pods) and the
 * waypoint by the scrape annotations, and their metrics count the traffic.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ambit, destroyMesh, isRoot, leftovers, lockLocalMesh, meshLogTail, meshName, metricSum, repoRoot, waitFor } from '../helpers/local-mesh.js';
import { runKubectl } from '../integration/apiserver/helpers.js';
import type { LocalStatus } from '../../src/local/mesh.js';
import { KubeClient } from '../../src/local/kube-client.js';

const fx = (f: string): string => join(repoRoot, 'test/fixtures/kubectl', f);

interface PodJson {
  metadata: { name: string; uid: string };
  spec: { nodeName: string };
  status: { podIP?: string; containerStatuses?: Array<{ restartCount: number }> };
}

test('kubectl drives a running local mesh: apply, enroll by namespace label, mTLS traffic, delete', { skip: isRoot() ? false : 'requires root (network namespaces, BPF)' }, async (t) => {
  const unlock = await lockLocalMesh();
  const name = meshName('tk');
  const cache = mkdtempSync(join(tmpdir(), 'ambit-kubectl-'));
  t.after(async () => {
    await destroyMesh(name);
    rmSync(cache, { recursive: true, force: true });
    unlock();
  });
  const up = await ambit(['local', 'up', '-f', fx('client.yaml'), '--name', name]);
  assert.equal(up.code, 0, `local up failed:\n${up.stderr}`);
  const kc = await ambit(['local', 'kubeconfig', '--name', name]);
  assert.equal(kc.code, 0, kc.stderr);
  const kubeconfig = kc.stdout.trim();
  const kubectl = async (args: string[]) => {
    const r = await runKubectl(kubeconfig, cache, args);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}\n${meshLogTail(name)}`);
    return r.stdout;
  };
  const status = async (): Promise<LocalStatus> => JSON.parse((await ambit(['local', 'status', '--name', name, '-o', 'json'])).stdout) as LocalStatus;
  const podsJson = async (): Promise<PodJson[]> => (JSON.parse(await kubectl(['get', 'pods', '-n', 'kdemo', '-l', 'app=web', '-o', 'json'])) as { items: PodJson[] }).items;
  const curl = async (): Promise<string> => {
    const r = await ambit(['local', 'exec', '--name', name, 'kdemo/client', '--', 'curl', '-s', '-m', '5', 'http://web.kdemo/']);
    assert.equal(r.code, 0, `curl: ${r.stderr}`);
    return r.stdout;
  };

  assert.match(await kubectl(['get', 'nodes']), /node1\s+Ready/);
  await kubectl(['apply', '-f', fx('web.yaml')]);
  await kubectl(['rollout', 'status', 'deployment/web', '-n', 'kdemo', '--timeout=90s']);
  const before = await podsJson();
  assert.equal(before.length, 2);
  const st = await status();
  for (const p of before) {
    const view = st.pods.find((x) => x.namespace === 'kdemo' && x.name === p.metadata.name);
    assert.ok(view?.netns, `pod ${p.metadata.name} runs in a netns of its own`);
    assert.ok(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.includes(view.netns));
    assert.equal(view.ip, p.status.podIP);
    assert.equal(view.enrolled, false, 'namespace kdemo is not in the mesh yet');
  }
  assert.match(await curl(), /"text":"web"/, 'plain traffic reaches the Service before enrollment');

  // Enroll the namespace: the running pods are captured, not restarted.
  await kubectl(['label', 'namespace', 'kdemo', 'istio.io/dataplane-mode=ambient']);
  await waitFor('every kdemo pod captured', async () => {
    const s = await status();
    const pods = s.pods.filter((p) => p.namespace === 'kdemo');
    return pods.length === 3 && pods.every((p) => p.enrolled && p.captured) ? true : undefined;
  }, 60_000);
  const after = await podsJson();
  assert.deepEqual(after.map((p) => p.metadata.uid).sort(), before.map((p) => p.metadata.uid).sort(), 'the same pods, not new ones');
  assert.ok(after.every((p) => (p.status.containerStatuses ?? []).every((c) => c.restartCount === 0)), 'no container restarted');

  const metricsBefore = await Promise.all(st.nodes.map(async (n) => (await fetch(n.metrics)).text()));
  const opened = (texts: string[]): number => texts.reduce((s, m) => s + metricSum(m, 'istio_tcp_connections_opened_total', { reporter: 'destination', destination_workload: 'web', connection_security_policy: 'mutual_tls', source_principal: 'spiffe://cluster.local/ns/kdemo/sa/client' }), 0);
  for (let i = 0; i < 4; i++) assert.match(await curl(), /"text":"web"/);
  await waitFor('the destination agents count mTLS connections from the client', async () => {
    const texts = await Promise.all(st.nodes.map(async (n) => (await fetch(n.metrics)).text()));
    return opened(texts) >= opened(metricsBefore) + 4 ? true : undefined;
  }, 20_000);

  // A waypoint Gateway applied with kubectl gets its pod.
  await kubectl(['apply', '-f', fx('waypoint.yaml')]);
  const waypointPod = await waitFor('the waypoint pod ready', async () => {
    const s = await status();
    const w = s.waypoints.find((x) => x.namespace === 'kdemo' && x.gateway === 'waypoint');
    return w && s.pods.find((p) => p.name === w.pod)?.ready ? w.pod : undefined;
  }, 90_000);

  // What Prometheus' pod discovery (kubernetes_sd_configs, role pod) does, as its own service
  // account: list the pods, keep those annotated prometheus.io/scrape=true, scrape podIP:port/path.
  // (Debian's prometheus 2.42 is built without kubernetes_sd_configs, so the test plays its part.)
  await kubectl(['apply', '-f', fx('prometheus-rbac.yaml')]);
  const promToken = (await kubectl(['create', 'token', 'prometheus', '-n', 'monitoring'])).trim();
  const ca = Buffer.from(await kubectl(['config', 'view', '--raw', '-o', 'jsonpath={.clusters[0].cluster.certificate-authority-data}']), 'base64').toString('utf8');
  const asPrometheus = new KubeClient({ server: st.api.url, caPem: ca, token: () => promToken });
  const discover = async (): Promise<Array<{ pod: string; url: string }>> => {
    const list = await asPrometheus.get<{ items: Array<{ metadata: { name: string; annotations?: Record<string, string> }; status: { podIP?: string } }> }>('/api/v1/pods');
    return list.items
      .filter((p) => p.metadata.annotations?.['prometheus.io/scrape'] === 'true' && p.status.podIP)
      .map((p) => ({ pod: p.metadata.name, url: `http://${p.status.podIP}:${p.metadata.annotations!['prometheus.io/port']}${p.metadata.annotations!['prometheus.io/path'] ?? '/metrics'}` }));
  };
  const targets = await waitFor('both agents and the waypoint discoverable', async () => {
    const found = await discover();
    return found.length === 3 ? found : undefined;
  }, 30_000);
  assert.deepEqual(targets.map((x) => x.pod).sort(), ['ambit-agent-node1', 'ambit-agent-node2', waypointPod].sort(), 'every agent and the waypoint, found by their scrape annotations');
  const agentsWide = await kubectl(['get', 'pods', '-n', 'istio-system', '-l', 'app=ambit-agent', '-o', 'wide']);
  for (const n of st.nodes) assert.match(agentsWide, new RegExp(`ambit-agent-${n.name}\\s+1/1\\s+Running\\s+0\\s+\\S+\\s+${n.ip.replace(/\./g, '\\.')}\\s+${n.name}`), agentsWide);
  await assert.rejects(asPrometheus.get('/api/v1/secrets'), /403/, 'Prometheus\' account reads pods, nothing else');
  for (let i = 0; i < 2; i++) assert.match(await curl(), /"text":"web"/);
  const scraped = await Promise.all(targets.map(async (x) => ({ pod: x.pod, text: await (await fetch(x.url)).text() })));
  for (const x of scraped) assert.match(x.text, x.pod.startsWith('ambit-agent-') ? /^istio_tcp_connections_opened_total\{/m : /^# TYPE istio_requests_total counter/m, `${x.pod} serves Istio's metrics`);
  const total = scraped.reduce((sum, x) => sum + metricSum(x.text, 'istio_tcp_connections_opened_total', { reporter: 'destination', destination_workload: 'web' }), 0);
  assert.ok(total >= 6, `the discovered agents report the connections to web (${total})`);
  await kubectl(['delete', '-f', fx('waypoint.yaml')]);

  // Unenroll: captured no more, traffic still flows directly.
  await kubectl(['label', 'namespace', 'kdemo', 'istio.io/dataplane-mode-']);
  await waitFor('kdemo pods out of the mesh', async () => ((await status()).pods.filter((p) => p.namespace === 'kdemo').every((p) => !p.enrolled) ? true : undefined), 60_000);
  assert.match(await curl(), /"text":"web"/);

  // kubectl delete: pods and their netns go.
  const netns = (await status()).pods.filter((p) => p.namespace === 'kdemo' && p.name.startsWith('web-')).map((p) => p.netns);
  await kubectl(['delete', '-f', fx('web.yaml'), '--timeout=60s']);
  await waitFor('the web pods and their netns gone', async () => {
    const s = await status();
    const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    return !s.pods.some((p) => p.name.startsWith('web-')) && netns.every((n) => !list.includes(n)) ? true : undefined;
  }, 60_000);
  assert.equal((await runKubectl(kubeconfig, cache, ['get', 'pods', '-n', 'kdemo', '-l', 'app=web', '-o', 'name'])).stdout.trim(), '');

  const down = await ambit(['local', 'down', '--name', name]);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(leftovers(name), []);
});
