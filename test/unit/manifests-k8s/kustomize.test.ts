/**
 * daemonset/ rendered by the real kubectl (`kubectl kustomize`, offline), every object checked:
 * built-in kinds against the Kubernetes schemas (client-node's generated models), CRDs against
 * the API server's rules and src/crds/, RBAC for least privilege, the workloads for what the
 * agent, the installer and the controller need, and each overlay for what it leaves out.
 *
 * The same files against local mode's API server with the real kubectl (CRDs Established,
 * server-side dry run of the install and each overlay, custom resources read back unchanged):
 * test/integration/apiserver/manifests.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { checkBuiltinObject } from '../../helpers/kube-schema.js';
import { checkCrd } from '../../../src/shared/crd.js';
import { formatIssue } from '../../../src/shared/validate.js';
import { ALL_CRDS, GATEWAY_API_CRDS, ISTIO_CRDS } from '../../../src/crds/index.js';
import { loadConfig as loadAgentConfig } from '../../../src/agent/config.js';
import { loadConfig as loadControllerConfig } from '../../../src/controller/config.js';
import { loadInstallConfig } from '../../../src/cni/install-config.js';

const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
const DAEMONSET = join(REPO, 'daemonset');

type Obj = Record<string, any>;

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
const skip = kubectl.status === 0 ? false : 'kubectl is not installed (needed to render daemonset/ with kustomize)';

const rendered = new Map<string, string>();

/** The objects `kubectl kustomize daemonset/<dir>` prints (rendered once per folder, a fresh copy each call). */
function render(dir: string): Obj[] {
  let text = rendered.get(dir);
  if (text === undefined) {
    text = execFileSync('kubectl', ['kustomize', join(DAEMONSET, dir)], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    rendered.set(dir, text);
  }
  return parseAllDocuments(text).map((d) => d.toJS() as Obj).filter((o) => o !== null);
}

const key = (o: Obj): string => `${o['kind']}/${o['metadata']?.['namespace'] ?? ''}/${o['metadata']?.['name']}`;
const find = (objs: Obj[], kind: string, name: string): Obj => {
  const o = objs.find((x) => x['kind'] === kind && x['metadata']['name'] === name);
  assert.ok(o, `${kind} ${name} is rendered`);
  return o;
};

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}

/** Whether `rules` let a subject do `verb` on `resource` in `group` (and on `name`, when given). */
function allows(rules: Rule[], verb: string, group: string, resource: string, name?: string): boolean {
  return rules.some(
    (r) =>
      (r.apiGroups ?? []).some((g) => g === group || g === '*') &&
      (r.resources ?? []).some((x) => x === resource || x === '*') &&
      r.verbs.some((v) => v === verb || v === '*') &&
      (r.resourceNames === undefined || (name !== undefined && r.resourceNames.includes(name))),
  );
}

/** Every (verb, group, resource) a rule list grants, as `verb group/resource[name]` strings. */
function grants(rules: Rule[]): string[] {
  const out: string[] = [];
  for (const r of rules) {
    for (const g of r.apiGroups ?? []) for (const res of r.resources ?? []) for (const v of r.verbs) out.push(`${v} ${g}/${res}${r.resourceNames ? `[${r.resourceNames.join(',')}]` : ''}`);
  }
  return out.sort();
}

/** The environment a container sees: ConfigMap envFrom first, then its own env (downward API filled in). */
function containerEnv(objs: Obj[], container: Obj, downward: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container['envFrom'] ?? []) {
    const cm = find(objs, 'ConfigMap', from['configMapRef']['name']);
    Object.assign(env, cm['data']);
  }
  for (const e of container['env'] ?? []) {
    if (e['value'] !== undefined) env[e['name']] = e['value'];
    else if (e['valueFrom']?.['fieldRef']) env[e['name']] = downward[e['valueFrom']['fieldRef']['fieldPath']] ?? '';
  }
  return env;
}

const DOWNWARD = { 'metadata.name': 'ambit-agent-x7k2p', 'metadata.namespace': 'istio-system', 'metadata.uid': '0f6c1c8e-3b1a-4a4e-9b8e-1d2f3a4b5c6d', 'spec.nodeName': 'node-1' };

