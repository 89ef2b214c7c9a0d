/**
 * The agent on a node, end to end with real parts: the agent process (dist/src/agent/main.js)
 * with BPF capture in a test cgroup, the controller process over manifest files (its file
 * source), local mode's Kubernetes API server (pods, namespaces, the RBAC of daemonset/core) and
 * the CNI plugin executable (dist/src/cni/main.js, run as a runtime runs it) against the agent's
 * CNI socket, for pods that are real network namespaces.
 *
 * Covered: pods that predate the agent are found by scanning host processes (with and without a
 * bind mount); ADD of an ambient pod holds its traffic until the controller enrolls it, then it
 * is captured (agent counters); CHECK; a non-ambient pod passes without the agent; labels on the
 * namespace and the pod enroll and unenroll a running pod while a long transfer between two other
 * enrolled pods goes on unbroken; the redirection annotation follows in the API server; while the
 * agent is down ADD fails closed and the pod stays refused; a restarted agent captures the
 * CNI's pods again from its state file; DEL releases.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { ApiServer } from '../../src/local/apiserver/server.js';
import { BpfCapture } from '../../src/agent/capture/redirect.js';
import { silentLogger } from '../../src/shared/log.js';
import { listenInNetns, socketInNetns } from '../../native/netns.js';
import { bpfSkipReason, closeServer, createFixture, dialFrom, outcome, serveFd, type Fixture, type Pod } from '../bpf/fixture.js';
import { metricSum, waitFor } from '../helpers/local-mesh.js';
import { execCniPlugin, type CniRun } from '../helpers/cni-exec.js';
import { spawnJsonLogged, type JsonLogProcess } from '../helpers/json-process.js';
import { namespace as nsManifest, pod as podManifest } from '../unit/translate/helpers.js';

const DIST = fileURLToPath(new URL('../../', import.meta.url));
const REPO = join(DIST, '..');
const AGENT_MAIN = join(DIST, 'src/agent/main.js');
const CONTROLLER_MAIN = join(DIST, 'src/controller/main.js');
const CNI_MAIN = join(DIST, 'src/cni/main.js');
const NODE = 'node-1';
const NODE_TOKEN = `node-token-${randomBytes(12).toString('hex')}`;
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
  manifests: string;
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

/** The manifests the controller reads: namespaces (plain with `plainLabels`) and the pods it knows. */
async function writeManifests(h: Harness, o: { plainLabels?: Record<string, string>; appLabels?: Record<string, string>; withClient: boolean }): Promise<void> {
  const [client, server, legacy, app, orphan] = h.fx.pods as [Pod, Pod, Pod, Pod, Pod];
  const ips = (p: Pod): string[] => [p.ip, p.ip6];
  const objects = [
    nsManifest('demo', { [LABEL]: 'ambient' }),
    nsManifest('plain', o.plainLabels ?? {}),
    podManifest('server', { ip: ips(server), labels: { app: 'server' } }),
    podManifest('legacy', { ip: ips(legacy), labels: { app: 'legacy' } }),
    podManifest('orphan', { ip: ips(orphan), labels: { app: 'orphan' } }),
    podManifest('app', { ns: 'plain', ip: ips(app), labels: { app: 'app', ...(o.appLabels ?? {}) } }),
    ...(o.withClient ? [podManifest('client', { ip: ips(client), labels: { app: 'client' } })] : []),
  ];
  // Written beside and renamed in: the controller never reads half a file.
  const tmp = join(h.dir, 'cluster.yaml.tmp');
  await writeFile(tmp, objects.map((x) => JSON.stringify(x)).join('\n---\n'));
  await rename(tmp, join(h.manifests, 'cluster.yaml'));
}

async function annotationOf(h: Harness, namespace: string, name: string): Promise<string | undefined> {
  const pod = await h.api.requestOk<{ metadata: { annotations?: Record<string, string> } }>({ method: 'GET', path: `/api/v1/namespaces/${namespace}/pods/${name}` });
  return pod.metadata.annotations?.[ANNOTATION];
}

async function waitAnnotation(h: Harness, namespace: string, name: string, want: string | undefined): Promise<void> {
  await waitFor(`${namespace}/${name} ${ANNOTATION}=${want ?? '(none)'}`, async () => ((await annotationOf(h, namespace, name)) === want ? true : undefined), 30_000, 100);
}

/** Creates the API objects: nodes, namespaces, RBAC from daemonset/core, and one Pod per fixture pod. */
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
  for (const file of ['rbac-agent.yaml', 'rbac-cni.yaml']) {
    for (const doc of parseAllDocuments(readFileSync(join(REPO, 'daemonset/core', file), 'utf8'))) {
      const obj = doc.toJS() as { kind: string; metadata: Record<string, unknown> } | null;
      if (!obj) continue;
      const path = collections[obj.kind];
      assert.ok(path, `${file}: ${obj.kind} has a collection`);
      if (path.includes('/namespaces/')) obj.metadata['namespace'] = 'istio-system';
      await post(path, obj);
    }
  }
  const names = ['client', 'server', 'legacy', 'app', 'orphan'];
  for (const name of names) {
    const ns = name === 'app' ? 'plain' : 'demo';
    const created = await post(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns, labels: { app: name } },
      spec: { nodeName: NODE, containers: [{ name: 'app', image: 'app' }] },
    });
    h.uids.set(`${ns}/${name}`, created.metadata.uid);
  }
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

