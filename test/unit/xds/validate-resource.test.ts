import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TYPE_AUTHORIZATION, TYPE_SERVICE, TYPE_WORKLOAD, authorizationResourceName, serviceResourceName, workloadResourceName, type ResourceType } from '../../../src/shared/resources.js';
import { formatIssue } from '../../../src/shared/validate.js';
import { cidrProblem } from '../../../src/shared/validate.js';
import { validateResource } from '../../../src/shared/validate-resource.js';
import { canonicalJson } from '../../../src/shared/xds/resource-codec.js';
import { authorization, service, workload } from './fixtures.js';

test('valid fixtures pass and round-trip through JSON unchanged', () => {
  const cases: Array<[ResourceType, string, object]> = [
    [TYPE_WORKLOAD, workloadResourceName(workload()), workload()],
    [TYPE_SERVICE, serviceResourceName(service()), service()],
    [TYPE_AUTHORIZATION, authorizationResourceName(authorization()), authorization()],
  ];
  for (const [type, name, body] of cases) {
    const r = validateResource(type, name, JSON.parse(JSON.stringify(body)));
    assert.deepEqual(r.issues, [], `${type} fixture should be valid`);
    assert.ok(r.value);
    assert.equal(canonicalJson(r.value), canonicalJson(body), 'normalised value equals the input');
    const again = validateResource(type, name, JSON.parse(JSON.stringify(r.value)));
    assert.deepEqual(again.issues, [], 'normalised value re-validates');
  }
});

test('optional fields: waypoint, locality, netns are accepted and kept', () => {
  const w = workload('web-2', 'default', {
    waypoint: { name: 'default/waypoint', namespace: 'default', addresses: ['10.0.9.1', 'fd00::9'], identity: 'spiffe://cluster.local/ns/default/sa/waypoint' },
    locality: { region: 'eu', zone: 'eu-1a', subzone: '' },
    netns: '/var/run/netns/pod1',
    addresses: ['10.0.1.8', 'fd00::8'],
  });
  const r = validateResource(TYPE_WORKLOAD, w.uid, w);
  assert.deepEqual(r.issues, []);
  assert.equal(r.value && 'netns' in r.value ? r.value.netns : undefined, '/var/run/netns/pod1');
});

test('unknown fields are dropped from the normalised value, absent match lists filled in', () => {
  const a = authorization() as unknown as Record<string, unknown>;
  a['futureField'] = 1;
  const rule = { clauses: [{ matches: [{ destinationPorts: [443] }] }] };
  a['rules'] = [rule];
  const r = validateResource(TYPE_AUTHORIZATION, 'default/allow-frontend', a);
  assert.deepEqual(r.issues, []);
  assert.ok(r.value);
  assert.equal('futureField' in r.value, false);
  const m = (r.value as unknown as { rules: Array<{ clauses: Array<{ matches: Array<Record<string, unknown>> }> }> }).rules[0]?.clauses[0]?.matches[0];
  assert.deepEqual(m?.['principals'], []);
  assert.deepEqual(m?.['destinationPorts'], [443]);
});

interface Case {
  what: string;
  type: ResourceType;
  name?: string;
  body: () => unknown;
  path: string;
  value?: unknown;
}

const W = workload();
const S = service();
const A = authorization();
const wName = W.uid;
const sName = serviceResourceName(S);
const aName = authorizationResourceName(A);

