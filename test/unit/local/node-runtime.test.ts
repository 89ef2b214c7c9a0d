/**
 * The pure parts of a local node: a Pod's spec to what runs (command, environment, security
 * context, mounts), the shell program that enters the netns and drops privileges, capabilities,
 * the pod status written back, and the local primary CNI plugin's configuration and addresses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../../src/controller/objects.js';
import { isAmbitError } from '../../../src/shared/errors.js';
import { capabilitySet, containerCommand, DEFAULT_CAPABILITIES, type ContainerSpec } from '../../../src/local/node/containers.js';
import { containerSpecs, expandVars, podSysctls } from '../../../src/local/node/pod-spec.js';
import { buildPodStatus } from '../../../src/local/node/pod-status.js';
import { podUser, type VolumeSources } from '../../../src/local/node/volumes.js';
import { crashLine, resultPodIp } from '../../../src/local/node/cni-chain.js';
import { nextCandidates, parseNetPluginConf } from '../../../src/local/cni-net/plugin.js';

const sources: VolumeSources = {
  configMap: async (_ns: string, name: string) => (name === 'cfg' ? { mode: 'fast', 'bad key': 'x' } : undefined),
  secret: async () => undefined,
} as unknown as VolumeSources;

const podOf = (spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'demo', uid: 'u1', labels: { app: 'p' } }, spec });
const ctx = { podIp: '10.5.1.2', hostIp: '10.5.0.2', volumes: new Map(), sources, pathPrefix: ['/opt/bin'], apiService: { host: '10.96.0.1', port: 443 } };

test('pod spec: command, env with $(VAR) expansion, downward API, envFrom; security context resolved against the pod', async () => {
  assert.equal(expandVars('$(A)-$(B)-$$(A)-$(MISSING)', { A: 'x', B: 'y' }), 'x-y-$(A)-$(MISSING)');
  const pod = podOf({
    securityContext: { runAsUser: 1000, runAsGroup: 2000, fsGroup: 3000, runAsNonRoot: true },
    containers: [
      {
        name: 'app',
        command: ['node'],
        args: ['server.js', '$(PORT)'],
        ports: [{ containerPort: 8080 }],
        readinessProbe: { tcpSocket: { port: 9090 } },
        env: [
          { name: 'PORT', value: '8080' },
          { name: 'URL', value: 'http://$(MY_IP):$(PORT)' },
          { name: 'MY_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
          { name: 'NS', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
        ],
        envFrom: [{ configMapRef: { name: 'cfg' }, prefix: 'CFG_' }],
        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE'] }, readOnlyRootFilesystem: true },
      },
    ],
  });
  const [c] = await containerSpecs(pod, ctx);
  assert.ok(c);
  assert.deepEqual(c.argv, ['node', 'server.js', '$(PORT)'], 'args are not expanded by the runtime (the kubelet expands them; see below)');
  assert.equal(c.env['PORT'], '8080');
  assert.equal(c.env['URL'], 'http://$(MY_IP):8080', 'only variables defined before are expanded');
  assert.equal(c.env['MY_IP'], '10.5.1.2');
  assert.equal(c.env['NS'], 'demo');
  assert.equal(c.env['CFG_mode'], 'fast');
  assert.equal(c.env['CFG_bad key'], undefined, 'envFrom skips keys that are not valid variable names');
  assert.equal(c.env['KUBERNETES_SERVICE_HOST'], '10.96.0.1');
  assert.deepEqual([c.env['POD_NAME'], c.env['POD_NAMESPACE']], ['p', 'demo'], 'local mode names the pod to its processes');
  assert.match(c.env['PATH']!, /^\/opt\/bin:/);
  assert.deepEqual(c.ports, [9090], 'with a readiness probe, its port is what must listen (as the kubelet asks only the probe)');
  const [noProbe] = await containerSpecs(podOf({ containers: [{ name: 'a', command: ['x'], ports: [{ containerPort: 8443 }, { containerPort: 8080 }, { containerPort: 53, protocol: 'UDP' }] }] }), ctx);
  assert.deepEqual(noProbe?.ports, [8080, 8443], 'without a probe, every declared TCP port must listen');
  const [named] = await containerSpecs(podOf({ containers: [{ name: 'a', command: ['x'], ports: [{ name: 'status', containerPort: 15021 }, { containerPort: 80 }], readinessProbe: { httpGet: { path: '/healthz/ready', port: 'status' } } }] }), ctx);
  assert.deepEqual(named?.ports, [15021], 'a probe naming a port: that port alone (a gateway is ready before its listener ports open)');
  assert.deepEqual(c.user, { uid: 1000, gid: 2000, groups: [3000] });
  assert.deepEqual(c.capabilities, ['net_bind_service']);
  assert.equal(c.noNewPrivs, true);
  assert.equal(c.readOnlyRoot, true);
  assert.deepEqual(podUser(pod), { uid: 1000, gid: 2000, fsGroup: 3000 });
});

test('pod spec: what cannot run as written is refused, naming the container and the field', async () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ containers: [{ name: 'a', command: ['x'], securityContext: { runAsNonRoot: true } }] }, /container a: runAsNonRoot is set but the container would run as root/],
    [{ containers: [{ name: 'a', image: 'nginx' }] }, /container a: no command or args/],
    [{ containers: [{ name: 'a', command: ['x'], securityContext: { capabilities: { add: ['NET_WIZARD'] } } }] }, /container a securityContext\.capabilities: unknown capabilities "NET_WIZARD"/],
    [{ containers: [{ name: 'a', command: ['x'], env: [{ name: 'K', valueFrom: { configMapKeyRef: { name: 'gone', key: 'k' } } }] }] }, /container a\.env\[0\] \(K\): configmap "gone" not found/],
    [{ containers: [{ name: 'a', command: ['x'], env: [{ name: 'K', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'nokey' } } }] }] }, /configmap "cfg" has no key "nokey"/],
    [{ containers: [{ name: 'a', command: ['x'], volumeMounts: [{ name: 'v', mountPath: '/data' }] }] }, /container a\.volumeMounts\[0\]: volume "v" not found/],
  ];
  for (const [spec, re] of cases) {
    await assert.rejects(containerSpecs(podOf(spec), ctx), (e: unknown) => isAmbitError(e, 'AMBIT_ERR_LOCAL_SANDBOX') && re.test((e as Error).message), JSON.stringify(spec));
  }
  assert.throws(() => podSysctls(podOf({ securityContext: { sysctls: [{ name: 'kernel.panic', value: '1' }] }, containers: [] })), /kernel\.panic" is not a namespaced sysctl/);
  assert.deepEqual(podSysctls(podOf({ securityContext: { sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }] }, containers: [] })), [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }]);
});

test('capabilities: the runtime default set, plus add, minus drop; ALL empties it first', () => {
  assert.deepEqual(capabilitySet([], [], 'x'), [...DEFAULT_CAPABILITIES].sort());
  assert.ok(!capabilitySet([], [], 'x').includes('net_admin'), 'no NET_ADMIN by default');
  assert.ok(!capabilitySet([], [], 'x').includes('sys_admin'));
  assert.deepEqual(capabilitySet(['CAP_NET_ADMIN'], ['ALL'], 'x'), ['net_admin']);
  assert.deepEqual(capabilitySet([], ['all'], 'x'), []);
  assert.ok(!capabilitySet([], ['NET_RAW'], 'x').includes('net_raw'));
});

test('container program: cgroup, netns, mounts, then setpriv drops the user and capabilities', () => {
  const spec: ContainerSpec = {
    name: 'a',
    argv: ['sleep', "it's"],
    env: {},
    ports: [],
    user: { uid: 1000, gid: 1000, groups: [] },
    capabilities: [],
    noNewPrivs: true,
    readOnlyRoot: true,
    mounts: [{ source: '/run/x/vol', target: '/var/run/secrets/tokens', readOnly: true }],
    privileged: false,
  };
  const [sh, argv] = containerCommand(spec, '/sys/fs/cgroup/m/cgroup.procs', 'ns1');
  assert.equal(sh, 'sh');
  const inner = argv[argv.indexOf('-c', 5) + 1]!;
  assert.match(inner, /mount --bind '\/run\/x\/vol' '\/var\/run\/secrets\/tokens'/);
  assert.match(inner, /mount -o remount,bind,ro '\/var\/run\/secrets\/tokens'/);
  assert.match(inner, /mount -o remount,bind,ro \//);
  assert.match(inner, /exec setpriv --reuid=1000 --regid=1000 --clear-groups --bounding-set=-all --inh-caps=-all --no-new-privs -- "\$@"/);
  assert.deepEqual(argv.slice(-2), ['sleep', "it's"], 'the command is passed as arguments, never pasted into the script');
  assert.ok(argv.includes('ns1'));
  const priv = containerCommand({ ...spec, privileged: true }, '/c', 'ns1')[1];
  assert.ok(!priv.join(' ').includes('setpriv'), 'privileged containers keep every capability');
  const withCaps = containerCommand({ ...spec, capabilities: ['net_bind_service', 'chown'] }, '/c', 'ns1')[1].join('\n');
  assert.match(withCaps, /--bounding-set=-all,\+net_bind_service,\+chown/);
});

test('pod status: phase, conditions and container states as kubectl reads them', () => {
  const pod = podOf({ containers: [{ name: 'a', image: 'i' }, { name: 'b' }] });
  const waiting = buildPodStatus(pod, { waiting: { reason: 'FailedCreatePodSandBox', message: 'the agent is away' }, sandboxReady: false, hostIp: '10.5.0.2', phase: 'Pending', containers: [] }) as any;
  assert.equal(waiting.phase, 'Pending');
  assert.equal(waiting.containerStatuses[0].state.waiting.reason, 'FailedCreatePodSandBox');
  assert.equal(waiting.containerStatuses[0].state.waiting.message, 'the agent is away');
  const running = buildPodStatus(pod, {
    sandboxReady: true,
    podIp: '10.5.1.2',
    hostIp: '10.5.0.2',
    startTime: '2026-01-01T00:00:00Z',
    phase: 'Running',
    containers: [
      { name: 'a', running: true, ready: true, restarts: 0, startedAt: '2026-01-01T00:00:01Z' },
      { name: 'b', running: false, ready: false, restarts: 2, exitCode: 1, last: { exitCode: 1, finishedAt: '2026-01-01T00:00:05Z' } },
    ],
  }) as any;
  assert.equal(running.podIP, '10.5.1.2');
  assert.deepEqual(running.podIPs, [{ ip: '10.5.1.2' }]);
  const c = Object.fromEntries(running.conditions.map((x: any) => [x.type, x.status]));
  assert.equal(c.Ready, 'False');
  assert.equal(c.ContainersReady, 'False');
  assert.equal(running.containerStatuses[1].state.waiting.reason, 'CrashLoopBackOff');
  assert.equal(running.containerStatuses[1].restartCount, 2);
  assert.equal(running.containerStatuses[1].lastState.terminated.exitCode, 1);
});

test('local CNI plugin: configuration errors are listed together; addresses go round-robin, skipping the gateway', () => {
  assert.throws(
    () => parseNetPluginConf({ cniVersion: '1.0.0', name: 'n', type: 'ambit-local-net', node_netns: 'rel', subnet: '10.5.1.0/31', ipam_dir: '/x', mtu: 10 } as never),
    (e: unknown) => isAmbitError(e, 'AMBIT_ERR_CNI_INVALID') && /node_netns must be an absolute path/.test((e as Error).message) && /subnet must be an IPv4 CIDR/.test((e as Error).message) && /mtu must be/.test((e as Error).message),
  );
  const conf = parseNetPluginConf({ cniVersion: '1.0.0', name: 'n', type: 'ambit-local-net', node_netns: '/var/run/netns/n1', subnet: '10.5.1.0/29', gateway: '10.5.1.1', ipam_dir: '/x' } as never);
  assert.deepEqual(nextCandidates(conf, undefined, new Set()), ['10.5.1.2', '10.5.1.3', '10.5.1.4', '10.5.1.5', '10.5.1.6']);
  assert.deepEqual(nextCandidates(conf, '10.5.1.3', new Set(['10.5.1.5'])), ['10.5.1.4', '10.5.1.6', '10.5.1.2', '10.5.1.3'], 'after the last one given, wrapping, taken ones skipped');
  assert.equal(resultPodIp({ ips: [{ address: 'fd00::2/64' }, { address: '10.5.1.4/24' }] }), '10.5.1.4');
  assert.equal(resultPodIp({}), undefined);
});

test('a crashed plugin is reported by its error line, not by Node\'s version banner', () => {
  assert.equal(crashLine('file:///p/main.js:3\n  throw e\n  ^\n\nTypeError [ERR_INVALID_ARG_TYPE]: bad thing\n    at f (file:///p/main.js:3:9)\n\nNode.js v24.21.0\n'), 'TypeError [ERR_INVALID_ARG_TYPE]: bad thing');
  assert.equal(crashLine('Error: ip -batch failed\n\nNode.js v24.21.0'), 'Error: ip -batch failed');
  assert.equal(crashLine('ip: RTNETLINK answers: File exists\n'), 'ip: RTNETLINK answers: File exists');
  assert.equal(crashLine(''), '');
});