test('agent on a node: CNI hand-off, host scan, redirection annotation, live labels, restart and fail-closed', { skip, timeout: 300_000 }, async (t) => {
  const fx = createFixture('k', 5);
  fx.enterCgroup();
  const [client, server, legacy, app, orphan] = fx.pods as [Pod, Pod, Pod, Pod, Pod];
  const dir = await mkdtemp(join(tmpdir(), 'ambit-agent-node-'));
  const servers: net.Server[] = [];
  const sleepers: ChildProcess[] = [];
  let api: ApiServer | undefined;
  let controller: Proc | undefined;
  let agent: Proc | undefined;
  const pinDir = `/sys/fs/bpf/${fx.prefix}`;
  t.after(async () => {
    const logDir = process.env['AMBIT_TEST_LOG_DIR'];
    if (logDir) {
      for (const { name, proc } of spawned) await writeFile(join(logDir, `${name}.log`), proc.lines.map((l) => JSON.stringify(l)).join('\n'));
    }
    await stopProc(agent);
    await stopProc(controller);
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
  const manifests = join(dir, 'manifests');
  await mkdir(manifests);
  const h: Harness = {
    fx,
    dir,
    api,
    manifests,
    socketPath: join(dir, 'run', 'cni.sock'),
    agentEnv: {},
    pluginConf: {},
    uids: new Map(),
  };
  await seedApi(h);
  await writeManifests(h, { withClient: false });
  const agentToken = api.issueServiceAccountToken({ namespace: 'istio-system', serviceAccount: 'ambit-agent' }).token;
  const cniToken = api.issueServiceAccountToken({ namespace: 'istio-system', serviceAccount: 'ambit-cni' }).token;
  await writeFile(join(dir, 'agent.kubeconfig'), api.serviceAccountKubeconfig(agentToken, 'istio-system', 'ambit-agent'), { mode: 0o600 });
  await writeFile(join(dir, 'cni.kubeconfig'), api.serviceAccountKubeconfig(cniToken, 'istio-system', 'ambit-cni'), { mode: 0o600 });
  await writeFile(join(dir, 'node-tokens'), `${NODE} ${NODE_TOKEN}\n`);
  await writeFile(join(dir, 'node-token'), NODE_TOKEN);
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

  controller = startProc(CONTROLLER_MAIN, {
    AMBIT_CONTROLLER_LISTEN: '127.0.0.1:0',
    AMBIT_ADMIN_LISTEN: '127.0.0.1:0',
    AMBIT_STATE_DIR: join(dir, 'controller'),
    // The file, not its directory: Node's recursive directory watch on Linux misses a file renamed
    // over one it already saw (Node 24), while a file is watched through its directory by name.
    AMBIT_MANIFESTS: join(manifests, 'cluster.yaml'),
    AMBIT_NODE_TOKENS_FILE: join(dir, 'node-tokens'),
    AMBIT_LOG_LEVEL: 'info',
  });
  const ctlReady = await waitFor('controller ready', async () => {
    const fatal = fatalOf(controller!);
    if (fatal) assert.fail(`controller failed: ${fatal}`);
    return controller!.lines.find((l) => l['msg'] === 'controller ready');
  });
  h.agentEnv = {
    AMBIT_NODE_NAME: NODE,
    AMBIT_CONTROLLER_ADDR: String(ctlReady['grpc']),
    AMBIT_CA_ROOT_FILE: join(dir, 'controller', 'root-cert.pem'),
    AMBIT_TOKEN_FILE: join(dir, 'node-token'),
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

  await t.test('ADD of an ambient pod the controller does not know yet holds its traffic (pending) until it is enrolled', async () => {
    const r = await runPlugin(h, 'ADD', 'demo', 'client', client);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await waitAnnotation(h, 'demo', 'client', 'pending');
    assert.equal(await outcome(dialFrom(client.netnsPath, server.ip, APP_PORT)), 'EPERM', 'no uncaptured connection out');
    assert.equal(await outcome(dialFrom(app.netnsPath, client.ip, APP_PORT)), 'ECONNREFUSED', 'none in either');
    await writeManifests(h, { withClient: true });
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
    const steps: Array<[string, { plainLabels?: Record<string, string>; appLabels?: Record<string, string> }, string | undefined]> = [
      ['namespace labelled ambient', { plainLabels: { [LABEL]: 'ambient' } }, 'enabled'],
      ['pod opted out with none', { plainLabels: { [LABEL]: 'ambient' }, appLabels: { [LABEL]: 'none' } }, undefined],
      ['pod label removed', { plainLabels: { [LABEL]: 'ambient' } }, 'enabled'],
      ['namespace label removed', {}, undefined],
    ];
    for (const [what, labels, want] of steps) {
      await writeManifests(h, { withClient: true, ...labels });
      await waitAnnotation(h, 'plain', 'app', want);
      const before = await sourceOpened('app');
      assert.equal(await dialFrom(app.netnsPath, legacy.ip, APP_PORT), `hello from ${legacy.name}`, what);
      assert.equal(await sourceOpened('app'), before + (want === 'enabled' ? 1 : 0), `${what}: app ${want ? 'captured' : 'direct'}`);
    }
    const sentBefore = stream.sent();
    await waitFor('the stream still flowing', async () => (stream.sent() > sentBefore + (1 << 20) ? true : undefined));
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
