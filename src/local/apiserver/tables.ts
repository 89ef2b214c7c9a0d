/**
 * meta.k8s.io/v1 Tables for `kubectl get`: the columns and cells the real server's printers give
 * each built-in kind (priority 1 columns are `-o wide`), printer columns of CRDs (a JSONPath
 * subset), and Name/Age otherwise. Rows carry PartialObjectMetadata, from which kubectl takes the
 * NAMESPACE column (`-A`) and `--show-labels`.
 */
import type { ResourceDef } from './resources.js';
import { isMap, type JsonMap, type KubeObject } from './types.js';

export interface ColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

interface Printer {
  columns: ColumnDefinition[];
  cells(o: KubeObject, now: number): unknown[];
}

function col(name: string, type = 'string', priority = 0, format = ''): ColumnDefinition {
  return { name, type, format, description: describeColumn(name), priority };
}

function describeColumn(name: string): string {
  if (name === 'Name') return 'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names';
  if (name === 'Age') return 'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.';
  return name;
}

const NAME = col('Name', 'string', 0, 'name');
const AGE = col('Age');

/** apimachinery's duration.HumanDuration: `45s`, `3m20s`, `5h`, `2d3h`, `3y`. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const dy = Math.floor(hours / 24) % 365;
    return dy === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${dy}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

function since(ts: unknown, now: number): string {
  if (typeof ts !== 'string' || Number.isNaN(Date.parse(ts))) return '<unknown>';
  return humanDuration(now - Date.parse(ts));
}

function age(o: KubeObject, now: number): string {
  return since(o.metadata.creationTimestamp, now);
}

function m(v: unknown): JsonMap {
  return isMap(v) ? v : {};
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : 0;
}

function selectorText(sel: unknown): string {
  const s = m(sel);
  const parts: string[] = [];
  const ml = s['matchLabels'] !== undefined ? m(s['matchLabels']) : s;
  if (s['matchLabels'] !== undefined || s['matchExpressions'] === undefined) {
    for (const k of Object.keys(ml).sort()) if (typeof ml[k] === 'string') parts.push(`${k}=${String(ml[k])}`);
  }
  for (const e of arr(s['matchExpressions'])) {
    const x = m(e);
    const op = String(x['operator']);
    const vals = arr(x['values']).map(String);
    if (op === 'In' || op === 'NotIn') parts.push(`${String(x['key'])} ${op.toLowerCase()} (${vals.join(',')})`);
    else if (op === 'Exists') parts.push(String(x['key']));
    else parts.push(`!${String(x['key'])}`);
  }
  return parts.length > 0 ? parts.join(',') : '<none>';
}

function containersAndImages(spec: unknown): [string, string] {
  const cs = arr(m(m(m(spec)['template'])['spec'])['containers']).map(m);
  return [cs.map((c) => String(c['name'] ?? '')).join(','), cs.map((c) => String(c['image'] ?? '')).join(',')];
}

function podStatusText(o: KubeObject): { reason: string; ready: number; total: number; restarts: string } {
  const spec = m(o['spec']);
  const status = m(o['status']);
  const total = arr(spec['containers']).length;
  let reason = String(status['reason'] ?? status['phase'] ?? 'Pending');
  let restarts = 0;
  let lastRestart: number | undefined;
  let ready = 0;
  let initializing = false;
  const inits = arr(status['initContainerStatuses']).map(m);
  const initTotal = arr(spec['initContainers']).length;
  inits.forEach((c, i) => {
    restarts += num(c['restartCount']);
    const st = m(c['state']);
    if (isMap(st['terminated']) && num(st['terminated']['exitCode']) === 0) return;
    if (initializing) return;
    if (isMap(st['terminated'])) {
      const t = st['terminated'];
      reason = `Init:${String(t['reason'] ?? (t['signal'] ? `Signal:${String(t['signal'])}` : `ExitCode:${num(t['exitCode'])}`))}`;
    } else if (isMap(st['waiting']) && st['waiting']['reason'] && st['waiting']['reason'] !== 'PodInitializing') {
      reason = `Init:${String(st['waiting']['reason'])}`;
    } else {
      reason = `Init:${i}/${initTotal}`;
    }
    initializing = true;
  });
  if (!initializing) {
    let hasRunning = false;
    const cs = arr(status['containerStatuses']).map(m);
    for (let i = cs.length - 1; i >= 0; i--) {
      const c = cs[i]!;
      restarts += num(c['restartCount']);
      const last = m(m(c['lastState'])['terminated']);
      if (typeof last['finishedAt'] === 'string') {
        const t = Date.parse(last['finishedAt']);
        if (lastRestart === undefined || t > lastRestart) lastRestart = t;
      }
      const st = m(c['state']);
      if (isMap(st['waiting']) && st['waiting']['reason']) reason = String(st['waiting']['reason']);
      else if (isMap(st['terminated'])) {
        const t = st['terminated'];
        reason = String(t['reason'] ?? (t['signal'] ? `Signal:${String(t['signal'])}` : `ExitCode:${num(t['exitCode'])}`));
      } else if (isMap(st['running']) && c['ready'] === true) {
        hasRunning = true;
        ready++;
      }
    }
    if (reason === 'Completed' && hasRunning) {
      const conds = arr(status['conditions']).map(m);
      reason = conds.some((c) => c['type'] === 'Ready' && c['status'] === 'True') ? 'Running' : 'NotReady';
    }
  }
  if (o.metadata.deletionTimestamp !== undefined) reason = status['reason'] === 'NodeLost' ? 'Unknown' : 'Terminating';
  const r = lastRestart !== undefined ? `${restarts} (${humanDuration(Date.now() - lastRestart)} ago)` : String(restarts);
  return { reason, ready, total, restarts: r };
}

function servicePorts(spec: JsonMap): string {
  const ports = arr(spec['ports']).map(m);
  if (ports.length === 0) return '<none>';
  return ports.map((p) => `${num(p['port'])}${p['nodePort'] ? `:${num(p['nodePort'])}` : ''}/${String(p['protocol'] ?? 'TCP')}`).join(',');
}

function serviceExternalIp(o: KubeObject): string {
  const spec = m(o['spec']);
  const external = arr(spec['externalIPs']).map(String);
  switch (spec['type']) {
    case 'ExternalName':
      return String(spec['externalName'] ?? '<none>');
    case 'LoadBalancer': {
      const ing = arr(m(m(o['status'])['loadBalancer'])['ingress']).map(m);
      const ips = [...ing.map((i) => String(i['ip'] ?? i['hostname'] ?? '')).filter((x) => x !== ''), ...external];
      return ips.length > 0 ? ips.join(',') : '<pending>';
    }
    default:
      return external.length > 0 ? external.join(',') : '<none>';
  }
}

function nodeStatus(o: KubeObject): string {
  const conds = arr(m(o['status'])['conditions']).map(m);
  const ready = conds.find((c) => c['type'] === 'Ready');
  let s = ready === undefined ? 'Unknown' : ready['status'] === 'True' ? 'Ready' : ready['status'] === 'False' ? 'NotReady' : 'Unknown';
  if (m(o['spec'])['unschedulable'] === true) s += ',SchedulingDisabled';
  return s;
}

function nodeAddress(o: KubeObject, type: string): string {
  const a = arr(m(o['status'])['addresses']).map(m).find((x) => x['type'] === type);
  return a === undefined ? '<none>' : String(a['address']);
}

function subjectsOf(o: KubeObject, kind: string): string {
  const out = arr(o['subjects'])
    .map(m)
    .filter((s) => s['kind'] === kind)
    .map((s) => (kind === 'ServiceAccount' ? `${String(s['namespace'] ?? '')}/${String(s['name'])}` : String(s['name'])));
  return out.join(', ');
}

function createdAt(o: KubeObject): string {
  return String(o.metadata.creationTimestamp ?? '');
}

function orNone(v: unknown): string {
  return v === undefined || v === null || v === '' ? '<none>' : String(v);
}

const CREATED_AT: Printer = { columns: [NAME, col('Created At', 'date')], cells: (o) => [o.metadata.name, createdAt(o)] };

const PRINTERS: Record<string, Printer> = {
  '/pods': {
    columns: [NAME, col('Ready'), col('Status'), col('Restarts'), AGE, col('IP', 'string', 1), col('Node', 'string', 1), col('Nominated Node', 'string', 1), col('Readiness Gates', 'string', 1)],
    cells(o, now) {
      const st = podStatusText(o);
      const spec = m(o['spec']);
      const status = m(o['status']);
      const gates = arr(spec['readinessGates']).map(m);
      const conds = arr(status['conditions']).map(m);
      const gatesText = gates.length === 0 ? '<none>' : `${gates.filter((g) => conds.some((c) => c['type'] === g['conditionType'] && c['status'] === 'True')).length}/${gates.length}`;
      return [o.metadata.name, `${st.ready}/${st.total}`, st.reason, st.restarts, age(o, now), orNone(status['podIP']), orNone(spec['nodeName']), orNone(status['nominatedNodeName']), gatesText];
    },
  },
  '/services': {
    columns: [NAME, col('Type'), col('Cluster-IP'), col('External-IP'), col('Port(s)'), AGE, col('Selector', 'string', 1)],
    cells(o, now) {
      const spec = m(o['spec']);
      const sel = m(spec['selector']);
      const selText = Object.keys(sel).length === 0 ? '<none>' : Object.keys(sel).sort().map((k) => `${k}=${String(sel[k])}`).join(',');
      return [o.metadata.name, String(spec['type'] ?? 'ClusterIP'), orNone(spec['clusterIP']), serviceExternalIp(o), servicePorts(spec), age(o, now), selText];
    },
  },
  '/namespaces': {
    columns: [NAME, col('Status'), AGE],
    cells: (o, now) => [o.metadata.name, String(m(o['status'])['phase'] ?? 'Active'), age(o, now)],
  },
  '/configmaps': {
    columns: [NAME, col('Data', 'integer'), AGE],
    cells: (o, now) => [o.metadata.name, Object.keys(m(o['data'])).length + Object.keys(m(o['binaryData'])).length, age(o, now)],
  },
  '/secrets': {
    columns: [NAME, col('Type'), col('Data', 'integer'), AGE],
    cells: (o, now) => [o.metadata.name, String(o['type'] ?? 'Opaque'), Object.keys(m(o['data'])).length, age(o, now)],
  },
  '/serviceaccounts': {
    columns: [NAME, col('Secrets', 'integer'), AGE],
    cells: (o, now) => [o.metadata.name, arr(o['secrets']).length, age(o, now)],
  },
  '/nodes': {
    columns: [NAME, col('Status'), col('Roles'), AGE, col('Version'), col('Internal-IP', 'string', 1), col('External-IP', 'string', 1), col('OS-Image', 'string', 1), col('Kernel-Version', 'string', 1), col('Container-Runtime', 'string', 1)],
    cells(o, now) {
      const roles = Object.keys(o.metadata.labels ?? {})
        .filter((k) => k.startsWith('node-role.kubernetes.io/'))
        .map((k) => k.slice('node-role.kubernetes.io/'.length))
        .filter((r) => r !== '')
        .sort();
      const info = m(m(o['status'])['nodeInfo']);
      return [
        o.metadata.name,
        nodeStatus(o),
        roles.length > 0 ? roles.join(',') : '<none>',
        age(o, now),
        String(info['kubeletVersion'] ?? ''),
        nodeAddress(o, 'InternalIP'),
        nodeAddress(o, 'ExternalIP'),
        orNone(info['osImage']),
        orNone(info['kernelVersion']),
        orNone(info['containerRuntimeVersion']),
      ];
    },
  },
  '/endpoints': {
    columns: [NAME, col('Endpoints'), AGE],
    cells(o, now) {
      const list: string[] = [];
      for (const s of arr(o['subsets']).map(m)) {
        const ports = arr(s['ports']).map(m);
        for (const a of arr(s['addresses']).map(m)) {
          if (ports.length === 0) list.push(String(a['ip']));
          for (const p of ports) list.push(`${String(a['ip'])}:${num(p['port'])}`);
        }
      }
      const text = list.length === 0 ? '<none>' : list.length > 3 ? `${list.slice(0, 3).join(',')} + ${list.length - 3} more...` : list.join(',');
      return [o.metadata.name, text, age(o, now)];
    },
  },
  '/events': {
    columns: [col('Last Seen'), col('Type'), col('Reason'), col('Object'), col('Subobject', 'string', 1), col('Source', 'string', 1), col('Message'), col('First Seen', 'string', 1), col('Count', 'string', 1), col('Name', 'string', 1)],
    cells(o, now) {
      const io = m(o['involvedObject']);
      const src = m(o['source']);
      const last = o['lastTimestamp'] ?? m(o['series'])['lastObservedTime'] ?? o['eventTime'] ?? o.metadata.creationTimestamp;
      const first = o['firstTimestamp'] ?? o['eventTime'] ?? o.metadata.creationTimestamp;
      return [
        since(last, now),
        String(o['type'] ?? ''),
        String(o['reason'] ?? ''),
        `${String(io['kind'] ?? '').toLowerCase()}/${String(io['name'] ?? '')}`,
        String(io['fieldPath'] ?? ''),
        String(src['component'] ?? o['reportingComponent'] ?? ''),
        String(o['message'] ?? '').trim(),
        since(first, now),
        String(o['count'] ?? 1),
        o.metadata.name,
      ];
    },
  },
  'apps/deployments': {
    columns: [NAME, col('Ready'), col('Up-to-date', 'integer'), col('Available', 'integer'), AGE, col('Containers', 'string', 1), col('Images', 'string', 1), col('Selector', 'string', 1)],
    cells(o, now) {
      const spec = m(o['spec']);
      const st = m(o['status']);
      const [c, i] = containersAndImages(spec);
      return [o.metadata.name, `${num(st['readyReplicas'])}/${num(spec['replicas'])}`, num(st['updatedReplicas']), num(st['availableReplicas']), age(o, now), c, i, selectorText(spec['selector'])];
    },
  },
  'apps/replicasets': {
    columns: [NAME, col('Desired', 'integer'), col('Current', 'integer'), col('Ready', 'integer'), AGE, col('Containers', 'string', 1), col('Images', 'string', 1), col('Selector', 'string', 1)],
    cells(o, now) {
      const spec = m(o['spec']);
      const st = m(o['status']);
      const [c, i] = containersAndImages(spec);
      return [o.metadata.name, num(spec['replicas']), num(st['replicas']), num(st['readyReplicas']), age(o, now), c, i, selectorText(spec['selector'])];
    },
  },
  'apps/daemonsets': {
    columns: [NAME, col('Desired', 'integer'), col('Current', 'integer'), col('Ready', 'integer'), col('Up-to-date', 'integer'), col('Available', 'integer'), col('Node Selector'), AGE, col('Containers', 'string', 1), col('Images', 'string', 1), col('Selector', 'string', 1)],
    cells(o, now) {
      const spec = m(o['spec']);
      const st = m(o['status']);
      const ns = m(m(m(spec['template'])['spec'])['nodeSelector']);
      const nsText = Object.keys(ns).length === 0 ? '<none>' : Object.keys(ns).sort().map((k) => `${k}=${String(ns[k])}`).join(',');
      const [c, i] = containersAndImages(spec);
      return [o.metadata.name, num(st['desiredNumberScheduled']), num(st['currentNumberScheduled']), num(st['numberReady']), num(st['updatedNumberScheduled']), num(st['numberAvailable']), nsText, age(o, now), c, i, selectorText(spec['selector'])];
    },
  },
  'discovery.k8s.io/endpointslices': {
    columns: [NAME, col('AddressType'), col('Ports'), col('Endpoints'), AGE],
    cells(o, now) {
      const ports = arr(o['ports']).map(m).map((p) => String(p['port'] ?? '<unset>'));
      const addrs = arr(o['endpoints']).flatMap((e) => arr(m(e)['addresses']).map(String));
      const at = addrs.length > 3 ? `${addrs.slice(0, 3).join(',')} + ${addrs.length - 3} more...` : addrs.length === 0 ? '<unset>' : addrs.join(',');
      return [o.metadata.name, String(o['addressType'] ?? ''), ports.length === 0 ? '<unset>' : ports.join(','), at, age(o, now)];
    },
  },
  'coordination.k8s.io/leases': {
    columns: [NAME, col('Holder'), AGE],
    cells: (o, now) => [o.metadata.name, String(m(o['spec'])['holderIdentity'] ?? ''), age(o, now)],
  },
  'policy/poddisruptionbudgets': {
    columns: [NAME, col('Min Available'), col('Max Unavailable'), col('Allowed Disruptions', 'integer'), AGE],
    cells(o, now) {
      const spec = m(o['spec']);
      return [o.metadata.name, spec['minAvailable'] === undefined ? 'N/A' : String(spec['minAvailable']), spec['maxUnavailable'] === undefined ? 'N/A' : String(spec['maxUnavailable']), num(m(o['status'])['disruptionsAllowed']), age(o, now)];
    },
  },
  'rbac.authorization.k8s.io/roles': CREATED_AT,
  'rbac.authorization.k8s.io/clusterroles': CREATED_AT,
  'rbac.authorization.k8s.io/rolebindings': bindingPrinter(),
  'rbac.authorization.k8s.io/clusterrolebindings': bindingPrinter(),
  'apiextensions.k8s.io/customresourcedefinitions': CREATED_AT,
};

function bindingPrinter(): Printer {
  return {
    columns: [NAME, col('Role'), AGE, col('Users', 'string', 1), col('Groups', 'string', 1), col('ServiceAccounts', 'string', 1)],
    cells(o, now) {
      const ref = m(o['roleRef']);
      return [o.metadata.name, `${String(ref['kind'])}/${String(ref['name'])}`, age(o, now), subjectsOf(o, 'User'), subjectsOf(o, 'Group'), subjectsOf(o, 'ServiceAccount')];
    },
  };
}

/**
 * A small JSONPath subset as printer columns use it: `.a.b`, `.a[0]`, `.a[*].b`,
 * `.a[?(@.type=="Ready")].status`. Returns every match.
 */
