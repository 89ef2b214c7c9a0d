/**
 * The agent on a node, end to end with real parts and Kubernetes mode throughout: the agent
 * process (dist/src/agent/main.js) with BPF capture in a test cgroup, authenticating with a
 * projected service-account token (audience istio-ca); the controller in Kubernetes mode
 * (informers, TokenReview) against local mode's API server, which also holds the pods, namespaces
 * and the RBAC of daemonset/core; the CNI plugin executable (dist/src/cni/main.js, run as a
 * runtime runs it) against the agent's CNI socket, for pods that are real network namespaces.
 *
 * Covered: pods that predate the agent are found by scanning host processes (with and without a
 * bind mount); ADD of an ambient pod the controller knows captures it before ADD returns; ADD
 * while the controller is away holds the pod's traffic until the controller is back and enrolls
 * it; CHECK; a non-ambient pod passes without the agent; labels set through the API on the
 * namespace and the pod enroll and unenroll a running pod while a long transfer between two
 * other enrolled pods goes on unbroken; the redirection annotation follows in the API server;
 * while the agent is down ADD fails closed and the pod stays refused; a restarted agent captures
 * the CNI's pods again from its state file; DEL releases.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { KubernetesController } from '../../src/controller/kubernetes-mode.js';
import { ApiServer } from '../../src/local/apiserver/server.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { BpfCapture } from '../../src/agent/capture/redirect.js';
import { createLogger, silentLogger } from '../../src/shared/log.js';
import { listenInNetns, socketInNetns } from '../../native/netns.js';
import { bpfSkipReason, closeServer, createFixture, dialFrom, outcome, serveFd, type Fixture, type Pod } from '../bpf/fixture.js';
import { metricSum, waitFor } from '../helpers/local-mesh.js';
import { execCniPlugin, type CniRun } from '../helpers/cni-exec.js';
import { spawnJsonLogged, type JsonLogProcess } from '../helpers/json-process.js';

const DIST = fileURLToPath(new URL('../../', import.meta.url));
const REPO = join(DIST, '..');
const AGENT_MAIN = join(DIST, 'src/agent/main.js');
const CNI_MAIN = join(DIST, 'src/cni/main.js');
const NODE = 'node-1';
const AGENT_POD = 'ambit-agent-node-1';
const ANNOTATION = 'ambient.istio.io/redirection';
const LABEL = 'istio.io/dataplane-mode';
const APP_PORT = 8080;
const STREAM_PORT = 9001;

const skip = bpfSkipReason();

type Proc = JsonLogProcess;

/** Every process spawned, so a failing run can leave their logs (AMBIT_TEST_LOG_DIR). */
const spawned: Array<{ name: string; proc: Proc }> = [];

function startProc(script: string, env: Record<string, string>): Proc {
  const proc = spawnJsonLogged(script, env);
  spawned.push({ name: `${spawned.length}-${script.split('/').slice(-2).join('-')}`, proc });
  return proc;
}

function fatalOf(p: Proc): string | undefined {
  const f = p.lines.find((l) => l['level'] === 60);
  return f ? JSON.stringify(f) : undefined;
}

interface Harness {
  fx: Fixture;
  dir: string;
  api: ApiServer;
  socketPath: string;
  agentEnv: Record<string, string>;
  pluginConf: Record<string, unknown>;
  uids: Map<string, string>;
}

function prevResultOf(p: Pod): Record<string, unknown> {
  return { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: p.netnsPath }], ips: [{ address: `${p.ip}/24`, interface: 0 }, { address: `${p.ip6}/64`, interface: 0 }], routes: [], dns: {} };
}

/** Runs the plugin executable as a runtime does for `namespace/name` in `pod`'s netns. */
function runPlugin(h: Harness, command: 'ADD' | 'CHECK' | 'DEL', namespace: string, name: string, pod: Pod, netns = pod.netnsPath): Promise<CniRun> {
  const config = { ...h.pluginConf, prevResult: prevResultOf(pod) };
  return execCniPlugin(process.execPath, [CNI_MAIN], { command, namespace, name, netns, podUid: h.uids.get(`${namespace}/${name}`) ?? '', cniPath: '/opt/cni/bin', config });
}

