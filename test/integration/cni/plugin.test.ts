/**
 * The CNI plugin as a container runtime drives it: the installer (run here against temporary CNI
 * folders) copies Node and the plugin, writes the launcher and the plugin's kubeconfig with a
 * token from TokenRequest and chains the plugin into a primary conflist; the test then executes
 * `<bin dir>/ambit-cni` with CNI_* variables and the chained configuration plus a prevResult on
 * stdin, for a real network namespace (made here, with a veth and an address). The node agent's
 * side is the real CniServer with the test's handler; the Kubernetes API is a local HTTPS stub
 * serving fixture pods and namespaces (the only mock).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { statfsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CniInstaller } from '../../../src/cni/installer.js';
import type { InstallConfig } from '../../../src/cni/install-config.js';
import { CniServer, type CniHandler } from '../../../src/agent/cni/server.js';
import type { CniPod, CniPodRef } from '../../../src/shared/cni-handoff.js';
import { createLogger } from '../../../src/shared/log.js';
import { LogSink } from '../../helpers/loopback-net.js';
import { isRoot } from '../../helpers/local-mesh.js';
import { startKubeApiStub, type KubeApiStub } from '../../helpers/kube-api-stub.js';
import { execCniPlugin, type CniRun } from '../../helpers/cni-exec.js';

const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
const skip = isRoot() ? false : 'requires root (creates a network namespace and a veth pair)';
const NSFS_MAGIC = 0x6e736673;
const NET = Number(process.env['AMBIT_LOCAL_NET'] ?? '1');
const NETNS = `ambit-cnit${NET}-${process.pid}`;
const NETNS_PATH = `/var/run/netns/${NETNS}`;
const HOST_VETH = `acni${NET}x${process.pid % 100000}`;
const POD_ADDR = `10.${250 - NET}.6.7`;

const AGENT_TOKEN = 'agent-sa-token';
const PRIMARY = { cniVersion: '1.0.0', name: 'testnet', plugins: [{ type: 'ptp', ipMasq: true, ipam: { type: 'host-local', subnet: `10.${250 - NET}.6.0/24` } }, { type: 'portmap', capabilities: { portMappings: true } }] };

interface Env {
  dir: string;
  binDir: string;
  confDir: string;
  installDir: string;
  socketPath: string;
  stub: KubeApiStub;
  installer: CniInstaller;
  cfg: InstallConfig;
  server: CniServer | undefined;
  handler: TestHandler;
  prevResult: Record<string, unknown>;
  sink: LogSink;
}

/** The agent's side, as the test wants it to behave per pod name. */
class TestHandler implements CniHandler {
  readonly calls: Array<[string, CniPodRef]> = [];
  hang: Promise<void> | undefined;
  async add(pod: CniPod): Promise<void> {
    this.calls.push(['add', pod]);
    // What a real agent does first: the path must be a network namespace it can enter.
    if (statfsSync(pod.netns).type !== NSFS_MAGIC) throw new Error(`${pod.netns} is not a network namespace`);
    if (pod.podName === 'refused') throw new Error('sk_lookup attach failed: EPERM');
    if (pod.podName === 'slow') await this.hang;
  }
  async check(pod: CniPod): Promise<void> {
    this.calls.push(['check', pod]);
  }
  async del(pod: CniPodRef): Promise<void> {
    this.calls.push(['del', pod]);
  }
}

let env: Env;

const ns = (name: string, labels: Record<string, string> = {}): Record<string, unknown> => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, uid: `ns-${name}`, labels } });
const pod = (namespace: string, name: string, labels: Record<string, string> = {}, spec: Record<string, unknown> = {}): Record<string, unknown> => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace, uid: `uid-${name}`, labels },
  spec: { containers: [{ name: 'app', image: 'app' }], ...spec },
});

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8' });
}

function newServer(): CniServer {
  return new CniServer({ socketPath: env.socketPath, handler: env.handler, log: createLogger({ level: 'warn', destination: env.sink as unknown as import('pino').DestinationStream }) });
}

