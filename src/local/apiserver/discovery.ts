/**
 * Discovery: /version (1.32, which the kubectl dispatcher on these machines keys on), legacy
 * discovery (/api, /apis, /api/v1, /apis/<g>/<v>) and aggregated discovery (apidiscovery.k8s.io
 * v2, and v2beta1 for older kubectls), chosen by the Accept header and echoed in Content-Type.
 */
import type { ResourceDef, ResourceTypes } from './resources.js';
import type { JsonMap } from './types.js';

export const KUBE_VERSION = { major: '1', minor: '32', gitVersion: 'v1.32.4' };

export function versionInfo(): JsonMap {
  return {
    major: KUBE_VERSION.major,
    minor: KUBE_VERSION.minor,
    gitVersion: KUBE_VERSION.gitVersion,
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2025-01-01T00:00:00Z',
    goVersion: 'go1.23.8',
    compiler: 'gc',
    platform: `linux/${process.arch === 'x64' ? 'amd64' : process.arch}`,
  };
}

function subresourceEntries(def: ResourceDef, version: string): Array<{ name: string; kind: string; group?: string; version?: string; verbs: string[] }> {
  const v = def.versions.find((x) => x.name === version);
  const out: Array<{ name: string; kind: string; group?: string; version?: string; verbs: string[] }> = [];
  if (v?.status) out.push({ name: 'status', kind: def.kind, verbs: ['get', 'patch', 'update'] });
  if (v?.scale) out.push({ name: 'scale', kind: 'Scale', group: 'autoscaling', version: 'v1', verbs: ['get', 'patch', 'update'] });
  if (def.token) out.push({ name: 'token', kind: 'TokenRequest', group: 'authentication.k8s.io', version: 'v1', verbs: ['create'] });
  if (def.finalize) out.push({ name: 'finalize', kind: def.kind, verbs: ['update'] });
  if (def.binding) out.push({ name: 'binding', kind: 'Binding', verbs: ['create'] });
  return out;
}

function servedAt(types: ResourceTypes, group: string, version: string): ResourceDef[] {
  return types.all().filter((d) => d.group === group && d.versions.some((v) => v.name === version));
}

export function apiVersions(serverAddress: string): JsonMap {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
}

export function apiGroupList(types: ResourceTypes): JsonMap {
  const groups = types
    .groups()
    .filter((g) => g.group !== '')
    .map((g) => {
      const versions = g.versions.map((v) => ({ groupVersion: `${g.group}/${v}`, version: v }));
      return { name: g.group, versions, preferredVersion: versions[0] };
    });
  return { kind: 'APIGroupList', apiVersion: 'v1', groups };
}

/** The APIResourceList of one group version, or undefined when it is not served. */
export function apiResourceList(types: ResourceTypes, group: string, version: string): JsonMap | undefined {
  const defs = servedAt(types, group, version);
  if (defs.length === 0) return undefined;
  const resources: JsonMap[] = [];
  for (const d of defs) {
    const r: JsonMap = { name: d.plural, singularName: d.singular, namespaced: d.namespaced, kind: d.kind, verbs: d.verbs };
    if (d.shortNames.length > 0) r['shortNames'] = d.shortNames;
    if (d.categories.length > 0) r['categories'] = d.categories;
    resources.push(r);
    for (const s of subresourceEntries(d, version)) {
      const sr: JsonMap = { name: `${d.plural}/${s.name}`, singularName: '', namespaced: d.namespaced, kind: s.kind, verbs: s.verbs };
      if (s.group !== undefined) {
        sr['group'] = s.group;
        sr['version'] = s.version;
      }
      resources.push(sr);
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group === '' ? version : `${group}/${version}`, resources };
}

/** Which aggregated discovery version an Accept header asks for, if any. */
export function aggregatedDiscoveryVersion(accept: string | undefined): 'v2' | 'v2beta1' | undefined {
  if (accept === undefined) return undefined;
  let best: 'v2' | 'v2beta1' | undefined;
  for (const part of accept.split(',')) {
    const params = new Map(
      part
        .split(';')
        .slice(1)
        .map((p) => p.trim().split('=') as [string, string]),
    );
    if (params.get('g') !== 'apidiscovery.k8s.io' || params.get('as') !== 'APIGroupDiscoveryList') continue;
    const v = params.get('v');
    if (v === 'v2') return 'v2';
    if (v === 'v2beta1') best ??= 'v2beta1';
  }
  return best;
}

export function aggregatedContentType(v: 'v2' | 'v2beta1'): string {
  return `application/json;g=apidiscovery.k8s.io;v=${v};as=APIGroupDiscoveryList`;
}

function discoveryVersion(types: ResourceTypes, group: string, version: string): JsonMap {
  const resources = servedAt(types, group, version).map((d) => {
    const r: JsonMap = {
      resource: d.plural,
      responseKind: { group: d.group, version, kind: d.kind },
      scope: d.namespaced ? 'Namespaced' : 'Cluster',
      singularResource: d.singular,
      verbs: d.verbs,
    };
    if (d.shortNames.length > 0) r['shortNames'] = d.shortNames;
    if (d.categories.length > 0) r['categories'] = d.categories;
    const subs = subresourceEntries(d, version).map((s) => ({
      subresource: s.name,
      responseKind: { group: s.group ?? d.group, version: s.version ?? version, kind: s.kind },
      verbs: s.verbs,
    }));
    if (subs.length > 0) r['subresources'] = subs;
    return r;
  });
  return { version, resources, freshness: 'Current' };
}

/** The aggregated document for `/api` (core) or `/apis` (every named group). */
export function aggregatedDiscovery(types: ResourceTypes, core: boolean, v: 'v2' | 'v2beta1'): JsonMap {
  const items = types
    .groups()
    .filter((g) => (core ? g.group === '' : g.group !== ''))
    .map((g) => ({ metadata: { name: g.group, creationTimestamp: null }, versions: g.versions.map((ver) => discoveryVersion(types, g.group, ver)) }));
  return { kind: 'APIGroupDiscoveryList', apiVersion: `apidiscovery.k8s.io/${v}`, metadata: {}, items };
}