/** Sets (or with null removes) labels of a namespace or pod through the API, as kubectl label does. */
async function patchLabels(h: Harness, path: string, labels: Record<string, string | null>): Promise<void> {
  await h.api.requestOk({ method: 'PATCH', path, contentType: 'application/merge-patch+json', body: { metadata: { labels } } });
}

/** Creates `name` in `ns` on the node for fixture pod `p`, and marks it Running with its addresses as a kubelet would. */
async function createPod(h: Harness, ns: string, name: string, p: Pod | undefined, sa = 'default'): Promise<void> {
  const created = await h.api.requestOk<{ metadata: { uid: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${ns}/pods`,
    body: { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels: { app: name } }, spec: { nodeName: NODE, serviceAccountName: sa, containers: [{ name: 'app', image: 'app' }] } },
  });
  h.uids.set(`${ns}/${name}`, created.metadata.uid);
  if (!p) return;
  await h.api.requestOk({
    method: 'PATCH',
    path: `/api/v1/namespaces/${ns}/pods/${name}/status`,
    contentType: 'application/merge-patch+json',
    body: { status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }, { ip: p.ip6 }], conditions: [{ type: 'Ready', status: 'True' }] } },
  });
}

async function annotationOf(h: Harness, namespace: string, name: string): Promise<string | undefined> {
  const pod = await h.api.requestOk<{ metadata: { annotations?: Record<string, string> } }>({ method: 'GET', path: `/api/v1/namespaces/${namespace}/pods/${name}` });
  return pod.metadata.annotations?.[ANNOTATION];
}

async function waitAnnotation(h: Harness, namespace: string, name: string, want: string | undefined): Promise<void> {
  await waitFor(`${namespace}/${name} ${ANNOTATION}=${want ?? '(none)'}`, async () => ((await annotationOf(h, namespace, name)) === want ? true : undefined), 60_000, 100);
}

/** Creates the API objects: the node, namespaces, RBAC from daemonset/core, the agent's pod and the fixture's pods but client. */
async function seedApi(h: Harness): Promise<void> {
  const post = (path: string, body: unknown): Promise<{ metadata: { uid: string } }> => h.api.requestOk({ method: 'POST', path, body });
  await post('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
  for (const [name, labels] of [['istio-system', {}], ['demo', { [LABEL]: 'ambient' }], ['plain', {}]] as const) {
    await post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
  }
  const collections: Record<string, string> = {
    ServiceAccount: '/api/v1/namespaces/istio-system/serviceaccounts',
    ClusterRole: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
    ClusterRoleBinding: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
    Role: '/apis/rbac.authorization.k8s.io/v1/namespaces/istio-system/roles',
    RoleBinding: '/apis/rbac.authorization.k8s.io/v1/namespaces/istio-system/rolebindings',
  };
  for (const file of ['rbac-agent.yaml', 'rbac-cni.yaml', 'rbac-controller.yaml']) {
    for (const doc of parseAllDocuments(readFileSync(join(REPO, 'daemonset/core', file), 'utf8'))) {
      const obj = doc.toJS() as { kind: string; metadata: Record<string, unknown> } | null;
      if (!obj) continue;
      const path = collections[obj.kind];
      assert.ok(path, `${file}: ${obj.kind} has a collection`);
      if (path.includes('/namespaces/')) obj.metadata['namespace'] = 'istio-system';
      await post(path, obj);
    }
  }
  const [, server, legacy, app, orphan] = h.fx.pods as [Pod, Pod, Pod, Pod, Pod];
  for (const [name, p] of [['server', server], ['legacy', legacy], ['orphan', orphan]] as const) await createPod(h, 'demo', name, p);
  await createPod(h, 'plain', 'app', app);
  // The agent's own pod: its projected token is bound to it, which tells TokenReview its node.
  await createPod(h, 'istio-system', AGENT_POD, undefined, 'ambit-agent');
}

/** Sum of istio_tcp_connections_opened_total for `labels` on the agent's /metrics. */
async function opened(metricsUrl: string, labels: Record<string, string>): Promise<number> {
  const res = await fetch(`${metricsUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
  return metricSum(await res.text(), 'istio_tcp_connections_opened_total', labels);
}

/** One agent process; resolves once /healthz/ready answers 200. */
async function startAgent(h: Harness): Promise<{ proc: Proc; metricsUrl: string }> {
  const proc = startProc(AGENT_MAIN, h.agentEnv);
  const listeners = await waitFor(
    'agent listeners',
    async () => {
      const fatal = fatalOf(proc);
      if (fatal) assert.fail(`agent failed: ${fatal}`);
      const l = proc.lines.filter((x) => x['msg'] === 'listener established').map((x) => x['addr'] as net.AddressInfo);
      return l.length >= 2 ? l : undefined;
    },
    30_000,
    50,
  );
  const [metrics, ready] = listeners as [net.AddressInfo, net.AddressInfo];
  await waitFor(
    'agent ready',
    async () => {
      const fatal = fatalOf(proc);
      if (fatal) assert.fail(`agent failed: ${fatal}`);
      const res = await fetch(`http://127.0.0.1:${ready.port}/healthz/ready`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
      const body = await res?.text();
      return res?.status === 200 ? body : undefined;
    },
    60_000,
    100,
  );
  return { proc, metricsUrl: `http://127.0.0.1:${metrics.port}` };
}

async function stopProc(p: Proc | undefined): Promise<number | null | undefined> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return p?.child.exitCode;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 20_000);
  const code = await p.exited;
  clearTimeout(timer);
  return code;
}

/** A client in `from` streaming to `to`:STREAM_PORT until stop(); the server hashes what arrives. */
function startStream(from: Pod, to: Pod): { stop(): Promise<{ sent: number; sentHash: string; reply: string }>; sent(): number } {
  const socket = new net.Socket({ fd: socketInNetns(from.netnsPath, { family: 'IPv4' }) });
  const hash = createHash('sha256');
  const chunk = randomBytes(64 * 1024);
  let sent = 0;
  let stopped = false;
  let reply = '';
  let failure: Error | undefined;
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (reply += d));
  socket.on('error', (e) => (failure = e));
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  const pump = (): void => {
    // About 2.5 MiB/s: the transfer lasts as long as the label changes take, bounded by stop().
    if (stopped || failure) return;
    for (let i = 0; i < 4; i++) {
      hash.update(chunk);
      sent += chunk.length;
      if (!socket.write(chunk)) {
        socket.once('drain', () => setTimeout(pump, 100));
        return;
      }
    }
    setTimeout(pump, 100);
  };
  socket.connect(STREAM_PORT, to.ip, pump);
  return {
    sent: () => sent,
    async stop() {
      stopped = true;
      socket.end();
      const timer = setTimeout(() => socket.destroy(new Error('no reply from the stream server within 30 s')), 30_000);
      await ended;
      clearTimeout(timer);
      if (failure) throw failure;
      return { sent, sentHash: hash.digest('hex'), reply: reply.trim() };
    },
  };
}

/** The stream server in `pod`: counts and hashes everything, replies `<bytes> <sha256>` at the end. */
function serveStream(pod: Pod): net.Server {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const hash = createHash('sha256');
    let bytes = 0;
    s.on('data', (d: Buffer) => {
      bytes += d.length;
      hash.update(d);
    });
    s.on('end', () => s.end(`${bytes} ${hash.digest('hex')}\n`));
    s.on('error', () => undefined);
  });
  server.listen({ fd: listenInNetns(pod.netnsPath, { address: '::', port: STREAM_PORT }) });
  return server;
}