before(async () => {
  if (skip) return;
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cni-it-'));
  const binDir = join(dir, 'opt-cni-bin');
  const confDir = join(dir, 'etc-cni-net.d');
  const installDir = join(dir, 'var-lib-ambit-cni');
  const socketPath = join(dir, 'run-ambit', 'cni.sock');
  await mkdir(binDir);
  await mkdir(confDir);
  await writeFile(join(confDir, '10-testnet.conflist'), JSON.stringify(PRIMARY, null, 2));
  await writeFile(join(confDir, '99-other.conflist'), JSON.stringify({ ...PRIMARY, name: 'other' }));

  // A pod sandbox's network namespace as a runtime leaves it after the primary plugin: eth0 with an address.
  sh('ip', ['netns', 'add', NETNS]);
  sh('ip', ['link', 'add', HOST_VETH, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NETNS]);
  sh('ip', ['-n', NETNS, 'addr', 'add', `${POD_ADDR}/24`, 'dev', 'eth0']);
  sh('ip', ['-n', NETNS, 'link', 'set', 'eth0', 'up']);
  const link = (JSON.parse(sh('ip', ['-n', NETNS, '-j', 'addr', 'show', 'eth0'])) as Array<{ address: string }>)[0]!;
  const prevResult = {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'eth0', mac: link.address, sandbox: NETNS_PATH }],
    ips: [{ address: `${POD_ADDR}/24`, gateway: `10.${250 - NET}.6.1`, interface: 0 }],
    routes: [{ dst: '0.0.0.0/0' }],
    dns: {},
  };

  const stub = await startKubeApiStub(
    { [AGENT_TOKEN]: [/^POST \/api\/v1\/namespaces\/istio-system\/serviceaccounts\/ambit-cni\/token$/, /^GET \/apis\/apps\/v1\/namespaces\/istio-system\/daemonsets\/ambit-agent$/] },
    { 'ambit-cni': [/^GET \/api\/v1\/namespaces\/[^/]+$/, /^GET \/api\/v1\/namespaces\/[^/]+\/pods\/[^/]+$/] },
  );
  for (const o of [ns('demo', { 'istio.io/dataplane-mode': 'ambient' }), ns('plain')]) stub.objects.set(`/api/v1/namespaces/${(o['metadata'] as { name: string }).name}`, o);
  for (const p of [
    pod('demo', 'web'),
    pod('demo', 'optout', { 'istio.io/dataplane-mode': 'none' }),
    pod('demo', 'refused'),
    pod('demo', 'slow'),
    pod('plain', 'other'),
    pod('plain', 'enrolled-pod', { 'istio.io/dataplane-mode': 'ambient' }),
  ]) {
    const m = p['metadata'] as { name: string; namespace: string };
    stub.objects.set(`/api/v1/namespaces/${m.namespace}/pods/${m.name}`, p);
  }
  stub.objects.set('/apis/apps/v1/namespaces/istio-system/daemonsets/ambit-agent', { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'ambit-agent', namespace: 'istio-system' } });
  const saDir = join(dir, 'sa');
  await mkdir(saDir);
  await writeFile(join(saDir, 'token'), AGENT_TOKEN);

  const cfg: InstallConfig = {
    binDir,
    confDir,
    installDir,
    agentSocket: socketPath,
    excludeNamespaces: ['kube-system'],
    agentTimeout: '1s',
    kubeTimeout: '2s',
    pluginLogLevel: 'debug',
    pluginLogFile: join(dir, 'plugin.log'),
    logLevel: 'info',
    serviceAccount: 'ambit-cni',
    tokenTtlSec: 3600,
    daemonSet: 'ambit-agent',
    readyFile: join(dir, 'ready'),
    pod: { name: 'ambit-agent-abcde', namespace: 'istio-system', uid: 'uid-agent-pod' },
    nodeBinary: process.execPath,
    appRoot: REPO,
  };
  const sink = new LogSink();
  const installer = new CniInstaller(cfg, {
    kube: { server: new URL(stub.url), ca: Buffer.from(stub.caPem), insecureSkipTlsVerify: false, tokenFile: join(saDir, 'token') },
    log: createLogger({ level: 'info', destination: sink as unknown as import('pino').DestinationStream }),
  });
  env = { dir, binDir, confDir, installDir, socketPath, stub, installer, cfg, server: undefined, handler: new TestHandler(), prevResult, sink };
  await installer.start();
  env.server = newServer();
  await env.server.start();
});