export function jsonPath(obj: unknown, path: string): unknown[] {
  let cur: unknown[] = [obj];
  const re = /\.([A-Za-z0-9_\-$]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*["']([^"']*)["']\)\]|\['([^']+)'\]/g;
  const text = path.trim().replace(/^\{|\}$/g, '').replace(/^\$/, '');
  let last = 0;
  for (const mt of text.matchAll(re)) {
    if (mt.index !== last) return [];
    last = mt.index + mt[0].length;
    const next: unknown[] = [];
    for (const c of cur) {
      if (mt[1] !== undefined || mt[5] !== undefined) {
        const k = mt[1] ?? mt[5]!;
        if (isMap(c) && c[k] !== undefined) next.push(c[k]);
      } else if (mt[2] !== undefined) {
        if (!Array.isArray(c)) continue;
        if (mt[2] === '*') next.push(...c);
        else if (c[Number(mt[2])] !== undefined) next.push(c[Number(mt[2])]);
      } else if (mt[3] !== undefined) {
        if (!Array.isArray(c)) continue;
        for (const e of c) {
          let v: unknown = e;
          for (const seg of mt[3].split('.')) v = isMap(v) ? v[seg] : undefined;
          if (v !== undefined && String(v) === mt[4]) next.push(e);
        }
      }
    }
    cur = next;
  }
  if (last !== text.length) return [];
  return cur;
}

