/**
 * Local mode's cluster without the mesh, as kubectl sees it: the API server on the bridge, the
 * controllers, the scheduler and one node runtime per node. The real kubectl applies a Deployment
 * and a Service; each pod becomes a network namespace wired by the node's CNI chain, its process
 * runs as the securityContext says (uid, no capabilities, no_new_privs), its status carries its IP
 * and readiness, the Service's ClusterIP name resolves and balances inside pods; a pod cannot read
 * the cluster's keys or another pod's token; `kubectl delete` removes the pods and their netns.
 * Waits are on API watches; the block's mesh lock is taken before the test's clock starts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster } from '../../src/local/cluster.js';
import { cleanupLeftovers } from '../../src/local/cleanup.js';
import { createLogger } from '../../src/shared/log.js';
import { isRoot, leftovers, lockLocalMesh, meshName, netnsGone, repoRoot } from '../helpers/local-mesh.js';
import { kubeClientFromKubeconfig, watchUntil } from '../helpers/kube-watch.js';
import { runKubectl } from '../integration/apiserver/helpers.js';

const NET = Number(process.env['AMBIT_LOCAL_NET'] ?? '1');

/** A pod that answers who it runs as, and whether it may read or list a path it is asked about. */
const PROBE = `
const http = require('http'), fs = require('fs');
const attempt = (f) => { try { f(); return 'ok'; } catch (e) { return e.code || String(e); } };
http.createServer((q, s) => {
  const u = new URL(q.url, 'http://x');
  const p = u.searchParams.get('path') || '';
  if (u.pathname === '/read') return s.end(attempt(() => fs.readFileSync(p)));
  if (u.pathname === '/list') return s.end(attempt(() => fs.readdirSync(p)));
  if (u.pathname === '/fetch') return http.get(p, { agent: false }, (r) => { let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => s.end(b)); }).on('error', (e) => s.end('ERR ' + e.code));
  const st = fs.readFileSync('/proc/self/status', 'utf8');
  const field = (k) => (new RegExp('^' + k + ':\\\\s*(.*)$', 'm').exec(st) || [])[1];
  s.end(JSON.stringify({ host: process.env.HOSTNAME, uid: process.getuid(), gid: process.getgid(), capEff: field('CapEff'), capBnd: field('CapBnd'), noNewPrivs: field('NoNewPrivs') }));
}).listen(8080);
`;

const APP = `apiVersion: v1
kind: Namespace
metadata: {name: lkdemo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: lkdemo}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: {runAsUser: 1234, runAsGroup: 1234, runAsNonRoot: true}
      containers:
      - name: web
        image: none
        command: [node, -e, ${JSON.stringify(PROBE)}]
        ports: [{name: http, containerPort: 8080}]
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: lkdemo}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
`;

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--max-time', '10', url], { timeout: 15_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${url}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

const POD_NETNS = (prefix: string): RegExp => new RegExp(`^${prefix}-n\\d+-`);

function netnsList(prefix: string): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.split(' ')[0]!).filter((n) => POD_NETNS(prefix).test(n));
}

const unlock = isRoot() ? await lockLocalMesh() : undefined;