/** Whether `path` (a file or folder inside a container) lies under one of its volume mounts. */
function mountFor(container: Obj, path: string): Obj | undefined {
  return (container['volumeMounts'] ?? []).find((m: Obj) => path === m['mountPath'] || path.startsWith(`${m['mountPath']}/`));
}

test('kubectl kustomize renders daemonset/ and every overlay; object sets differ only as each overlay says', { skip }, () => {
  const base = render('.');
  const keys = base.map(key);
  assert.equal(new Set(keys).size, keys.length, 'no object twice');
  const crds = base.filter((o) => o['kind'] === 'CustomResourceDefinition');
  assert.equal(crds.length, ALL_CRDS.length);
  const core = base.filter((o) => o['kind'] !== 'CustomResourceDefinition' && o['kind'] !== 'Namespace');
  for (const o of base) {
    assert.ok(o['apiVersion'] && o['kind'] && o['metadata']?.['name'], `${key(o)} has apiVersion, kind and name`);
    if (CLUSTER_SCOPED.has(o['kind'])) assert.equal(o['metadata']['namespace'], undefined, `${key(o)} is cluster-scoped`);
    else assert.equal(o['metadata']['namespace'], 'istio-system', `${key(o)} lives in istio-system`);
    if (o['kind'] !== 'CustomResourceDefinition') assert.equal(o['metadata']['labels']?.['app.kubernetes.io/part-of'], 'ambit', `${key(o)} is labelled part-of=ambit`);
  }
  const only = (objs: Obj[]): string[] => objs.map(key).sort();
  const coreKeys = only(core);
  const ns = only(base.filter((o) => o['kind'] === 'Namespace'));
  const crdKeys = (list: typeof ALL_CRDS): string[] => list.map((c) => `CustomResourceDefinition//${c.metadata.name}`);
  assert.deepEqual(only(render('overlays/crds-installed')), [...coreKeys, ...ns].sort());
  assert.deepEqual(only(render('overlays/istio-installed')), coreKeys);
  assert.deepEqual(only(render('overlays/istio-crds-installed')), [...coreKeys, ...ns, ...crdKeys(GATEWAY_API_CRDS)].sort());
  assert.deepEqual(only(render('overlays/gateway-api-crds-installed')), [...coreKeys, ...ns, ...crdKeys(ISTIO_CRDS)].sort());
});

test('every rendered built-in object matches the Kubernetes schema; every CRD passes the API server\'s checks and equals src/crds/', { skip }, () => {
  const base = render('.');
  const problems: string[] = [];
  let builtins = 0;
  for (const o of base) {
    if (o['kind'] === 'CustomResourceDefinition') {
      problems.push(...checkCrd(o, o['metadata']['name']).map(formatIssue));
      const ours = ALL_CRDS.find((c) => c.metadata.name === o['metadata']['name']);
      assert.ok(ours, `${o['metadata']['name']} comes from src/crds/`);
      assert.deepEqual(o['spec'], JSON.parse(JSON.stringify(ours.spec)), `${o['metadata']['name']} spec`);
      continue;
    }
    const p = checkBuiltinObject(o);
    assert.ok(p !== undefined, `${key(o)} is a built-in kind the test can check`);
    problems.push(...p);
    builtins++;
  }
  assert.deepEqual(problems, []);
  assert.equal(builtins, base.length - ALL_CRDS.length);
  // The checker itself catches what kubectl --validate=strict would.
  const ds = structuredClone(find(base, 'DaemonSet', 'ambit-agent'));
  ds['spec']['template']['spec']['hostNetwrok'] = true;
  ds['spec']['template']['spec']['containers'][0]['ports'][0]['containerPort'] = '15020';
  const caught = checkBuiltinObject(ds)!;
  assert.ok(caught.some((x) => x.includes('spec.template.spec.hostNetwrok: unknown field')), caught.join('\n'));
  assert.ok(caught.some((x) => x.includes('containers[0].ports[0].containerPort: must be a number')), caught.join('\n'));
});

