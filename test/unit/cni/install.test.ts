import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAmbitError } from '../../../src/shared/errors.js';
import {
  PLUGIN_MAIN,
  chainPlugin,
  choosePrimaryConf,
  importClosure,
  importSpecifiers,
  isChained,
  kubeconfigText,
  launcherText,
  unchainPlugin,
  type PluginEntry,
} from '../../../src/cni/install.js';
import { loadInstallConfig } from '../../../src/cni/install-config.js';
import { parseKubeconfig } from '../../../src/cni/kube.js';
import { parseCniPod, parseCniPodRef } from '../../../src/shared/cni-handoff.js';

const REPO = fileURLToPath(new URL('../../../../', import.meta.url));

const ENTRY: PluginEntry = {
  type: 'ambit-cni',
  agent_socket: '/var/run/ambit/cni.sock',
  agent_timeout: '5s',
  kubeconfig: '/var/lib/ambit/cni/kubeconfig',
  kube_timeout: '5s',
  exclude_namespaces: ['kube-system'],
  agent_pod_namespace: 'istio-system',
  agent_pod_prefix: 'ambit-agent-',
  log_level: 'info',
};

const CONFLIST = { cniVersion: '1.0.0', name: 'kindnet', plugins: [{ type: 'ptp', ipam: { type: 'host-local' } }, { type: 'portmap', capabilities: { portMappings: true } }] };

test('the primary config is the first .conflist/.conf/.json by name, as libcni picks it', () => {
  assert.equal(choosePrimaryConf(['99-z.conflist', '10-calico.conflist', '05-cilium.conf', 'README', '.hidden.conflist']), '05-cilium.conf');
  assert.equal(choosePrimaryConf(['notes.txt']), undefined);
});

test('chaining appends the plugin last, is idempotent, updates a changed entry, and unchains cleanly', () => {
  const text = JSON.stringify(CONFLIST);
  const once = chainPlugin(text, '/etc/cni/net.d/10-kindnet.conflist', ENTRY);
  assert.equal(once.changed, true);
  assert.equal(once.file, '/etc/cni/net.d/10-kindnet.conflist');
  const doc = JSON.parse(once.text);
  assert.deepEqual(doc.plugins.map((p: { type: string }) => p.type), ['ptp', 'portmap', 'ambit-cni']);
  assert.deepEqual(doc.plugins[0], CONFLIST.plugins[0], 'the primary plugins are untouched');
  assert.equal(isChained(once.text, 'f'), true);
  assert.equal(chainPlugin(once.text, 'f', ENTRY).changed, false, 'a second run changes nothing');
  const updated = chainPlugin(once.text, 'f', { ...ENTRY, agent_timeout: '9s' });
  assert.equal(updated.changed, true);
  assert.deepEqual(JSON.parse(updated.text).plugins.filter((p: { type: string }) => p.type === 'ambit-cni').map((p: PluginEntry) => p.agent_timeout), ['9s']);
  const off = unchainPlugin(updated.text, 'f');
  assert.equal(off.changed, true);
  assert.deepEqual(JSON.parse(off.text), CONFLIST);
  assert.equal(unchainPlugin(off.text, 'f').changed, false);
});

test('a single-plugin .conf becomes a .conflist holding that plugin first', () => {
  const conf = { cniVersion: '0.3.1', name: 'bridge', type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '10.1.0.0/16' } };
  const out = chainPlugin(JSON.stringify(conf), '/etc/cni/net.d/10-bridge.conf', ENTRY);
  assert.equal(out.file, '/etc/cni/net.d/10-bridge.conflist');
  assert.equal(out.replaces, '/etc/cni/net.d/10-bridge.conf');
  assert.deepEqual(JSON.parse(out.text), { cniVersion: '0.3.1', name: 'bridge', plugins: [{ type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '10.1.0.0/16' } }, ENTRY] });
  assert.throws(() => chainPlugin('{"name": "x"}', 'f.conf', ENTRY), (e) => isAmbitError(e, 'AMBIT_ERR_CNI_INSTALL'));
  assert.throws(() => chainPlugin('nope', 'f.conf', ENTRY), (e) => isAmbitError(e, 'AMBIT_ERR_CNI_INSTALL') && /f\.conf is not JSON/.test(e.message));
});

test('the launcher names the Node binary on its #! line and imports the plugin by file URL', () => {
  const text = launcherText('/var/lib/ambit/cni/node-0123456789abcdef/node', '/var/lib/ambit/cni/app-fedcba9876543210/dist/src/cni/main.js');
  const lines = text.split('\n');
  assert.equal(lines[0], '#!/var/lib/ambit/cni/node-0123456789abcdef/node');
  assert.ok(lines[0]!.length < 128, 'the kernel limits the #! line');
  assert.match(text, /import\("file:\/\/\/var\/lib\/ambit\/cni\/app-fedcba9876543210\/dist\/src\/cni\/main\.js"\)/);
  assert.match(text, /CNI_COMMAND === 'DEL'\) process\.exit\(0\)/, 'DEL succeeds even when the payload is gone');
});