/** A process living in `pod`'s netns (a pod's container that predates the agent). */
function sleeper(pod: Pod): ChildProcess {
  const child = spawn('nsenter', [`--net=${pod.netnsPath}`, 'sleep', '600'], { stdio: 'ignore' });
  child.on('error', () => undefined);
  return child;
}

test('agent on a node in Kubernetes mode: CNI hand-off, host scan, redirection annotation, live labels, restart and fail-closed', { skip, timeout: 600_000 }, async (t) => {
  const fx = createFixture('k', 5);
  fx.enterCgroup();
  const [client, server, legacy, app, orphan] = fx.pods as [Pod, Pod, Pod, Pod, Pod];
  const dir = await mkdtemp(join(tmpdir(), 'ambit-agent-node-'));
  const servers: net.Server[] = [];
  const sleepers: ChildProcess[] = [];
  let api: ApiServer | undefined;
  let controller: KubernetesController | undefined;
  const controllerLog: string[] = [];
  let agent: Proc | undefined;
  const pinDir = `/sys/fs/bpf/${fx.prefix}`;
  t.after(async () => {
    const logDir = process.env['AMBIT_TEST_LOG_DIR'];
    if (logDir) {
      for (const { name, proc } of spawned) await writeFile(join(logDir, `${name}.log`), proc.lines.map((l) => JSON.stringify(l)).join('\n'));
      await writeFile(join(logDir, 'controller.log'), controllerLog.join(''));
    }
    await stopProc(agent);
    await controller?.close();
    for (const s of sleepers) s.kill('SIGKILL');
    await api?.stop();
    if (existsSync(pinDir)) await (await BpfCapture.open({ cgroupPath: fx.cgroupPath, pinDir, log: silentLogger() })).uninstall();
    for (const s of servers) await closeServer(s);
    fx.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  // Apps: every pod answers on APP_PORT with its name; the server also takes the long stream.
  for (const p of fx.pods) servers.push(serveFd(listenInNetns(p.netnsPath, { address: '::', port: APP_PORT }), () => `hello from ${p.name}`));
  servers.push(serveStream(server));
  // Containers that predate the agent: legacy keeps its netns bind mount, orphan's is gone (only
  // its process holds the netns), app's namespace is labelled later.
  const legacyProc = sleeper(legacy);
  const orphanProc = sleeper(orphan);
  sleepers.push(legacyProc, orphanProc, sleeper(app));
  const inode = (path: string): number | undefined => {
    try {
      return statSync(path).ino;
    } catch {
      return undefined;
    }
  };
  for (const [proc, p] of [[legacyProc, legacy], [orphanProc, orphan], [sleepers[2]!, app]] as const) {
    await waitFor(`a process in ${p.name}`, async () => (inode(`/proc/${proc.pid}/ns/net`) === inode(p.netnsPath) ? true : undefined));
  }
  execFileSync('ip', ['netns', 'del', orphan.name]);
  const orphanNetns = `/proc/${orphanProc.pid}/ns/net`;

  api = await ApiServer.start({ stateDir: join(dir, 'apiserver'), log: silentLogger() });
  const h: Harness = {
    fx,
    dir,
    api,
    socketPath: join(dir, 'run', 'cni.sock'),
    agentEnv: {},
    pluginConf: {},
    uids: new Map(),
  };
  await seedApi(h);
  const agentToken = api.issueServiceAccountToken({ namespace: 'istio-system', serviceAccount: 'ambit-agent' }).token;
  const cniToken = api.issueServiceAccountToken({ namespace: 'istio-system', serviceAccount: 'ambit-cni' }).token;
  await writeFile(join(dir, 'agent.kubeconfig'), api.serviceAccountKubeconfig(agentToken, 'istio-system', 'ambit-agent'), { mode: 0o600 });
  await writeFile(join(dir, 'cni.kubeconfig'), api.serviceAccountKubeconfig(cniToken, 'istio-system', 'ambit-cni'), { mode: 0o600 });
  // The agent's projected token, as the DaemonSet mounts it: audience istio-ca, bound to its pod.
  const projected = api.issueServiceAccountToken({ namespace: 'istio-system', serviceAccount: 'ambit-agent', audiences: ['istio-ca'], pod: AGENT_POD }).token;
  await writeFile(join(dir, 'istio-token'), projected, { mode: 0o600 });
  h.pluginConf = {
    cniVersion: '1.0.0',
    name: 'testnet',
    type: 'ambit-cni',
    agent_socket: h.socketPath,
    agent_timeout: '5s',
    kubeconfig: join(dir, 'cni.kubeconfig'),
    kube_timeout: '5s',
    log_level: 'debug',
  };

  // The controller in Kubernetes mode as its own service account (RBAC of rbac-controller.yaml).
  const controllerToken = api.issueServiceAccountToken({ namespace: 'istio-system', serviceAccount: 'ambit-controller', expirationSeconds: 7200 }).token;
  const controllerKubeconfig = api.serviceAccountKubeconfig(controllerToken, 'istio-system', 'ambit-controller');
  let controllerPort = 0;
  const startController = async (): Promise<KubernetesController> => {
    const kc = await KubernetesController.start({
      kubeconfig: { text: controllerKubeconfig },
      namespace: 'istio-system',
      stateDir: join(dir, 'controller'),
      host: '127.0.0.1',
      port: controllerPort,
      trustDomain: 'cluster.local',
      log: createLogger({ level: 'info', name: 'controller', destination: { write: (line: string) => void controllerLog.push(line) } }),
      registry: createRegistry(),
      debounceMs: 10,
      lease: { durationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 200 },
      informerBackoff: { initialMs: 100, maxMs: 1000 },
      proxy: { image: 'localhost/ambit:test' },
    });
    controllerPort = Number(kc.controller.address.slice(kc.controller.address.lastIndexOf(':') + 1));
    return kc;
  };
  controller = await startController();
  await writeFile(join(dir, 'root-cert.pem'), controller.controller.ca.rootCertPem);
  h.agentEnv = {
    AMBIT_NODE_NAME: NODE,
    AMBIT_CONTROLLER_ADDR: `127.0.0.1:${controllerPort}`,
    AMBIT_CA_ROOT_FILE: join(dir, 'root-cert.pem'),
    AMBIT_TOKEN_FILE: join(dir, 'istio-token'),
    AMBIT_CAPTURE: 'bpf',
    AMBIT_CGROUP_PATH: fx.cgroupPath,
    AMBIT_PIN_DIR: pinDir,
    AMBIT_METRICS_ADDR: '127.0.0.1:0',
    AMBIT_READY_ADDR: '127.0.0.1:0',
    AMBIT_ADMIN_ADDR: '127.0.0.1:0',
    AMBIT_CNI_SOCKET: h.socketPath,
    AMBIT_KUBECONFIG: join(dir, 'agent.kubeconfig'),
    AMBIT_DRAIN_DEADLINE: '1s',
    AMBIT_LOG_LEVEL: 'info',
  };
  let started = await startAgent(h);
  agent = started.proc;
  let metricsUrl = started.metricsUrl;
  const sourceOpened = (workload: string): Promise<number> => opened(metricsUrl, { reporter: 'source', source_workload: workload });

  await t.test('pods that predate the agent are found by scanning host processes and captured', async () => {
    await waitAnnotation(h, 'demo', 'legacy', 'enabled');
    await waitAnnotation(h, 'demo', 'orphan', 'enabled');
    // Each dials the other: both ends are captured, so the connection crosses the agent's HBONE.
    for (const [name, netns, peer] of [['legacy', legacy.netnsPath, orphan], ['orphan', orphanNetns, legacy]] as const) {
      const before = await sourceOpened(name);
      assert.equal(await dialFrom(netns, peer.ip, APP_PORT), `hello from ${peer.name}`);
      assert.equal(await sourceOpened(name), before + 1, `${name}'s connection went through the agent`);
    }
    const scanned = agent!.lines.filter((l) => l['msg'] === 'pod network namespace found by host scan').map((l) => [String(l['uid']).split('/').pop(), String(l['netns'])]);
    assert.deepEqual(
      scanned.map(([n, p]) => [n, p!.startsWith('/proc/') ? 'held fd' : p]).sort(),
      [
        ['legacy', legacy.netnsPath],
        ['orphan', 'held fd'],
      ],
      'legacy by its bind mount, orphan by a descriptor the agent holds',
    );
  });

  await t.test('ADD of an ambient pod the controller already knows captures it before ADD returns', async () => {
    const r = await runPlugin(h, 'ADD', 'demo', 'server', server);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.json, prevResultOf(server), 'prevResult passed through');
    await waitAnnotation(h, 'demo', 'server', 'enabled');
    const before = await sourceOpened('server');
    assert.equal(await dialFrom(server.netnsPath, legacy.ip, APP_PORT), `hello from ${legacy.name}`);
    assert.equal(await sourceOpened('server'), before + 1);
  });

  await t.test('ADD while the controller is away holds the pod\'s traffic (pending) until the controller is back and enrolls it', async () => {
    await controller!.close();
    controller = undefined;
    await createPod(h, 'demo', 'client', client);
    const r = await runPlugin(h, 'ADD', 'demo', 'client', client);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await waitAnnotation(h, 'demo', 'client', 'pending');
    assert.equal(await outcome(dialFrom(client.netnsPath, server.ip, APP_PORT)), 'EPERM', 'no uncaptured connection out');
    assert.equal(await outcome(dialFrom(app.netnsPath, client.ip, APP_PORT)), 'ECONNREFUSED', 'none in either');
    controller = await startController();
    await waitAnnotation(h, 'demo', 'client', 'enabled');
    const before = await sourceOpened('client');
    assert.equal(await dialFrom(client.netnsPath, server.ip, APP_PORT), `hello from ${server.name}`);
    assert.equal(await sourceOpened('client'), before + 1, 'captured: counted by the agent');
    const check = await runPlugin(h, 'CHECK', 'demo', 'client', client);
    assert.deepEqual([check.code, check.stdout], [0, ''], check.stdout + check.stderr);
    const wrong = await runPlugin(h, 'CHECK', 'demo', 'client', client, app.netnsPath);
    assert.equal(wrong.code, 1);
    assert.match(String(wrong.json?.['msg']), /is not captured in/);
  });

  await t.test('ADD of a pod that is not ambient passes without the agent', async () => {
    const cniAdds = (): Promise<number> => fetch(`${metricsUrl}/metrics`).then(async (r) => metricSum(await r.text(), 'ambit_cni_requests_total', { op: 'add' }));
    const before = await cniAdds();
    const r = await runPlugin(h, 'ADD', 'plain', 'app', app);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.json, prevResultOf(app));
    assert.equal(await cniAdds(), before, 'the agent was not asked');
    assert.equal(await annotationOf(h, 'plain', 'app'), undefined);
  });

  await t.test('labels act live: a running pod enrolls and unenrolls while a long transfer between two other enrolled pods goes on', async () => {
    const stream = startStream(client, server);
    await waitFor('the stream flowing', async () => (stream.sent() > 1 << 20 ? true : undefined));
    const ns = '/api/v1/namespaces/plain';
    const pod = '/api/v1/namespaces/plain/pods/app';
    const steps: Array<[string, string, Record<string, string | null>, string | undefined]> = [
      ['namespace labelled ambient', ns, { [LABEL]: 'ambient' }, 'enabled'],
      ['pod opted out with none', pod, { [LABEL]: 'none' }, undefined],
      ['pod label removed', pod, { [LABEL]: null }, 'enabled'],
      ['namespace label removed', ns, { [LABEL]: null }, undefined],
    ];
    for (const [what, path, labels, want] of steps) {
      await patchLabels(h, path, labels);
      await waitAnnotation(h, 'plain', 'app', want);
      const before = await sourceOpened('app');
      assert.equal(await dialFrom(app.netnsPath, legacy.ip, APP_PORT), `hello from ${legacy.name}`, what);
      assert.equal(await sourceOpened('app'), before + (want === 'enabled' ? 1 : 0), `${what}: app ${want ? 'captured' : 'direct'}`);
    }
    const sentBefore = stream.sent();
    // Still flowing after every step, and long: past 4 MiB whatever pace the steps went at.
    await waitFor('the stream still flowing', async () => (stream.sent() > Math.max(sentBefore + (1 << 20), 4 << 20) ? true : undefined));
    const { sent, sentHash, reply } = await stream.stop();
    assert.equal(reply, `${sent} ${sentHash}`, 'every byte arrived, in order, on the one connection');
    assert.ok(sent > 4 << 20, `a long transfer (${sent} bytes)`);
    const streamed = await opened(metricsUrl, { reporter: 'source', source_workload: 'client', destination_workload: 'server' });
    assert.ok(streamed >= 1, 'the stream went through the mesh');
  });

  await t.test('while the agent is down: ambient ADD fails closed, other pods start, the captured pod stays refused', async () => {
    assert.equal(await stopProc(agent), 0, 'SIGTERM exits 0');
    assert.ok(!existsSync(h.socketPath), 'the CNI socket is gone with the agent');
    const enrolled = await runPlugin(h, 'ADD', 'demo', 'client', client);
    assert.equal(enrolled.code, 1);
    assert.equal(enrolled.json?.['code'], 11);
    assert.match(String(enrolled.json?.['msg']), /did not answer, so the pod cannot be captured and must not start/);
    const other = await runPlugin(h, 'ADD', 'plain', 'app', app);
    assert.equal(other.code, 0, other.stdout);
    assert.equal(await outcome(dialFrom(client.netnsPath, server.ip, APP_PORT)), 'ECONNREFUSED', 'captured, nobody listens: refused, never direct');
    assert.equal(await annotationOf(h, 'demo', 'client'), 'enabled', 'a stopping agent leaves the annotation: the pod is still captured');
  });

  await t.test('a restarted agent captures the pods the CNI handed over again, from its state file', async () => {
    const state = JSON.parse(await readFile(join(dir, 'run', 'netns-state.json'), 'utf8')) as { pods: Array<{ uid: string; netnsPath: string }> };
    assert.deepEqual(state.pods.map((p) => [p.uid.split('/').pop(), p.netnsPath]).sort(), [
      ['client', client.netnsPath],
      ['server', server.netnsPath],
    ]);
    started = await startAgent(h);
    agent = started.proc;
    metricsUrl = started.metricsUrl;
    assert.ok(agent.lines.some((l) => l['msg'] === 'pod netns records loaded' && l['pods'] === 2));
    const before = await sourceOpened('client');
    assert.equal(await dialFrom(client.netnsPath, server.ip, APP_PORT), `hello from ${server.name}`);
    assert.equal(await sourceOpened('client'), before + 1, 'client captured again (no process in its netns: only the state file knew it)');
    assert.equal(await annotationOf(h, 'demo', 'client'), 'enabled');
  });

  await t.test('DEL releases the pod and removes its annotation', async () => {
    const r = await runPlugin(h, 'DEL', 'demo', 'client', client);
    assert.deepEqual([r.code, r.stdout], [0, ''], r.stderr);
    await waitAnnotation(h, 'demo', 'client', undefined);
    const before = await sourceOpened('client');
    assert.equal(await dialFrom(client.netnsPath, server.ip, APP_PORT), `hello from ${server.name}`);
    assert.equal(await sourceOpened('client'), before, 'direct again');
    assert.equal(await annotationOf(h, 'demo', 'server'), 'enabled', 'other pods keep theirs');
  });
});
