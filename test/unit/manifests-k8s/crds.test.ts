import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { ALL_CRDS, renderCrdFiles } from '../../../src/crds/index.js';
import { CRD_DIR, diffCrdDir } from '../../../src/crds/files.js';
import { checkCrd, validateCustomResource, type CustomResourceDefinition } from '../../../src/shared/crd.js';
import { checkStructuralSchema } from '../../../src/shared/openapi-schema.js';
import { formatIssue } from '../../../src/shared/validate.js';
import { KINDS } from '../../../src/controller/objects.js';

const REPO = fileURLToPath(new URL('../../../../', import.meta.url));

/**
 * What Istio's and Gateway API's own CRDs declare (group, plural, scope, served versions, storage
 * version), which ours must match so that either set can replace the other over existing objects.
 */
const UPSTREAM: Array<{ kind: string; group: string; plural: string; scope: string; versions: string[]; storage: string; shortNames?: string[] }> = [
  { kind: 'AuthorizationPolicy', group: 'security.istio.io', plural: 'authorizationpolicies', scope: 'Namespaced', versions: ['v1', 'v1beta1'], storage: 'v1beta1' },
  { kind: 'PeerAuthentication', group: 'security.istio.io', plural: 'peerauthentications', scope: 'Namespaced', versions: ['v1', 'v1beta1'], storage: 'v1beta1', shortNames: ['pa'] },
  { kind: 'RequestAuthentication', group: 'security.istio.io', plural: 'requestauthentications', scope: 'Namespaced', versions: ['v1', 'v1beta1'], storage: 'v1beta1', shortNames: ['ra'] },
  { kind: 'VirtualService', group: 'networking.istio.io', plural: 'virtualservices', scope: 'Namespaced', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1beta1', shortNames: ['vs'] },
  { kind: 'DestinationRule', group: 'networking.istio.io', plural: 'destinationrules', scope: 'Namespaced', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1beta1', shortNames: ['dr'] },
  { kind: 'Gateway', group: 'networking.istio.io', plural: 'gateways', scope: 'Namespaced', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1beta1', shortNames: ['gw'] },
  { kind: 'ServiceEntry', group: 'networking.istio.io', plural: 'serviceentries', scope: 'Namespaced', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1beta1', shortNames: ['se'] },
  { kind: 'Sidecar', group: 'networking.istio.io', plural: 'sidecars', scope: 'Namespaced', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1beta1' },
  { kind: 'WorkloadEntry', group: 'networking.istio.io', plural: 'workloadentries', scope: 'Namespaced', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1beta1', shortNames: ['we'] },
  { kind: 'WorkloadGroup', group: 'networking.istio.io', plural: 'workloadgroups', scope: 'Namespaced', versions: ['v1', 'v1alpha3', 'v1beta1'], storage: 'v1beta1', shortNames: ['wg'] },
  { kind: 'EnvoyFilter', group: 'networking.istio.io', plural: 'envoyfilters', scope: 'Namespaced', versions: ['v1alpha3'], storage: 'v1alpha3' },
  { kind: 'Telemetry', group: 'telemetry.istio.io', plural: 'telemetries', scope: 'Namespaced', versions: ['v1', 'v1alpha1'], storage: 'v1alpha1', shortNames: ['telemetry'] },
  { kind: 'GatewayClass', group: 'gateway.networking.k8s.io', plural: 'gatewayclasses', scope: 'Cluster', versions: ['v1', 'v1beta1'], storage: 'v1', shortNames: ['gc'] },
  { kind: 'Gateway', group: 'gateway.networking.k8s.io', plural: 'gateways', scope: 'Namespaced', versions: ['v1', 'v1beta1'], storage: 'v1', shortNames: ['gtw'] },
  { kind: 'HTTPRoute', group: 'gateway.networking.k8s.io', plural: 'httproutes', scope: 'Namespaced', versions: ['v1', 'v1beta1'], storage: 'v1' },
  { kind: 'GRPCRoute', group: 'gateway.networking.k8s.io', plural: 'grpcroutes', scope: 'Namespaced', versions: ['v1', 'v1alpha2'], storage: 'v1' },
  { kind: 'TCPRoute', group: 'gateway.networking.k8s.io', plural: 'tcproutes', scope: 'Namespaced', versions: ['v1alpha2'], storage: 'v1alpha2' },
  { kind: 'TLSRoute', group: 'gateway.networking.k8s.io', plural: 'tlsroutes', scope: 'Namespaced', versions: ['v1alpha2'], storage: 'v1alpha2' },
  { kind: 'ReferenceGrant', group: 'gateway.networking.k8s.io', plural: 'referencegrants', scope: 'Namespaced', versions: ['v1beta1', 'v1alpha2'], storage: 'v1beta1', shortNames: ['refgrant'] },
];

function crdFor(group: string, kind: string): CustomResourceDefinition | undefined {
  return ALL_CRDS.find((c) => c.spec.group === group && c.spec.names.kind === kind);
}

test('daemonset/crds/ holds exactly what src/crds/ renders (run `npm run gen:crds` after changing a schema)', async () => {
  const differ = await diffCrdDir(CRD_DIR, renderCrdFiles());
  assert.deepEqual(differ, [], `out of date: ${differ.join(', ')}`);
});

test('every CRD passes the API server\'s checks: structural schemas, names, exactly one storage version', () => {
  assert.equal(ALL_CRDS.length, UPSTREAM.length);
  for (const c of ALL_CRDS) {
    const issues = checkCrd(c, c.metadata.name);
    assert.deepEqual(issues.map(formatIssue), [], c.metadata.name);
    assert.equal(c.spec.versions.filter((v) => v.storage).length, 1, `${c.metadata.name}: one storage version`);
    for (const v of c.spec.versions) assert.deepEqual(checkStructuralSchema(v.schema.openAPIV3Schema), [], `${c.metadata.name} ${v.name}`);
  }
});

test('group, plural, scope, served and storage versions and short names match Istio\'s and Gateway API\'s CRDs', () => {
  for (const u of UPSTREAM) {
    const c = crdFor(u.group, u.kind);
    assert.ok(c, `${u.kind}.${u.group} is shipped`);
    assert.equal(c.metadata.name, `${u.plural}.${u.group}`);
    assert.equal(c.spec.names.plural, u.plural);
    assert.equal(c.spec.scope, u.scope, `${u.kind} scope`);
    assert.deepEqual(c.spec.versions.map((v) => v.name).sort(), [...u.versions].sort(), `${u.kind} versions`);
    assert.ok(c.spec.versions.every((v) => v.served), `${u.kind}: every version is served`);
    assert.equal(c.spec.versions.find((v) => v.storage)?.name, u.storage, `${u.kind} storage version`);
    assert.deepEqual(c.spec.names.shortNames ?? [], u.shortNames ?? [], `${u.kind} short names`);
  }
});

test('every version of a CRD has the same schema (no conversion webhook), a status subresource when it has status, and printer columns', () => {
  for (const c of ALL_CRDS) {
    const first = JSON.stringify(c.spec.versions[0]!.schema);
    for (const v of c.spec.versions) {
      assert.equal(JSON.stringify(v.schema), first, `${c.metadata.name} ${v.name} schema`);
      const hasStatus = v.schema.openAPIV3Schema.properties?.['status'] !== undefined;
      assert.equal(v.subresources?.status !== undefined, hasStatus, `${c.metadata.name} ${v.name} status subresource`);
      assert.ok((v.additionalPrinterColumns ?? []).some((col) => col.name === 'Age'), `${c.metadata.name} has an Age column`);
    }
  }
  // The kinds a user asks `kubectl get` about most show what matters at a glance.
  const columns = (group: string, kind: string): string[] => crdFor(group, kind)!.spec.versions[0]!.additionalPrinterColumns!.map((col) => col.name);
  assert.deepEqual(columns('networking.istio.io', 'VirtualService'), ['Gateways', 'Hosts', 'Age']);
  assert.deepEqual(columns('gateway.networking.k8s.io', 'Gateway'), ['Class', 'Address', 'Programmed', 'Age']);
  assert.deepEqual(columns('security.istio.io', 'PeerAuthentication'), ['Mode', 'Age']);
});

test('every CRD kind the controller reads (objects.ts) has a CRD serving each version it accepts', () => {
  const crdKinds = KINDS.filter((k) => !k.builtin);
  assert.ok(crdKinds.length >= 9);
  for (const k of crdKinds) {
    const c = crdFor(k.group, k.kind);
    assert.ok(c, `${k.kind}.${k.group} has a CRD`);
    assert.equal(c.spec.scope === 'Namespaced', k.namespaced, `${k.kind} scope`);
    for (const v of k.versions) assert.ok(c.spec.versions.some((x) => x.name === v && x.served), `${k.kind}.${k.group} serves ${v}`);
  }
});

/** Every document of a manifest file (YAML streams, JSON, List items expanded). */
function objectsOf(file: string): Array<Record<string, unknown>> {
  const text = readFileSync(file, 'utf8');
  const docs: unknown[] = file.endsWith('.json') ? [JSON.parse(text)] : parseAllDocuments(text).map((d) => d.toJS());
  const out: Array<Record<string, unknown>> = [];
  for (const d of docs) {
    if (typeof d !== 'object' || d === null) continue;
    const o = d as Record<string, unknown>;
    if (typeof o['kind'] === 'string' && o['kind'].endsWith('List') && Array.isArray(o['items'])) out.push(...(o['items'] as Array<Record<string, unknown>>));
    else out.push(o);
  }
  return out;
}

function manifestFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'invalid') out.push(...manifestFiles(p));
    } else if (/\.(ya?ml|json)$/.test(name)) out.push(p);
  }
  return out;
}

test('the project\'s example manifests (examples/, test/fixtures/) validate against the CRD schemas', () => {
  const files = [...manifestFiles(join(REPO, 'examples')), ...manifestFiles(join(REPO, 'test/fixtures'))];
  const problems: string[] = [];
  const seen = new Set<string>();
  let checked = 0;
  for (const file of files) {
    let objects: Array<Record<string, unknown>>;
    try {
      objects = objectsOf(file);
    } catch {
      continue; // Not a manifest (fixture data of another kind).
    }
    for (const o of objects) {
      const apiVersion = String(o['apiVersion'] ?? '');
      const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
      const c = crdFor(group, String(o['kind']));
      if (!c) continue;
      checked++;
      seen.add(`${o['kind']}.${group}`);
      for (const issue of validateCustomResource(o, c)) {
        const meta = o['metadata'] as { name?: string } | undefined;
        problems.push(`${relative(REPO, file)}: ${String(o['kind'])} ${meta?.name ?? '?'}: ${formatIssue(issue)}`);
      }
    }
  }
  assert.deepEqual(problems, []);
  assert.ok(checked >= 30, `validated ${checked} custom resources`);
  for (const kind of ['VirtualService.networking.istio.io', 'DestinationRule.networking.istio.io', 'Gateway.networking.istio.io', 'AuthorizationPolicy.security.istio.io', 'PeerAuthentication.security.istio.io', 'Gateway.gateway.networking.k8s.io', 'HTTPRoute.gateway.networking.k8s.io', 'GRPCRoute.gateway.networking.k8s.io']) {
    assert.ok(seen.has(kind), `the examples include a ${kind}`);
  }
});

test('the schemas reject what Istio\'s and Gateway API\'s would: wrong types, unknown fields, bad enums, missing required fields', () => {
  const vs = crdFor('networking.istio.io', 'VirtualService')!;
  const bad = (o: Record<string, unknown>, c: CustomResourceDefinition): string[] => validateCustomResource(o, c).map((i) => i.path);
  assert.deepEqual(bad({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'a' }, spec: { hosts: ['r'], http: [{ route: [{ destination: { host: 'r' }, weight: 'ninety' }] }] } }, vs), ['spec.http[0].route[0].weight']);
  assert.deepEqual(bad({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'a' }, spec: { hosts: ['r'], htpp: [] } }, vs), ['spec.htpp']);
  assert.deepEqual(bad({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'a' }, spec: { http: [{ route: [{ weight: 10 }] }] } }, vs), ['spec.http[0].route[0].destination']);
  assert.deepEqual(bad({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'a' } }, vs), ['spec']);
  const pa = crdFor('security.istio.io', 'PeerAuthentication')!;
  assert.deepEqual(bad({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'a' }, spec: { mtls: { mode: 'STRICTEST' } } }, pa), ['spec.mtls.mode']);
  const gw = crdFor('gateway.networking.k8s.io', 'Gateway')!;
  assert.deepEqual(
    bad({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'a' }, spec: { gatewayClassName: 'x', listeners: [{ name: 'l', port: 70000, protocol: 'HTTP' }, { name: 'l', port: 80, protocol: 'HTTP' }] } }, gw).sort(),
    ['spec.listeners[0].port', 'spec.listeners[1]'],
  );
  // A Gateway's status written by the controller validates, conditions included.
  const status = { conditions: [{ type: 'Programmed', status: 'True', reason: 'Programmed', message: '', lastTransitionTime: '2026-12-01T00:00:00Z', observedGeneration: 1 }], addresses: [{ type: 'IPAddress', value: '10.0.0.1' }] };
  assert.deepEqual(bad({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'a' }, spec: { gatewayClassName: 'x', listeners: [{ name: 'l', port: 80, protocol: 'HTTP' }] }, status }, gw), []);
});