test('RBAC is least privilege: the agent reads pods and namespaces and patches pods/status; the CNI plugin only gets pods and namespaces', { skip }, () => {
  const base = render('.');
  for (const o of base.filter((x) => x['kind'] === 'ClusterRole' || x['kind'] === 'Role')) {
    for (const r of o['rules'] as Rule[]) {
      for (const field of ['apiGroups', 'resources', 'verbs'] as const) {
        assert.ok(!(r[field] ?? []).includes('*'), `${key(o)} grants no wildcard ${field}`);
      }
    }
  }
  assert.deepEqual(grants(find(base, 'ClusterRole', 'ambit-agent')['rules']), [
    'get /namespaces', 'get /pods', 'list /namespaces', 'list /pods', 'patch /pods/status', 'watch /namespaces', 'watch /pods',
  ]);
  assert.deepEqual(grants(find(base, 'Role', 'ambit-agent')['rules']), ['create /serviceaccounts/token[ambit-cni]', 'get apps/daemonsets[ambit-agent]']);
  assert.deepEqual(grants(find(base, 'ClusterRole', 'ambit-cni')['rules']), ['get /namespaces', 'get /pods']);
  const cniSa = find(base, 'ServiceAccount', 'ambit-cni');
  assert.equal(cniSa['automountServiceAccountToken'], false, 'no pod runs as ambit-cni');

  const controller = find(base, 'ClusterRole', 'ambit-controller')['rules'] as Rule[];
  const controllerNs = find(base, 'Role', 'ambit-controller')['rules'] as Rule[];
  // Reads and status writes for every kind whose CRD we ship, from the CRDs themselves.
  for (const c of ALL_CRDS) {
    for (const verb of ['get', 'list', 'watch']) assert.ok(allows(controller, verb, c.spec.group, c.spec.names.plural), `controller may ${verb} ${c.metadata.name}`);
    if (c.spec.versions[0]!.subresources?.status) {
      assert.ok(allows(controller, 'update', c.spec.group, `${c.spec.names.plural}/status`), `controller may write ${c.metadata.name} status`);
    }
    assert.ok(!allows(controller, 'update', c.spec.group, c.spec.names.plural), `controller never rewrites users' ${c.spec.names.plural}`);
  }
  for (const [verb, group, res] of [
    ['list', '', 'pods'], ['watch', '', 'services'], ['watch', 'discovery.k8s.io', 'endpointslices'], ['watch', '', 'nodes'],
    ['create', 'apps', 'deployments'], ['delete', 'apps', 'deployments'], ['create', '', 'services'], ['create', '', 'serviceaccounts'],
    ['create', 'authentication.k8s.io', 'tokenreviews'], ['update', 'gateway.networking.k8s.io', 'gateways/finalizers'], ['watch', 'apiextensions.k8s.io', 'customresourcedefinitions'],
  ] as const) {
    assert.ok(allows(controller, verb, group, res), `controller may ${verb} ${group}/${res}`);
  }
  assert.ok(!allows(controller, 'create', '', 'secrets') && !allows(controller, 'update', '', 'secrets'), 'no cluster-wide secret writes');
  assert.ok(!allows(controller, 'patch', '', 'pods'), 'the controller does not change pods');
  assert.ok(allows(controllerNs, 'create', 'coordination.k8s.io', 'leases') && allows(controllerNs, 'update', 'coordination.k8s.io', 'leases', 'ambit-controller'));
  assert.ok(!allows(controllerNs, 'update', 'coordination.k8s.io', 'leases', 'someone-else'), 'only its own Lease');
  assert.ok(allows(controllerNs, 'update', '', 'secrets', 'ambit-ca') && !allows(controllerNs, 'update', '', 'secrets', 'other'));

  // Every binding names a role and a service account that exist.
  for (const b of base.filter((x) => x['kind'] === 'ClusterRoleBinding' || x['kind'] === 'RoleBinding')) {
    find(base, b['roleRef']['kind'], b['roleRef']['name']);
    for (const s of b['subjects']) {
      assert.equal(s['namespace'], 'istio-system');
      find(base, 'ServiceAccount', s['name']);
    }
  }
});