const cases: Case[] = [
  { what: 'workload body not an object', type: TYPE_WORKLOAD, name: wName, body: () => 'nope', path: `workload[${wName}]`, value: 'nope' },
  { what: 'bad pod IP', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), addresses: ['10.0.1.300'] }), path: `workload[${wName}].addresses[0]`, value: '10.0.1.300' },
  { what: 'duplicate pod IP', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), addresses: ['10.0.1.7', '10.0.1.7'] }), path: `workload[${wName}].addresses[1]`, value: '10.0.1.7' },
  { what: 'uid differs from resource name', type: TYPE_WORKLOAD, name: 'cluster1//v1/Pod/default/other', body: () => workload(), path: `workload[cluster1//v1/Pod/default/other].uid`, value: wName },
  { what: 'uid not the six-part form', type: TYPE_WORKLOAD, name: 'abc', body: () => ({ ...workload(), uid: 'abc' }), path: 'workload[abc].uid', value: 'abc' },
  { what: 'uid names another pod', type: TYPE_WORKLOAD, name: 'cluster1//v1/Pod/default/x', body: () => ({ ...workload(), uid: 'cluster1//v1/Pod/default/x' }), path: 'workload[cluster1//v1/Pod/default/x].uid', value: 'cluster1//v1/Pod/default/x' },
  { what: 'namespace not a DNS label', type: TYPE_WORKLOAD, name: 'cluster1//v1/Pod/Bad_NS/web-1', body: () => workload('web-1', 'Bad_NS'), path: 'workload[cluster1//v1/Pod/Bad_NS/web-1].namespace', value: 'Bad_NS' },
  { what: 'tunnel protocol enum', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), tunnelProtocol: 'hbone' }), path: `workload[${wName}].tunnelProtocol`, value: 'hbone' },
  { what: 'workload type enum', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), workloadType: 'statefulset' }), path: `workload[${wName}].workloadType`, value: 'statefulset' },
  { what: 'status enum', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), status: 'healthy' }), path: `workload[${wName}].status`, value: 'healthy' },
  { what: 'peer authentication enum', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), peerAuthentication: 'DISABLE' }), path: `workload[${wName}].peerAuthentication`, value: 'DISABLE' },
  { what: 'service target port 0', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), services: { 'default/web.default.svc.cluster.local': [{ servicePort: 80, targetPort: 0 }] } }), path: `workload[${wName}].services["default/web.default.svc.cluster.local"][0].targetPort`, value: 0 },
  { what: 'service key without namespace', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), services: { web: [] } }), path: `workload[${wName}].services["web"]`, value: 'web' },
  { what: 'port-level mTLS key not a port', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), portPeerAuthentication: { '70000': 'STRICT' } }), path: `workload[${wName}].portPeerAuthentication["70000"]`, value: '70000' },
  { what: 'port-level mTLS mode', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), portPeerAuthentication: { '8080': 'OFF' } }), path: `workload[${wName}].portPeerAuthentication["8080"]`, value: 'OFF' },
  { what: 'label value not a string', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), labels: { app: 3 } }), path: `workload[${wName}].labels.app`, value: 3 },
  { what: 'missing service account', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), serviceAccount: undefined }), path: `workload[${wName}].serviceAccount`, value: undefined },
  { what: 'waypoint identity not SPIFFE', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), waypoint: { name: 'waypoint', namespace: 'default', addresses: [], identity: 'waypoint' } }), path: `workload[${wName}].waypoint.identity`, value: 'waypoint' },
  { what: 'waypoint name in another namespace', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), waypoint: { name: 'other/waypoint', namespace: 'default', addresses: [], identity: 'spiffe://cluster.local/ns/default/sa/wp' } }), path: `workload[${wName}].waypoint.name`, value: 'other/waypoint' },
  { what: 'authorization reference form', type: TYPE_WORKLOAD, name: wName, body: () => ({ ...workload(), authorizationPolicies: ['just-a-name'] }), path: `workload[${wName}].authorizationPolicies[0]`, value: 'just-a-name' },

  { what: 'service port 0', type: TYPE_SERVICE, name: sName, body: () => ({ ...service(), ports: [{ name: 'http', port: 0, targetPort: 8080, protocol: 'http' }] }), path: `service[${sName}].ports[0].port`, value: 0 },
  { what: 'service port 65536', type: TYPE_SERVICE, name: sName, body: () => ({ ...service(), ports: [{ name: 'http', port: 80, targetPort: 65536, protocol: 'http' }] }), path: `service[${sName}].ports[0].targetPort`, value: 65536 },
  { what: 'service port not an integer', type: TYPE_SERVICE, name: sName, body: () => ({ ...service(), ports: [{ name: 'http', port: '80', targetPort: 8080, protocol: 'http' }] }), path: `service[${sName}].ports[0].port`, value: '80' },
  { what: 'duplicate service port', type: TYPE_SERVICE, name: sName, body: () => ({ ...service(), ports: [{ name: 'a', port: 80, targetPort: 1, protocol: 'tcp' }, { name: 'b', port: 80, targetPort: 2, protocol: 'tcp' }] }), path: `service[${sName}].ports[1].port`, value: 80 },
  { what: 'protocol upper case', type: TYPE_SERVICE, name: sName, body: () => ({ ...service(), ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'HTTP' }] }), path: `service[${sName}].ports[0].protocol`, value: 'HTTP' },
  { what: 'bad VIP', type: TYPE_SERVICE, name: sName, body: () => ({ ...service(), vips: ['10.96.0'] }), path: `service[${sName}].vips[0]`, value: '10.96.0' },
  { what: 'resource name not namespace/hostname', type: TYPE_SERVICE, name: 'default/web', body: () => service(), path: 'service[default/web].hostname', value: S.hostname },
  { what: 'hostname of another service', type: TYPE_SERVICE, name: 'default/api.default.svc.cluster.local', body: () => ({ ...service(), hostname: 'api.default.svc.cluster.local' }), path: 'service[default/api.default.svc.cluster.local].hostname', value: 'api.default.svc.cluster.local' },
  { what: 'routing preference enum', type: TYPE_SERVICE, name: sName, body: () => ({ ...service(), routingPreference: ['rack'] }), path: `service[${sName}].routingPreference[0]`, value: 'rack' },
  { what: 'endpoints not an array', type: TYPE_SERVICE, name: sName, body: () => ({ ...service(), endpoints: 'web-1' }), path: `service[${sName}].endpoints`, value: 'web-1' },

  { what: 'action enum', type: TYPE_AUTHORIZATION, name: aName, body: () => ({ ...authorization(), action: 'allow' }), path: `authorization[${aName}].action`, value: 'allow' },
  { what: 'scope enum', type: TYPE_AUTHORIZATION, name: aName, body: () => ({ ...authorization(), scope: 'mesh' }), path: `authorization[${aName}].scope`, value: 'mesh' },
  { what: 'resource name mismatch', type: TYPE_AUTHORIZATION, name: 'default/other', body: () => authorization(), path: 'authorization[default/other].name', value: A.name },
  { what: 'destination port 0', type: TYPE_AUTHORIZATION, name: aName, body: () => ({ ...authorization(), rules: [{ clauses: [{ matches: [{ destinationPorts: [0] }] }] }] }), path: `authorization[${aName}].rules[0].clauses[0].matches[0].destinationPorts[0]`, value: 0 },
  { what: 'CIDR prefix too long', type: TYPE_AUTHORIZATION, name: aName, body: () => ({ ...authorization(), rules: [{ clauses: [{ matches: [{ sourceIps: ['10.0.0.0/33'] }] }] }] }), path: `authorization[${aName}].rules[0].clauses[0].matches[0].sourceIps[0]`, value: '10.0.0.0/33' },
  { what: 'CIDR not an address', type: TYPE_AUTHORIZATION, name: aName, body: () => ({ ...authorization(), rules: [{ clauses: [{ matches: [{ notDestinationIps: ['host/8'] }] }] }] }), path: `authorization[${aName}].rules[0].clauses[0].matches[0].notDestinationIps[0]`, value: 'host/8' },
  { what: 'string match with two keys', type: TYPE_AUTHORIZATION, name: aName, body: () => ({ ...authorization(), rules: [{ clauses: [{ matches: [{ principals: [{ exact: 'a', prefix: 'b' }] }] }] }] }), path: `authorization[${aName}].rules[0].clauses[0].matches[0].principals[0]`, value: { exact: 'a', prefix: 'b' } },
  { what: 'presence not true', type: TYPE_AUTHORIZATION, name: aName, body: () => ({ ...authorization(), rules: [{ clauses: [{ matches: [{ notPrincipals: [{ presence: false }] }] }] }] }), path: `authorization[${aName}].rules[0].clauses[0].matches[0].notPrincipals[0].presence`, value: false },
  { what: 'dryRun not boolean', type: TYPE_AUTHORIZATION, name: aName, body: () => ({ ...authorization(), dryRun: 'yes' }), path: `authorization[${aName}].dryRun`, value: 'yes' },
  { what: 'rules not an array', type: TYPE_AUTHORIZATION, name: aName, body: () => ({ ...authorization(), rules: {} }), path: `authorization[${aName}].rules`, value: {} },

  { what: 'unknown type URL', type: 'type.example/Foo' as ResourceType, name: 'x', body: () => ({}), path: 'resource[x].typeUrl', value: 'type.example/Foo' },
];