test('the plugin\'s kubeconfig is read back by the plugin\'s own parser', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cni-kc-'));
  try {
    const text = kubeconfigText('https://10.96.0.1:443', Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'), join(dir, 'token'));
    const target = await parseKubeconfig(text, join(dir, 'kubeconfig'));
    assert.equal(target.server.href, 'https://10.96.0.1/');
    assert.equal(target.tokenFile, join(dir, 'token'));
    assert.match(target.ca!.toString(), /BEGIN CERTIFICATE/);
    // kubectl-style YAML with relative file references resolves against the kubeconfig's folder.
    await writeFile(join(dir, 'ca.crt'), 'CA');
    const yamlTarget = await parseKubeconfig(
      'apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {server: "https://127.0.0.1:6443", certificate-authority: ca.crt}\nusers:\n- name: u\n  user: {token: abc}\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n',
      join(dir, 'kubeconfig.yaml'),
    );
    assert.equal(yamlTarget.token, 'abc');
    assert.equal(yamlTarget.ca!.toString(), 'CA');
    await assert.rejects(parseKubeconfig(JSON.stringify({ clusters: [{ name: 'k', cluster: { server: 'http://x' } }], contexts: [{ name: 'c', context: { cluster: 'k' } }] }), 'k.json'), /must use https/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the plugin\'s payload is its own modules only: node: builtins and siblings, no npm packages', () => {
  assert.deepEqual(importSpecifiers("import { a } from './a.js';\nimport b from \"node:fs\";\nconst c = await import('yaml');\nimport './side.js';"), ['./a.js', 'node:fs', 'yaml', './side.js']);
  const files = importClosure(REPO, PLUGIN_MAIN);
  assert.ok(files.includes(PLUGIN_MAIN));
  assert.ok(files.includes('dist/src/cni/plugin.js'));
  assert.ok(files.includes('dist/src/shared/errors.js'));
  assert.ok(files.every((f) => f.startsWith('dist/src/cni/') || f.startsWith('dist/src/shared/')), files.join(', '));
  assert.ok(!files.some((f) => f.includes('install')), 'the installer is not part of the plugin');
  assert.ok(files.length <= 12, `${files.length} files`);
  const fake: Record<string, string> = { '/app/m.js': "import x from 'pino';" };
  assert.throws(() => importClosure('/app', 'm.js', (f) => fake[f]!), (e) => isAmbitError(e, 'AMBIT_ERR_CNI_INSTALL') && /imports "pino"/.test(e.message));
});

test('installer config: defaults, downward-API variables required, every problem listed', () => {
  const cfg = loadInstallConfig({ POD_NAME: 'ambit-agent-abc', POD_NAMESPACE: 'istio-system', POD_UID: 'u-1' }, '/usr/bin/node');
  assert.equal(cfg.binDir, '/host/opt/cni/bin');
  assert.equal(cfg.agentSocket, '/var/run/ambit/cni.sock');
  assert.deepEqual(cfg.excludeNamespaces, ['kube-system', 'istio-system']);
  assert.equal(cfg.tokenTtlSec, 86_400);
  assert.equal(cfg.nodeBinary, '/usr/bin/node');
  try {
    loadInstallConfig({ AMBIT_CNI_BIN_DIR: 'opt/cni', AMBIT_CNI_TOKEN_TTL: '1m', AMBIT_CNI_EXCLUDE_NAMESPACES: 'Kube_System', AMBIT_CNI_KUBE_SERVER: 'http://x' });
    assert.fail('expected an error');
  } catch (e) {
    assert.ok(isAmbitError(e, 'AMBIT_ERR_CONFIG_INVALID'));
    for (const name of ['AMBIT_CNI_BIN_DIR', 'AMBIT_CNI_TOKEN_TTL', 'AMBIT_CNI_EXCLUDE_NAMESPACES', 'AMBIT_CNI_KUBE_SERVER', 'POD_NAME', 'POD_NAMESPACE', 'POD_UID']) assert.match(e.message, new RegExp(name));
  }
});

test('hand-off requests are validated field by field', () => {
  const good = { podName: 'web-0', podNamespace: 'demo', podUid: '6b9d0c8e-1f2a-4b3c-8d4e-5f6a7b8c9d0e', containerId: 'c0ffee', netns: '/var/run/netns/cni-1', ifname: 'eth0', ips: [{ address: '10.244.1.7/24', gateway: '10.244.1.1', interface: 0 }] };
  const ok = parseCniPod(good);
  assert.ok('pod' in ok);
  assert.deepEqual(ok.pod, good);
  const bad = parseCniPod({ ...good, podName: 'Web', podNamespace: 'a.b', podUid: '', containerId: '../x', netns: 'rel', ifname: 'eth 0', ips: [{ address: '10.0.0.1' }] });
  assert.ok('issues' in bad);
  assert.deepEqual(bad.issues.map((i) => i.path).sort(), ['containerId', 'ifname', 'ips[0].address', 'netns', 'podName', 'podNamespace', 'podUid']);
  assert.ok('issues' in parseCniPod('text'));
  const del = parseCniPodRef({ podName: 'web-0', podNamespace: 'demo', podUid: '', containerId: 'c0ffee' });
  assert.ok('pod' in del);
  assert.equal(del.pod.netns, undefined);
  assert.ok('issues' in parseCniPodRef({ podName: 'web-0', podNamespace: 'demo', podUid: '', containerId: 'c0ffee', netns: 'rel' }));
});
