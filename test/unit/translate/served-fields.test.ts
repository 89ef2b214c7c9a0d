import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadManifests } from '../../../src/controller/source/manifests.js';
import { kindRef, type KubeObject } from '../../../src/controller/objects.js';
import { translate } from '../../../src/controller/translate/translate.js';
import { CONDITION_WARNING, childPattern, fieldTable, fieldWarning, type FieldTable } from '../../../src/controller/translate/field-warnings.js';
import { SERVED_FIELDS } from '../../../src/controller/translate/served-fields.js';

const FULL = fileURLToPath(new URL('../../../../test/fixtures/served-fields/full.yaml', import.meta.url));

/** The served patterns of `t` that `obj` sets (a value under a pattern counts for it). */
function patternsSet(t: FieldTable, obj: KubeObject): Set<string> {
  const hit = new Set<string>();
  const walk = (v: unknown, pattern: string): void => {
    if (v === undefined || v === null) return;
    if (t.served.has(pattern)) {
      hit.add(pattern);
      return;
    }
    if (Array.isArray(v)) v.forEach((x) => walk(x, `${pattern}[]`));
    else if (typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, childPattern(t, pattern, k));
  };
  walk(obj.spec, 'spec');
  return hit;
}

test('the full fixture sets every served field of every served kind and gets no field warning', async () => {
  const { objects } = await loadManifests([FULL]);
  const hit = new Map<string, Set<string>>();
  for (const o of objects) {
    const ref = kindRef(o);
    const t = fieldTable(ref);
    if (!t) continue;
    assert.equal(fieldWarning(o), undefined, `${o.kind} ${o.metadata.name}: ${JSON.stringify(fieldWarning(o))}`);
    const set = hit.get(ref) ?? new Set<string>();
    for (const p of patternsSet(t, o)) set.add(p);
    hit.set(ref, set);
  }
  for (const [ref, k] of SERVED_FIELDS) {
    if (k.ignoredBecause !== undefined) continue;
    const t = fieldTable(ref)!;
    const missing = [...t.served.keys()].filter((p) => !hit.get(ref)?.has(p));
    assert.deepEqual(missing, [], `${ref}: fields of the table the fixture never sets`);
  }
  const warnings = translate(objects).conditions.filter((c) => c.type === CONDITION_WARNING);
  assert.deepEqual(warnings, []);
});

const vs = (http: unknown[], extra: Record<string, unknown> = {}): KubeObject => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name: 'r', namespace: 'shop' },
  spec: { hosts: ['reviews'], http, ...extra },
});

test('fields Ambit does not serve are each named in Istio words; served ones are not', () => {
  const c = fieldWarning(
    vs([{ route: [{ destination: { host: 'reviews' }, weight: 100, headers: { request: { set: { a: '1' } } } }], mirrors: [{ destination: { host: 'm' } }], match: [{ uri: { exact: '/' }, statPrefix: 'b' }] }], {
      exportTo: ['.'],
    }),
  );
  assert.ok(c);
  assert.equal(c.type, 'Warning');
  assert.equal(c.reason, 'UnsupportedFields');
  assert.equal(c.objectKey, 'VirtualService/shop/r');
  const parts = c.message.split('; ');
  assert.deepEqual(parts.sort(), [
    'Warning: spec.exportTo is not supported',
    'Warning: spec.http[0].match[0].statPrefix is not supported',
    'Warning: spec.http[0].mirrors is not supported',
    'Warning: spec.http[0].route[0].headers is not supported',
  ]);
  assert.equal(fieldWarning(vs([{ route: [{ destination: { host: 'reviews' } }] }])), undefined);
});

test('a served field with a value Ambit does not serve is reported with the value', () => {
  const gw: KubeObject = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'Gateway',
    metadata: { name: 'g', namespace: 'shop' },
    spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 443, name: 'tls', protocol: 'TLS' }, hosts: ['*'], tls: { mode: 'AUTO_PASSTHROUGH' } }] },
  };
  assert.equal(fieldWarning(gw)?.message, 'Warning: spec.servers[0].tls.mode: value "AUTO_PASSTHROUGH" is not supported');
});

test('kinds with no effect are accepted with a warning naming what they set; user-keyed maps are walked as maps', () => {
  const sidecar: KubeObject = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'Sidecar',
    metadata: { name: 'default', namespace: 'shop' },
    spec: { egress: [{ hosts: ['./*'] }], outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } },
  };
  const c = fieldWarning(sidecar);
  assert.equal(c?.reason, 'Ignored');
  assert.match(c!.message, /^Warning: Sidecar shop\/default is accepted but has no effect: it configures sidecar proxies/);
  assert.match(c!.message, /ignored: spec\.egress; spec\.outboundTrafficPolicy$/);
  const pa: KubeObject = {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: { name: 'p', namespace: 'shop' },
    spec: { portLevelMtls: { '8080': { mode: 'STRICT' }, '9090': { mode: 'DISABLE', extra: 1 } } },
  };
  assert.equal(fieldWarning(pa)?.message, 'Warning: spec.portLevelMtls.9090.extra is not supported');
});

test('every kind Ambit reads from Istio or Gateway API is in the served-fields table', async () => {
  const { KINDS } = await import('../../../src/controller/objects.js');
  const mesh = KINDS.filter((k) => (!k.builtin || k.kind === 'Ingress') && k.kind !== 'GatewayClass');
  const absent = mesh.map((k) => k.ref).filter((ref) => !SERVED_FIELDS.has(ref));
  assert.deepEqual(absent, []);
});

test('translate() lists each object\'s field warning among its conditions, one per object', () => {
  const objects = [vs([{ route: [{ destination: { host: 'reviews' } }] }], { exportTo: ['*'] }), { apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 't', namespace: 'shop' }, spec: {} }];
  const warnings = translate(objects).conditions.filter((c) => c.type === CONDITION_WARNING);
  assert.deepEqual(
    warnings.map((w) => w.objectKey),
    ['Sidecar/shop/t', 'VirtualService/shop/r'],
  );
});