after(async () => {
  if (skip || !env) return;
  env.server?.destroy();
  await env.installer.close().catch(() => undefined);
  await env.stub.close();
  try {
    execFileSync('ip', ['netns', 'del', NETNS], { stdio: 'ignore' });
  } catch {
    // Already gone.
  }
  await rm(env.dir, { recursive: true, force: true });
});

/**
 * Runs the installed plugin the way libcni does: the plugin's entry from the chained conflist
 * plus cniVersion, name and prevResult on stdin, the CNI_* variables in a minimal environment.
 */
async function runtime(command: string, namespace: string, name: string, opts: { prevResult?: Record<string, unknown> | null; netns?: string; version?: string } = {}): Promise<CniRun> {
  const conflist = JSON.parse(await readFile(join(env.confDir, '10-testnet.conflist'), 'utf8')) as { cniVersion: string; name: string; plugins: Array<Record<string, unknown>> };
  const entry = conflist.plugins.find((p) => p['type'] === 'ambit-cni');
  assert.ok(entry, 'the plugin is chained');
  const prev = opts.prevResult === null ? undefined : (opts.prevResult ?? env.prevResult);
  const config = { ...entry, cniVersion: opts.version ?? conflist.cniVersion, name: conflist.name, ...(prev ? { prevResult: prev } : {}) };
  return execCniPlugin(join(env.binDir, 'ambit-cni'), [], { command, namespace, name, netns: opts.netns ?? NETNS_PATH, podUid: `uid-${name}`, cniPath: env.binDir, config });
}

test('the installer puts Node and the plugin on the node, writes the launcher and a kubeconfig with the plugin\'s own token, and chains it last', { skip }, async () => {
  const launcher = join(env.binDir, 'ambit-cni');
  assert.equal((await stat(launcher)).mode & 0o777, 0o755);
  const firstLine = (await readFile(launcher, 'utf8')).split('\n')[0]!;
  const nodePath = firstLine.slice(2);
  assert.ok(nodePath.startsWith(join(env.installDir, 'node-')), firstLine);
  assert.equal((await stat(nodePath)).size, (await stat(process.execPath)).size, 'the pinned Node binary is copied');
  const installed = (await readdir(env.installDir)).sort();
  assert.deepEqual(installed.map((f) => f.replace(/-[0-9a-f]{16}$/, '-<hash>')), ['app-<hash>', 'kubeconfig', 'node-<hash>', 'token']);
  assert.equal((await stat(join(env.installDir, 'kubeconfig'))).mode & 0o777, 0o600);
  assert.equal((await stat(join(env.installDir, 'token'))).mode & 0o777, 0o600);
  const conflist = JSON.parse(await readFile(join(env.confDir, '10-testnet.conflist'), 'utf8')) as typeof PRIMARY;
  assert.deepEqual(conflist.plugins.slice(0, 2), PRIMARY.plugins, 'the primary plugins are untouched');
  assert.equal((conflist.plugins[2] as Record<string, unknown>)['type'], 'ambit-cni');
  assert.equal(JSON.parse(await readFile(join(env.confDir, '99-other.conflist'), 'utf8')).plugins.length, 2, 'only the conflist the runtime uses is changed');
  // The plugin's token: a TokenRequest for ambit-cni bound to the installer's pod, not the agent's token.
  const tokenRequest = env.stub.requests.find((r) => r.method === 'POST');
  assert.equal(tokenRequest?.token, AGENT_TOKEN);
  assert.deepEqual((tokenRequest?.body as { spec: unknown }).spec, { expirationSeconds: 3600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'ambit-agent-abcde', uid: 'uid-agent-pod' } });
  const pluginToken = (await readFile(join(env.installDir, 'token'), 'utf8')).trim();
  assert.match(pluginToken, /^issued-\d+-ambit-cni$/);
  assert.ok(await env.installer.chained());
  await stat(env.cfg.readyFile);
});