test('the agent DaemonSet: privileged on the host network and PID space, critical, everywhere, scraped, with its mounts, token and CNI installer', { skip }, () => {
  const base = render('.');
  const ds = find(base, 'DaemonSet', 'ambit-agent');
  const pod = ds['spec']['template'];
  const spec = pod['spec'];
  assert.equal(spec['hostNetwork'], true);
  assert.equal(spec['hostPID'], true);
  assert.equal(spec['dnsPolicy'], 'ClusterFirstWithHostNet', 'host-network pods resolve cluster names');
  assert.equal(spec['priorityClassName'], 'system-node-critical');
  assert.deepEqual(spec['tolerations'], [{ operator: 'Exists' }], 'tolerates every taint');
  assert.equal(spec['serviceAccountName'], 'ambit-agent');
  assert.deepEqual(ds['spec']['selector']['matchLabels'], { 'app.kubernetes.io/name': 'ambit-agent' });
  for (const [k, v] of Object.entries(ds['spec']['selector']['matchLabels'])) assert.equal(pod['metadata']['labels'][k], v);
  assert.equal(pod['metadata']['labels']['istio.io/dataplane-mode'], 'none');
  assert.deepEqual(
    { scrape: pod['metadata']['annotations']['prometheus.io/scrape'], port: pod['metadata']['annotations']['prometheus.io/port'], path: pod['metadata']['annotations']['prometheus.io/path'] },
    { scrape: 'true', port: '15020', path: '/metrics' },
  );
  const agent = spec['containers'].find((c: Obj) => c['name'] === 'agent');
  assert.equal(agent['securityContext']['privileged'], true);
  assert.deepEqual(agent['readinessProbe']['httpGet'], { path: '/healthz/ready', port: 15021 });
  assert.deepEqual(agent['ports'].map((p: Obj) => p['containerPort']).sort(), [15020, 15021]);

  const volume = (name: string): Obj => spec['volumes'].find((v: Obj) => v['name'] === name);
  const mountOf = (c: Obj, name: string): Obj => c['volumeMounts'].find((m: Obj) => m['name'] === name);
  const hostPathOf = (c: Obj, mountPath: string): string | undefined => {
    const m = c['volumeMounts'].find((x: Obj) => x['mountPath'] === mountPath);
    return m ? volume(m['name'])['hostPath']?.['path'] : undefined;
  };
  assert.equal(hostPathOf(agent, '/sys/fs/bpf'), '/sys/fs/bpf');
  assert.equal(mountOf(agent, 'bpffs')['mountPropagation'], 'Bidirectional', 'pins made by the agent are the host\'s');
  assert.equal(hostPathOf(agent, '/host/sys/fs/cgroup'), '/sys/fs/cgroup');
  assert.equal(hostPathOf(agent, '/var/run/netns'), '/var/run/netns');
  assert.equal(mountOf(agent, 'netns')['mountPropagation'], 'HostToContainer', 'namespaces the runtime binds later are visible');

  // The agent's configuration as the container sees it loads, and its files are mounted.
  const agentEnv = containerEnv(base, agent, DOWNWARD);
  const agentCfg = loadAgentConfig(agentEnv);
  assert.equal(agentCfg.nodeName, 'node-1');
  assert.equal(agentCfg.controller.host, 'ambit-controller.istio-system.svc');
  assert.equal(agentCfg.controller.port, 15012);
  find(base, 'Service', 'ambit-controller');
  assert.ok(agentCfg.cgroupPath !== undefined, 'the manifest sets AMBIT_CGROUP_PATH (unset, the agent would look for cgroup2 in its own /proc/mounts)');
  for (const path of [agentCfg.tokenFile, agentCfg.caRootFile, agentCfg.cgroupPath, agentCfg.pinDir, agentEnv['AMBIT_CNI_SOCKET']!]) {
    assert.ok(mountFor(agent, path), `${path} is on a volume of the agent`);
  }
  const tokenMount = mountFor(agent, agentCfg.tokenFile)!;
  const sources = volume(tokenMount['name'])['projected']['sources'];
  assert.deepEqual(sources, [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }]);
  assert.equal(join(tokenMount['mountPath'], 'istio-token'), agentCfg.tokenFile);
  assert.equal(volume(mountFor(agent, agentCfg.caRootFile)!['name'])['configMap']['name'], 'ambit-ca-root-cert');

  // The installer: a sidecar before the agent, same socket, its folders on the host.
  const installer = spec['initContainers'].find((c: Obj) => c['name'] === 'cni-installer');
  assert.ok(installer, 'the CNI installer is an init container');
  assert.equal(installer['restartPolicy'], 'Always', 'a sidecar: it keeps the plugin chained while the agent runs');
  assert.ok(installer['startupProbe'], 'the agent starts once the plugin is installed');
  const instEnv = containerEnv(base, installer, DOWNWARD);
  const inst = loadInstallConfig(instEnv, '/app/node_modules/node/bin/node');
  assert.equal(inst.agentSocket, agentEnv['AMBIT_CNI_SOCKET'], 'installer and agent agree on the socket');
  assert.equal(inst.pod.uid, DOWNWARD['metadata.uid']);
  assert.equal(inst.daemonSet, ds['metadata']['name']);
  assert.equal(hostPathOf(installer, inst.binDir), '/opt/cni/bin');
  assert.equal(hostPathOf(installer, inst.confDir), '/etc/cni/net.d');
  // The plugin runs on the host, so paths it reads must be the same inside and outside.
  assert.equal(hostPathOf(installer, inst.installDir), inst.installDir);
  const runMount = mountFor(agent, inst.agentSocket)!;
  assert.equal(volume(runMount['name'])['hostPath']['path'], runMount['mountPath'], 'the socket folder has the same path on the host');
  assert.equal(dirname(inst.agentSocket), runMount['mountPath']);
  if (inst.pluginLogFile) assert.equal(dirname(inst.pluginLogFile), runMount['mountPath']);
  assert.ok(mountFor(installer, inst.readyFile), 'the ready marker is on a writable volume');
  assert.deepEqual(installer['startupProbe']['exec']['command'], ['test', '-e', inst.readyFile]);

  for (const c of [...spec['containers'], ...spec['initContainers']]) {
    assert.equal(c['image'], 'localhost/ambit:0.1.0');
    assert.equal(c['imagePullPolicy'], 'IfNotPresent', 'an image loaded onto the nodes is used as is');
    const script = c['command'].find((a: string) => a.startsWith('/app/'));
    assert.ok(existsSync(join(REPO, script.replace('/app/', ''))), `${script} is built`);
  }
});

