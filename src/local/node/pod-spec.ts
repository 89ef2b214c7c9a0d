/**
 * From a Pod's spec to what the container runtime runs (the kubelet's "generate container config"
 * step): each container's command and arguments, its environment (plain values with $(VAR)
 * expansion, the downward API, ConfigMap and Secret keys, envFrom), its volume mounts, and its
 * security context resolved against the pod's: user and groups, capabilities, no_new_privs,
 * read-only root. A pod that cannot run as written (runAsNonRoot without a non-root user, an
 * unknown capability, a missing key) gets AMBIT_ERR_LOCAL_SANDBOX naming the container and field.
 */
import { AmbitError } from '../../shared/errors.js';
import type { KubeObject } from '../../controller/objects.js';
import { rec } from '../controllers/queue.js';
import { capabilitySet, type ContainerSpec, type Mount } from './containers.js';
import { downwardValue, type PreparedVolume, type VolumeSources } from './volumes.js';

export interface ContainerContext {
  podIp: string;
  hostIp: string;
  volumes: ReadonlyMap<string, PreparedVolume>;
  sources: VolumeSources;
  /** Folders put before the system PATH (where `ambit` and the pinned `node` live). */
  pathPrefix: string[];
  /** The `kubernetes` Service's ClusterIP and port, for KUBERNETES_SERVICE_HOST/PORT. */
  apiService?: { host: string; port: number };
}

function int(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) ? v : undefined;
}

/** `$(VAR)` references to variables defined before; `$$(VAR)` escapes (Kubernetes' expansion rules). */
export function expandVars(value: string, vars: Readonly<Record<string, string>>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && name in vars ? vars[name]! : m;
  });
}

async function keyRef(pod: KubeObject, ref: Record<string, unknown>, kind: 'configMap' | 'secret', sources: VolumeSources, where: string): Promise<string | undefined> {
  const ns = pod.metadata.namespace ?? 'default';
  const name = String(ref['name'] ?? '');
  const data = kind === 'configMap' ? await sources.configMap(ns, name) : await sources.secret(ns, name);
  const key = String(ref['key'] ?? '');
  if (data && key in data) return data[key];
  if (ref['optional'] === true) return undefined;
  throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}: ${kind === 'configMap' ? 'configmap' : 'secret'} "${name}"${data ? ` has no key ${JSON.stringify(key)}` : ' not found'}`);
}

async function environment(pod: KubeObject, c: Record<string, unknown>, ctx: ContainerContext, where: string, home: string): Promise<Record<string, string>> {
  const env: Record<string, string> = {
    PATH: [...ctx.pathPrefix, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'].join(':'),
    HOSTNAME: pod.metadata.name,
    HOME: home,
    // Local mode's runtime also names the pod to its processes (what `ambit local exec` sets too);
    // a manifest's own env entries of these names win.
    POD_NAME: pod.metadata.name,
    POD_NAMESPACE: pod.metadata.namespace ?? 'default',
    POD_IP: ctx.podIp,
    NODE_NAME: String(rec(pod.spec).nodeName ?? ''),
  };
  if (ctx.apiService) {
    env['KUBERNETES_SERVICE_HOST'] = ctx.apiService.host;
    env['KUBERNETES_SERVICE_PORT'] = String(ctx.apiService.port);
    env['KUBERNETES_SERVICE_PORT_HTTPS'] = String(ctx.apiService.port);
  }
  const ns = pod.metadata.namespace ?? 'default';
  for (const [i, from] of ((c['envFrom'] ?? []) as Array<Record<string, unknown>>).entries()) {
    const prefix = String(from['prefix'] ?? '');
    const ref = rec(from['configMapRef'] ?? from['secretRef']);
    const isCm = from['configMapRef'] !== undefined;
    const name = String(ref['name'] ?? '');
    const data = isCm ? await ctx.sources.configMap(ns, name) : await ctx.sources.secret(ns, name);
    if (!data) {
      if (ref['optional'] === true) continue;
      throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}.envFrom[${i}]: ${isCm ? 'configmap' : 'secret'} "${name}" not found`);
    }
    for (const [k, v] of Object.entries(data)) if (/^[-._a-zA-Z][-._a-zA-Z0-9]*$/.test(prefix + k)) env[prefix + k] = v;
  }
  const withStatus: KubeObject = { ...pod, status: { ...rec(pod.status), podIP: ctx.podIp, hostIP: ctx.hostIp } };
  for (const [i, e] of ((c['env'] ?? []) as Array<Record<string, unknown>>).entries()) {
    const name = String(e['name'] ?? '');
    if (name === '') continue;
    const w = `${where}.env[${i}] (${name})`;
    if (e['valueFrom'] === undefined) {
      env[name] = expandVars(String(e['value'] ?? ''), env);
      continue;
    }
    const vf = rec(e['valueFrom']);
    let v: string | undefined;
    if (vf['fieldRef'] !== undefined) {
      try {
        v = downwardValue(withStatus, String(rec(vf['fieldRef'])['fieldPath'] ?? ''));
      } catch (err) {
        throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${w}: ${(err as Error).message}`, { cause: err });
      }
    } else if (vf['configMapKeyRef'] !== undefined) v = await keyRef(pod, rec(vf['configMapKeyRef']), 'configMap', ctx.sources, w);
    else if (vf['secretKeyRef'] !== undefined) v = await keyRef(pod, rec(vf['secretKeyRef']), 'secret', ctx.sources, w);
    else if (vf['resourceFieldRef'] !== undefined) {
      // No resource limits are enforced locally; report what the spec says, else 0.
      const res = rec(c['resources']);
      const field = String(rec(vf['resourceFieldRef'])['resource'] ?? '');
      const [kind, what] = field.split('.') as [string, string];
      v = String(rec(res[kind])[what] ?? '0');
    } else throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${w}: valueFrom ${Object.keys(vf).join(',')} is not supported`);
    if (v !== undefined) env[name] = v;
  }
  return env;
}