test('VERSION through the installed launcher', { skip }, async () => {
  const r = await runtime('VERSION', 'demo', 'web');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.json, { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});

test('ADD of a pod in an ambient namespace waits for the agent, hands it the netns, and passes prevResult through unchanged', { skip }, async () => {
  env.handler.calls.length = 0;
  const before = env.stub.requests.length;
  const r = await runtime('ADD', 'demo', 'web');
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(r.json, env.prevResult);
  assert.equal(r.stdout, JSON.stringify(env.prevResult) + '\n', 'stdout holds the result and nothing else');
  assert.equal(env.handler.calls.length, 1);
  const [op, sent] = env.handler.calls[0]! as [string, CniPod];
  assert.equal(op, 'add');
  assert.deepEqual(sent, { podName: 'web', podNamespace: 'demo', podUid: 'uid-web', containerId: 'sandbox-web', netns: NETNS_PATH, ifname: 'eth0', ips: [{ address: `${POD_ADDR}/24`, gateway: `10.${250 - NET}.6.1`, interface: 0 }] });
  assert.equal(statSync(sent.netns).ino, statSync(NETNS_PATH).ino);
  // The lookups used the plugin's own token.
  const lookups = env.stub.requests.slice(before).map((q) => `${q.method} ${q.path} ${q.token?.replace(/\d+/, 'N')}`).sort();
  assert.deepEqual(lookups, ['GET /api/v1/namespaces/demo issued-N-ambit-cni', 'GET /api/v1/namespaces/demo/pods/web issued-N-ambit-cni']);
  const logged = (await readFile(env.cfg.pluginLogFile!, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(logged.some((l) => l['msg'] === 'pod captured by the node agent' && l['pod'] === 'demo/web'), 'logged to the plugin\'s log file');
});

test('ADD passes through pods not to capture without calling the agent: not enrolled, opted out, excluded namespace', { skip }, async () => {
  env.handler.calls.length = 0;
  for (const [namespace, name] of [['plain', 'other'], ['demo', 'optout'], ['kube-system', 'coredns-0']] as const) {
    const r = await runtime('ADD', namespace, name);
    assert.equal(r.code, 0, `${namespace}/${name}: ${r.stdout}`);
    assert.deepEqual(r.json, env.prevResult);
  }
  assert.equal(env.handler.calls.length, 0);
  // A pod labelled ambient in a namespace that is not is captured.
  const r = await runtime('ADD', 'plain', 'enrolled-pod');
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(env.handler.calls.map(([o, p]) => `${o} ${p.podNamespace}/${p.podName}`), ['add plain/enrolled-pod']);
});

test('ADD fails with the agent\'s reason when it cannot capture (code 100), and with code 11 when it does not answer in time', { skip }, async () => {
  const refused = await runtime('ADD', 'demo', 'refused');
  assert.equal(refused.code, 1);
  assert.equal(refused.json?.['code'], 100);
  assert.match(String(refused.json?.['msg']), /could not capture pod demo\/refused: sk_lookup attach failed: EPERM/);
  let release!: () => void;
  env.handler.hang = new Promise<void>((r) => (release = r));
  const slow = await runtime('ADD', 'demo', 'slow');
  release();
  assert.equal(slow.code, 1);
  assert.equal(slow.json?.['code'], 11);
  assert.match(String(slow.json?.['msg']), /did not answer.*no answer within 1000 ms/);
});

test('CHECK confirms with the agent; DEL tells it; an unsupported CNI version and a missing netns are refused with spec codes', { skip }, async () => {
  env.handler.calls.length = 0;
  const check = await runtime('CHECK', 'demo', 'web');
  assert.deepEqual([check.code, check.stdout], [0, ''], check.stdout);
  const del = await runtime('DEL', 'demo', 'web');
  assert.deepEqual([del.code, del.stdout], [0, '']);
  assert.deepEqual(env.handler.calls.map(([o, p]) => `${o} ${p.containerId} ${p.netns}`), [`check sandbox-web ${NETNS_PATH}`, `del sandbox-web ${NETNS_PATH}`]);
  const noPrev = await runtime('CHECK', 'demo', 'web', { prevResult: null });
  assert.equal(noPrev.json?.['code'], 7);
  const version = await runtime('ADD', 'demo', 'web', { version: '2.0.0' });
  assert.deepEqual([version.code, version.json?.['code'], version.json?.['cniVersion']], [1, 1, '2.0.0']);
  const gone = await runtime('ADD', 'demo', 'web', { netns: '/var/run/netns/ambit-cnit-does-not-exist' });
  assert.equal(gone.json?.['code'], 3);
});

test('while the agent is down: ADD of an enrolled pod fails closed (code 11), other pods still start, DEL still succeeds', { skip }, async () => {
  await env.server!.close(1000);
  env.handler.calls.length = 0;
  const enrolled = await runtime('ADD', 'demo', 'web');
  assert.equal(enrolled.code, 1);
  assert.equal(enrolled.json?.['code'], 11);
  assert.match(String(enrolled.json?.['msg']), /cni\.sock did not answer, so the pod cannot be captured and must not start: the socket does not exist/);
  const other = await runtime('ADD', 'plain', 'other');
  assert.equal(other.code, 0);
  assert.deepEqual(other.json, env.prevResult);
  const del = await runtime('DEL', 'demo', 'web');
  assert.deepEqual([del.code, del.stdout], [0, '']);
  assert.equal(env.handler.calls.length, 0);
  env.server = newServer();
  await env.server.start();
  assert.equal((await runtime('ADD', 'demo', 'web')).code, 0, 'a restarted agent captures again');
});

test('while the API server is away, ADD cannot tell whether to capture and fails (code 11); excluded namespaces still pass', { skip }, async () => {
  env.stub.unavailable = true;
  try {
    const r = await runtime('ADD', 'plain', 'other');
    assert.equal(r.json?.['code'], 11);
    assert.match(String(r.json?.['msg']), /answered 503/);
    assert.equal((await runtime('ADD', 'kube-system', 'coredns-0')).code, 0);
  } finally {
    env.stub.unavailable = false;
  }
});

test('a primary CNI that rewrites its conflist gets the plugin chained again', { skip }, async () => {
  await writeFile(join(env.confDir, '10-testnet.conflist'), JSON.stringify(PRIMARY, null, 2));
  const deadline = Date.now() + 20_000;
  while (!(await env.installer.chained())) {
    assert.ok(Date.now() < deadline, 'the installer re-chains after the config folder changes');
    await new Promise((r) => setTimeout(r, 50));
  }
});

test('installer exit: a restart leaves the plugin in place (fail closed); deleting the DaemonSet uninstalls everything', { skip }, async () => {
  const kept = await env.installer.close();
  assert.deepEqual(kept, { uninstalled: false });
  await stat(join(env.binDir, 'ambit-cni'));
  assert.ok(await env.installer.chained(), 'still chained after a restart-like exit');
  await assert.rejects(stat(env.cfg.readyFile), /ENOENT/, 'not ready any more');

  // The next installer (same node, a new pod) reuses the payload; then the DaemonSet goes away.
  const sink = new LogSink();
  const next = new CniInstaller(env.cfg, {
    kube: { server: new URL(env.stub.url), ca: Buffer.from(env.stub.caPem), insecureSkipTlsVerify: false, tokenFile: join(env.dir, 'sa', 'token') },
    log: createLogger({ level: 'info', destination: sink as unknown as import('pino').DestinationStream }),
  });
  env.installer = next;
  await next.start();
  env.stub.objects.delete('/apis/apps/v1/namespaces/istio-system/daemonsets/ambit-agent');
  assert.deepEqual(await next.close(), { uninstalled: true });
  await assert.rejects(stat(join(env.binDir, 'ambit-cni')), /ENOENT/);
  assert.deepEqual(JSON.parse(await readFile(join(env.confDir, '10-testnet.conflist'), 'utf8')), PRIMARY, 'the conflist is as the primary CNI wrote it');
  assert.deepEqual(await readdir(env.installDir), []);
});