test('the controller: two replicas with a PodDisruptionBudget, gRPC/TLS on 15012 and admin on 15014, ready on /ready, a Service for both', { skip }, () => {
  const base = render('.');
  const dep = find(base, 'Deployment', 'ambit-controller');
  assert.equal(dep['spec']['replicas'], 2);
  const pod = dep['spec']['template'];
  const c = pod['spec']['containers'][0];
  assert.deepEqual(c['ports'].map((p: Obj) => [p['name'], p['containerPort']]), [['grpc-xds', 15012], ['http-monitoring', 15014]]);
  assert.deepEqual(c['readinessProbe']['httpGet'], { path: '/ready', port: 15014 });
  assert.equal(pod['spec']['securityContext']['runAsNonRoot'], true);
  assert.equal(c['securityContext']['readOnlyRootFilesystem'], true);
  const cfg = loadControllerConfig(containerEnv(base, c, DOWNWARD));
  assert.equal(cfg.listen.port, 15012);
  assert.equal(cfg.admin.port, 15014);
  assert.ok(mountFor(c, cfg.stateDir), 'the state folder is writable');
  const pdb = find(base, 'PodDisruptionBudget', 'ambit-controller');
  assert.equal(pdb['spec']['minAvailable'], 1);
  const podLabels = pod['metadata']['labels'];
  for (const sel of [pdb['spec']['selector']['matchLabels'], dep['spec']['selector']['matchLabels']]) {
    for (const [k, v] of Object.entries(sel)) assert.equal(podLabels[k], v, `selector ${k}=${String(v)} matches the pods`);
  }
  const svc = find(base, 'Service', 'ambit-controller');
  for (const [k, v] of Object.entries(svc['spec']['selector'])) assert.equal(podLabels[k], v);
  assert.deepEqual(svc['spec']['ports'].map((p: Obj) => p['port']), [15012, 15014]);
  assert.equal(pod['spec']['serviceAccountName'], 'ambit-controller');
});
