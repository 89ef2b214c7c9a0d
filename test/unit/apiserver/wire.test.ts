/** Kubernetes protobuf bodies, service-account JWTs, Tables and server-side apply field ownership. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { decodeKubernetesProtobuf } from '../../../src/local/apiserver/proto/decode.js';
import { TokenSigner } from '../../../src/local/apiserver/tokens.js';
import { humanDuration, jsonPath, toTable } from '../../../src/local/apiserver/tables.js';
import { ResourceTypes } from '../../../src/local/apiserver/resources.js';
import { applyFieldManagement, applyServerSideApply } from '../../../src/local/apiserver/managed-fields.js';
import { builtinMergeSchema } from '../../../src/local/apiserver/patch-strategic.js';
import { ApiError } from '../../../src/local/apiserver/status.js';

// A minimal protobuf writer for hand-built test messages.
function varint(n: number): Buffer {
  const out: number[] = [];
  let v = BigInt.asUintN(64, BigInt(n));
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}
const str = (field: number, s: string | Buffer): Buffer => {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  return Buffer.concat([varint((field << 3) | 2), varint(b.length), b]);
};
const num = (field: number, n: number): Buffer => Buffer.concat([varint(field << 3), varint(n)]);
const envelope = (apiVersion: string, kind: string, raw: Buffer): Buffer =>
  Buffer.concat([Buffer.from('k8s\0', 'binary'), str(1, Buffer.concat([str(1, apiVersion), str(2, kind)])), str(2, raw)]);

test('protobuf bodies decode to the JSON form; unknown fields are errors', () => {
  const meta = Buffer.concat([str(1, 'cfg'), str(2, ''), str(11, Buffer.concat([str(1, 'app'), str(2, 'web')])), str(8, Buffer.concat([num(1, -62135596800)]))]);
  const cm = Buffer.concat([str(1, meta), str(2, Buffer.concat([str(1, 'k'), str(2, 'v')])), num(4, 1)]);
  assert.deepEqual(decodeKubernetesProtobuf(envelope('v1', 'ConfigMap', cm)), {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'cfg', labels: { app: 'web' } },
    data: { k: 'v' },
    immutable: true,
  });
  const spec = Buffer.concat([num(1, 0), str(2, str(1, Buffer.concat([str(1, 'app'), str(2, 'x')])))]);
  const d = decodeKubernetesProtobuf(envelope('apps/v1', 'Deployment', Buffer.concat([str(1, str(1, 'd')), str(2, spec)]))) as any;
  assert.equal(d.spec.replicas, 0, 'an explicit zero of a pointer field is kept');
  assert.deepEqual(d.spec.selector, { matchLabels: { app: 'x' } });
  assert.throws(() => decodeKubernetesProtobuf(envelope('v1', 'ConfigMap', num(99, 1))), (e: unknown) => e instanceof ApiError && /field number 99 of k8s.io.api.core.v1.ConfigMap is not known/.test(e.message));
  assert.throws(() => decodeKubernetesProtobuf(envelope('example.com/v1', 'Widget', Buffer.alloc(0))), ApiError);
  assert.throws(() => decodeKubernetesProtobuf(Buffer.from('{"json":true}')), ApiError);
  assert.throws(() => decodeKubernetesProtobuf(Buffer.concat([Buffer.from('k8s\0', 'binary'), Buffer.from([0x0a, 0xff])])), ApiError);
});

test('service-account JWTs: claims, signature, audience, expiry', () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  const signer = new TokenSigner(privateKey, publicKey, 'https://kubernetes.default.svc.cluster.local');
  const now = Date.parse('2026-01-01T00:00:00Z');
  const { token, claims } = signer.issue({ namespace: 'ns', serviceAccount: { name: 'sa', uid: 'u1' }, audiences: ['istio-ca'], expirationSeconds: 600, pod: { name: 'p', uid: 'u2' }, now });
  assert.equal(claims.sub, 'system:serviceaccount:ns:sa');
  assert.equal(claims.exp - claims.iat, 600);
  const header = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString());
  assert.deepEqual(header, { alg: 'RS256', kid: signer.kid });
  const ok = signer.verify(token, ['istio-ca'], now + 1000);
  assert.ok(ok.ok && ok.claims['kubernetes.io'].pod?.name === 'p');
  assert.deepEqual(signer.verify(token, ['other'], now), { ok: false, error: 'invalid bearer token, token audiences ["istio-ca"] is invalid for the target audiences ["other"]' });
  assert.deepEqual(signer.verify(token, ['istio-ca'], now + 661_000), { ok: false, error: 'invalid bearer token, service account token has expired' });
  assert.equal(signer.verify(token, ['istio-ca'], now + 659_000).ok, true, 'within the 60 s leeway');
  const other = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  const foreign = new TokenSigner(other.privateKey, other.publicKey, signer.issuer).issue({ namespace: 'ns', serviceAccount: { name: 'sa', uid: 'u1' }, audiences: ['istio-ca'], expirationSeconds: 600, now }).token;
  assert.equal(signer.verify(foreign, ['istio-ca'], now).ok, false);
});

test('Tables: ages as kubectl prints them, JSONPath for printer columns, pod status', () => {
  const cases: Array<[number, string]> = [[5_000, '5s'], [119_000, '119s'], [125_000, '2m5s'], [600_000, '10m'], [3 * 3600_000 + 60_000, '3h1m'], [9 * 3600_000, '9h'], [50 * 3600_000, '2d2h'], [10 * 86400_000, '10d'], [800 * 86400_000, '2y70d'], [-5_000, '<invalid>']];
  for (const [ms, want] of cases) assert.equal(humanDuration(ms), want, String(ms));
  const obj = { status: { conditions: [{ type: 'Ready', status: 'True' }, { type: 'Synced', status: 'False' }] }, spec: { list: [{ n: 1 }, { n: 2 }] } };
  assert.deepEqual(jsonPath(obj, '.status.conditions[?(@.type=="Synced")].status'), ['False']);
  assert.deepEqual(jsonPath(obj, '.spec.list[*].n'), [1, 2]);
  assert.deepEqual(jsonPath(obj, '.spec.list[1].n'), [2]);
  assert.deepEqual(jsonPath(obj, '.spec.missing'), []);
  const types = new ResourceTypes();
  const pods = types.byId('/pods')!;
  const now = Date.now();
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', creationTimestamp: new Date(now - 65_000).toISOString() },
    spec: { nodeName: 'n1', containers: [{ name: 'a' }, { name: 'b' }] },
    status: { phase: 'Running', podIP: '10.0.0.9', containerStatuses: [{ name: 'a', ready: true, restartCount: 1, state: { running: {} } }, { name: 'b', ready: false, restartCount: 0, state: { waiting: { reason: 'CrashLoopBackOff' } } }] },
  };
  const t = toTable(pods, 'v1', [pod], { resourceVersion: '7' }, now, 'Metadata') as any;
  assert.deepEqual(t.columnDefinitions.filter((c: any) => c.priority === 0).map((c: any) => c.name), ['Name', 'Ready', 'Status', 'Restarts', 'Age']);
  assert.deepEqual(t.rows[0].cells, ['p', '1/2', 'CrashLoopBackOff', '1', '65s', '10.0.0.9', 'n1', '<none>', '<none>']);
  assert.equal(t.rows[0].object.kind, 'PartialObjectMetadata');
});

test('server-side apply: ownership, conflicts, removal of fields no longer applied', () => {
  const schema = builtinMergeSchema('V1ConfigMap');
  const base: any = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: '1', b: '2' } };
  applyFieldManagement(undefined, base, { fieldManager: 'editor' }, 'v1', 0, schema);
  assert.deepEqual(base.metadata.managedFields[0].fieldsV1, { 'f:data': { 'f:a': {}, 'f:b': {} } });
  const applied: any = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: 'mine', c: '3' } };
  assert.throws(() => applyServerSideApply(base, applied, { fieldManager: 'deployer' }, schema, 'v1', 0), (e: unknown) => e instanceof ApiError && e.code === 409 && e.message === 'Apply failed with 1 conflict: conflict with "editor" using v1: .data.a');
  const forced = applyServerSideApply(base, applied, { fieldManager: 'deployer', force: true }, schema, 'v1', 0) as any;
  assert.deepEqual(forced.data, { a: 'mine', b: '2', c: '3' });
  const owners = Object.fromEntries(forced.metadata.managedFields.map((m: any) => [m.manager, Object.keys(m.fieldsV1['f:data']).sort()]));
  assert.deepEqual(owners, { editor: ['f:b'], deployer: ['f:a', 'f:c'] });
  const again = applyServerSideApply(forced, { ...applied, data: { a: 'mine' } }, { fieldManager: 'deployer' }, schema, 'v1', 0) as any;
  assert.deepEqual(again.data, { a: 'mine', b: '2' }, 'c was applied before and is not now: removed');
  const shared = applyServerSideApply(base, { ...applied, data: { b: '2' } }, { fieldManager: 'deployer' }, schema, 'v1', 0) as any;
  assert.deepEqual(shared.data, { a: '1', b: '2' }, 'the same value co-owns without conflict');
});