/**
 * The ports that must listen for readiness: the readiness and startup probes' ports when the
 * container has a probe (as the kubelet, which asks only the probe: a gateway declares its
 * listener ports but is ready once its status port answers), else every declared TCP port.
 */
function readinessPorts(c: Record<string, unknown>): number[] {
  const ports = new Set<number>();
  for (const probe of [c['readinessProbe'], c['startupProbe']]) {
    const pr = rec(probe);
    const port = rec(pr['tcpSocket'])['port'] ?? rec(pr['httpGet'])['port'] ?? rec(pr['grpc'])['port'];
    if (typeof port === 'number') ports.add(port);
    else if (typeof port === 'string') {
      const named = ((c['ports'] ?? []) as Array<Record<string, unknown>>).find((p) => p['name'] === port);
      if (typeof named?.['containerPort'] === 'number') ports.add(named['containerPort']);
    }
  }
  if (ports.size > 0) return [...ports].sort((a, b) => a - b);
  for (const p of (c['ports'] ?? []) as Array<Record<string, unknown>>) if (typeof p['containerPort'] === 'number' && (p['protocol'] ?? 'TCP') === 'TCP') ports.add(p['containerPort']);
  return [...ports].sort((a, b) => a - b);
}

/** The runtime's view of every container of `pod`. */
export async function containerSpecs(pod: KubeObject, ctx: ContainerContext): Promise<ContainerSpec[]> {
  const spec = rec(pod.spec);
  const psc = rec(spec.securityContext);
  const out: ContainerSpec[] = [];
  for (const [i, c] of ((spec.containers ?? []) as Array<Record<string, unknown>>).entries()) {
    const name = String(c['name'] ?? `container-${i}`);
    const where = `pod ${pod.metadata.namespace}/${pod.metadata.name} container ${name}`;
    const csc = rec(c['securityContext']);
    const argv = [...((c['command'] as unknown[] | undefined) ?? []), ...((c['args'] as unknown[] | undefined) ?? [])].map(String);
    if (argv.length === 0) throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}: no command or args (local mode runs no images, so a container needs a command)`);
    const privileged = csc['privileged'] === true;
    const uid = int(csc['runAsUser']) ?? int(psc['runAsUser']) ?? 0;
    const gid = int(csc['runAsGroup']) ?? int(psc['runAsGroup']) ?? uid;
    const nonRoot = (csc['runAsNonRoot'] ?? psc['runAsNonRoot']) === true;
    if (nonRoot && uid === 0) throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}: runAsNonRoot is set but the container would run as root (set securityContext.runAsUser to a non-zero uid)`);
    const groups = [...new Set([...(((psc['supplementalGroups'] as unknown[] | undefined) ?? []).map(Number).filter(Number.isInteger)), ...(int(psc['fsGroup']) !== undefined ? [int(psc['fsGroup'])!] : [])])];
    const caps = rec(csc['capabilities']);
    const capabilities = capabilitySet(((caps['add'] as unknown[] | undefined) ?? []).map(String), ((caps['drop'] as unknown[] | undefined) ?? []).map(String), `${where} securityContext.capabilities`);
    const mounts: Mount[] = [];
    for (const [j, m] of ((c['volumeMounts'] ?? []) as Array<Record<string, unknown>>).entries()) {
      const vol = ctx.volumes.get(String(m['name'] ?? ''));
      if (!vol) throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}.volumeMounts[${j}]: volume ${JSON.stringify(m['name'])} not found`);
      const sub = typeof m['subPath'] === 'string' && m['subPath'] !== '' ? m['subPath'] : '';
      if (sub.split('/').includes('..') || sub.startsWith('/')) throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `${where}.volumeMounts[${j}].subPath: ${JSON.stringify(sub)} must stay inside the volume`);
      mounts.push({ source: sub ? `${vol.source}/${sub}` : vol.source, target: String(m['mountPath'] ?? ''), readOnly: m['readOnly'] === true });
    }
    const home = uid === 0 ? '/root' : '/';
    out.push({
      name,
      argv,
      env: await environment(pod, c, ctx, where, home),
      ports: readinessPorts(c),
      ...(typeof c['workingDir'] === 'string' && c['workingDir'] !== '' ? { workingDir: c['workingDir'] } : {}),
      ...(privileged ? {} : { user: { uid, gid, groups } }),
      capabilities,
      noNewPrivs: csc['allowPrivilegeEscalation'] === false,
      readOnlyRoot: csc['readOnlyRootFilesystem'] === true,
      mounts,
      privileged,
    });
  }
  return out;
}

/** Namespaced sysctls a pod may set (the `net.*` ones and the "safe" set), as name → value. */
export function podSysctls(pod: KubeObject): Array<{ name: string; value: string }> {
  const list = (rec(rec(pod.spec).securityContext).sysctls ?? []) as Array<Record<string, unknown>>;
  return list.map((s, i) => {
    const name = String(s['name'] ?? '');
    if (!/^net\.[a-z0-9_.]+$/.test(name) && !['kernel.shm_rmid_forced'].includes(name)) {
      throw new AmbitError('AMBIT_ERR_LOCAL_SANDBOX', `pod ${pod.metadata.namespace}/${pod.metadata.name} securityContext.sysctls[${i}]: ${JSON.stringify(name)} is not a namespaced sysctl local mode sets (net.*)`);
    }
    return { name, value: String(s['value'] ?? '') };
  });
}