test('local cluster: kubectl-applied pods run in their own netns as their securityContext says', { skip: isRoot() ? false : 'requires root (network namespaces, setpriv)' }, async (t) => {
  const prefix = meshName('lk');
  const stateDir = mkdtempSync(join(tmpdir(), 'ambit-lk-'));
  const log = createLogger({ level: (process.env['AMBIT_TEST_LOG'] ?? 'silent') as 'silent' });
  let cluster: LocalCluster | undefined;
  t.after(async () => {
    await cluster?.stop();
    await cleanupLeftovers(prefix);
    rmSync(stateDir, { recursive: true, force: true });
    unlock?.();
  });
  await cleanupLeftovers(prefix);
  cluster = await LocalCluster.start({ prefix, nodes: 2, net: NET, stateDir, repoRoot, cwd: repoRoot, log });
  const kubectl = (args: string[], input?: string) => runKubectl(cluster!.kubeconfigPath, join(stateDir, 'kube-cache'), args, input !== undefined ? { input } : {});
  const logs = (): string => {
    const dir = join(stateDir, 'logs');
    return existsSync(dir) ? spawnSync('sh', ['-c', `tail -n 5 ${dir}/*`], { encoding: 'utf8' }).stdout : '';
  };

  const nodes = await kubectl(['get', 'nodes', '-o', 'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}']);
  assert.equal(nodes.code, 0, nodes.stderr);
  assert.deepEqual(nodes.stdout.trim().split(' ').sort(), ['node1=True', 'node2=True']);

  const applied = await kubectl(['apply', '-f', '-'], APP);
  assert.equal(applied.code, 0, applied.stderr);
  const wait = await kubectl(['wait', '--for=condition=Ready', 'pod', '-l', 'app=web', '-n', 'lkdemo', '--timeout=90s']);
  assert.equal(wait.code, 0, `${wait.stderr}\n${logs()}`);
  const pods = JSON.parse((await kubectl(['get', 'pods', '-n', 'lkdemo', '-o', 'json'])).stdout) as { items: Array<{ metadata: { name: string; uid: string }; spec: { nodeName: string }; status: { podIP: string; phase: string } }> };
  assert.equal(pods.items.length, 2);
  assert.deepEqual(pods.items.map((p) => p.spec.nodeName).sort(), ['node1', 'node2'], 'the scheduler spread the replicas');
  assert.equal(netnsList(prefix).length, 2, 'one netns per pod');
  const [a, b] = pods.items as [(typeof pods.items)[0], (typeof pods.items)[0]];
  for (const p of pods.items) assert.match(p.status.podIP, new RegExp(`^10\\.${244 + NET}\\.${p.spec.nodeName === 'node1' ? 1 : 2}\\.\\d+$`), 'the address comes from the node\'s pod CIDR');

  // The process runs as the pod asked: uid/gid 1234, no capabilities at all, no_new_privs.
  const who = JSON.parse(await httpGet(`http://${a.status.podIP}:8080/`)) as { host: string; uid: number; gid: number; capEff: string; capBnd: string; noNewPrivs: string };
  assert.equal(who.host, a.metadata.name);
  assert.deepEqual([who.uid, who.gid], [1234, 1234]);
  assert.equal(BigInt(`0x${who.capEff}`), 0n, 'no effective capabilities');
  assert.equal(BigInt(`0x${who.capBnd}`), 0n, 'capabilities: drop ALL empties the bounding set');
  assert.equal(who.noNewPrivs, '1');

  // Isolation: the pod reads its own projected token, not the cluster's keys nor another pod's files.
  assert.equal(await httpGet(`http://${a.status.podIP}:8080/read?path=/var/run/secrets/kubernetes.io/serviceaccount/token`), 'ok', 'its own service-account token is readable');
  assert.equal(await httpGet(`http://${a.status.podIP}:8080/list?path=${encodeURIComponent(stateDir)}`), 'EACCES', 'the state folder (API server keys) is root-only');
  assert.equal(await httpGet(`http://${a.status.podIP}:8080/read?path=${encodeURIComponent(join(stateDir, 'apiserver', 'admin-token'))}`), 'EACCES');
  assert.equal(await httpGet(`http://${a.status.podIP}:8080/list?path=${encodeURIComponent(join(stateDir, 'nodes', b.spec.nodeName, 'pods', b.metadata.uid))}`), 'EACCES', 'another pod\'s volumes are out of reach');

  // The Service: its name resolves in pods and its ClusterIP reaches both replicas.
  const seen = new Set<string>();
  for (let i = 0; i < 20 && seen.size < 2; i++) {
    const body = await httpGet(`http://${a.status.podIP}:8080/fetch?path=${encodeURIComponent('http://web.lkdemo.svc.cluster.local/')}`);
    assert.ok(!body.startsWith('ERR'), `pod to Service: ${body}\n${logs()}`);
    seen.add((JSON.parse(body) as { host: string }).host);
  }
  assert.deepEqual([...seen].sort(), pods.items.map((p) => p.metadata.name).sort(), 'the ClusterIP balances over both replicas');
  const slices = await kubectl(['get', 'endpointslices', '-n', 'lkdemo', '-l', 'kubernetes.io/service-name=web', '-o', 'jsonpath={.items[0].endpoints[*].addresses[0]}']);
  assert.deepEqual(slices.stdout.split(' ').sort(), pods.items.map((p) => p.status.podIP).sort());

  // A pod that cannot run as written says why in its status.
  const bad = await kubectl(['run', 'rooty', '-n', 'lkdemo', '--image=none', '--overrides={"spec":{"securityContext":{"runAsNonRoot":true},"containers":[{"name":"rooty","image":"none","command":["sleep","60"]}]}}']);
  assert.equal(bad.code, 0, bad.stderr);
  const admin = kubeClientFromKubeconfig(cluster.kubeconfigPath);
  const reason = await watchUntil(admin, '/api/v1/namespaces/lkdemo/pods', 'rooty waiting with a reason', (items) => {
    const statuses = items[0]?.status?.['containerStatuses'] as Array<{ state?: { waiting?: { message?: string } } }> | undefined;
    const message = statuses?.[0]?.state?.waiting?.message;
    return message !== undefined && /runAsNonRoot/.test(message) ? message : undefined;
  }, { fieldSelector: 'metadata.name=rooty' });
  assert.match(reason, /would run as root/);

  // kubectl delete: pods stop, their netns go.
  const del = await kubectl(['delete', 'namespace', 'lkdemo', '--timeout=60s']);
  assert.equal(del.code, 0, del.stderr);
  await watchUntil(admin, '/api/v1/namespaces/lkdemo/pods', 'the lkdemo pods gone', (items) => (items.length === 0 ? true : undefined));
  await netnsGone('the pods\' netns removed', (n) => POD_NETNS(prefix).test(n));
  assert.deepEqual(netnsList(prefix), []);
  assert.match(readFileSync(join(stateDir, 'kubeconfig'), 'utf8'), new RegExp(`server: https://10\\.240\\.${NET}\\.1:6443`));

  await cluster.stop();
  cluster = undefined;
  await cleanupLeftovers(prefix);
  assert.deepEqual(leftovers(prefix), []);
});