for (const c of cases) {
  test(`rejects ${c.what}, naming ${c.path}`, () => {
    const r = validateResource(c.type, c.name ?? '', c.body());
    assert.equal(r.value, undefined, 'no value when there are issues');
    const hit = r.issues.find((i) => i.path === c.path);
    assert.ok(hit, `expected an issue at ${c.path}; got ${r.issues.map(formatIssue).join(' | ')}`);
    assert.deepEqual(hit.value, c.value, 'the issue carries the offending value');
    if (c.value !== undefined) assert.match(formatIssue(hit), /\(got /, 'the rendered issue shows the value');
  });
}

test('custom path prefix is used for every issue', () => {
  const r = validateResource(TYPE_SERVICE, sName, { ...service(), vips: ['x'] }, 'resources[3]');
  assert.deepEqual(r.issues.map((i) => i.path), ['resources[3].vips[0]']);
});

test('collects every issue, not just the first', () => {
  const r = validateResource(TYPE_WORKLOAD, wName, { ...workload(), addresses: ['x'], status: 'meh', workloadType: 'cron' });
  assert.deepEqual(r.issues.map((i) => i.path).sort(), [`workload[${wName}].addresses[0]`, `workload[${wName}].status`, `workload[${wName}].workloadType`]);
});

test('cidrProblem accepts addresses and CIDRs of both families', () => {
  for (const ok of ['10.0.0.1', '10.0.0.0/8', '0.0.0.0/0', 'fd00::/64', '::1', '::/0']) assert.equal(cidrProblem(ok), undefined, ok);
  for (const bad of ['10.0.0.0/', '10.0.0.0/-1', 'fd00::/129', '10.0.0.0/8/8', '']) assert.ok(cidrProblem(bad), bad);
});

test('dnsCapture: false is kept; any other value is refused with its path', () => {
  const w = workload('web-3', 'default', { dnsCapture: false });
  const r = validateResource(TYPE_WORKLOAD, w.uid, JSON.parse(JSON.stringify(w)));
  assert.deepEqual(r.issues, []);
  assert.equal(r.value && 'dnsCapture' in r.value ? r.value.dnsCapture : undefined, false);
  const bad = validateResource(TYPE_WORKLOAD, w.uid, { ...JSON.parse(JSON.stringify(w)), dnsCapture: 'no' });
  assert.match(bad.issues.map(formatIssue).join('\n'), /dnsCapture: must be false or absent/);
});