function crPrinter(columns: JsonMap[]): Printer {
  const cols = columns.length > 0 ? columns : [{ name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }];
  return {
    columns: [NAME, ...cols.map((c) => ({ name: String(c['name']), type: String(c['type']), format: String(c['format'] ?? ''), description: String(c['description'] ?? ''), priority: num(c['priority']) }))],
    cells(o, now) {
      return [
        o.metadata.name,
        ...cols.map((c) => {
          const found = jsonPath(o, String(c['jsonPath'] ?? ''));
          if (found.length === 0) return null;
          const v = found[0];
          if (c['type'] === 'date') return since(v, now);
          if (c['type'] === 'integer' || c['type'] === 'number') return typeof v === 'number' ? v : null;
          if (c['type'] === 'boolean') return typeof v === 'boolean' ? v : null;
          return typeof v === 'string' ? v : found.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(',');
        }),
      ];
    },
  };
}

function printerFor(def: ResourceDef, version: string): Printer {
  if (def.crd !== undefined) return crPrinter(def.versions.find((v) => v.name === version)?.printerColumns ?? []);
  return PRINTERS[def.id] ?? CREATED_AT;
}

function partialMetadata(o: KubeObject): JsonMap {
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
}

export type IncludeObject = 'None' | 'Metadata' | 'Object';

/** A Table of `objects`; `withColumns` false omits columnDefinitions (later watch events). */
export function toTable(def: ResourceDef, version: string, objects: KubeObject[], list: { resourceVersion?: string; continue?: string; remainingItemCount?: number }, now: number, include: IncludeObject, withColumns = true): JsonMap {
  const p = printerFor(def, version);
  const rows = objects.map((o) => {
    const row: JsonMap = { cells: p.cells(o, now) };
    if (include === 'Metadata') row['object'] = partialMetadata(o);
    else if (include === 'Object') row['object'] = o;
    return row;
  });
  const meta: JsonMap = {};
  if (list.resourceVersion !== undefined) meta['resourceVersion'] = list.resourceVersion;
  if (list.continue) meta['continue'] = list.continue;
  if (list.remainingItemCount !== undefined) meta['remainingItemCount'] = list.remainingItemCount;
  // Later watch events carry no columns (Go's nil slice: null).
  return { kind: 'Table', apiVersion: 'meta.k8s.io/v1', metadata: meta, columnDefinitions: withColumns ? p.columns : null, rows };
}
