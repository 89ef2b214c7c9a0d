import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateObject } from '../../../src/controller/source/validate-objects.js';

type Obj = Record<string, unknown>;

const meta = (name: string, extra: Obj = {}): Obj => ({ name, namespace: 'demo', ...extra });
const pod = (spec: Obj, extra: Obj = {}): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: meta('p'), spec, ...extra });
const ctr = (extra: Obj = {}): Obj => ({ name: 'c', command: ['sleep', '1'], ...extra });
const svc = (spec: Obj): Obj => ({ apiVersion: 'v1', kind: 'Service', metadata: meta('s'), spec });
const ap = (spec: Obj): Obj => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: meta('a'), spec });
const pa = (spec: Obj): Obj => ({ apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: meta('pa'), spec });
const vs = (spec: Obj): Obj => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: meta('v'), spec });
const dr = (spec: Obj): Obj => ({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: meta('d'), spec });
const route = (spec: Obj): Obj => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: meta('r'), spec });
const gw = (spec: Obj): Obj => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: meta('g'), spec });
const se = (spec: Obj): Obj => ({ apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: meta('se'), spec });
const ra = (spec: Obj): Obj => ({ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: meta('ra'), spec });
const gapi = (kind: string, spec: Obj, version = 'v1alpha2'): Obj => ({ apiVersion: `gateway.networking.k8s.io/${version}`, kind, metadata: meta('x'), spec });
const dest = (host: string, weight?: number): Obj => (weight === undefined ? { destination: { host } } : { destination: { host }, weight });

/** Each invalid case names the field that must be reported and the value it must quote. */
const INVALID: Array<{ name: string; obj: unknown; field: string; value?: unknown }> = [
  { name: 'not an object', obj: 'hello', field: '(document)', value: 'hello' },
  { name: 'missing kind', obj: { apiVersion: 'v1', metadata: meta('x') }, field: 'kind' },
  { name: 'wrong version for kind', obj: { apiVersion: 'apps/v1beta1', kind: 'Deployment', metadata: meta('x') }, field: 'kind', value: 'apps/v1beta1 Deployment' },
  { name: 'metadata missing', obj: { apiVersion: 'v1', kind: 'ServiceAccount' }, field: 'metadata' },
  { name: 'name not a string', obj: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 5 } }, field: 'metadata.name', value: 5 },
  { name: 'bad namespace', obj: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'x', namespace: 'Demo' } }, field: 'metadata.namespace', value: 'Demo' },
  { name: 'label value too long', obj: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta('x', { labels: { a: 'x'.repeat(64) } }) }, field: 'metadata.labels.a', value: 'x'.repeat(64) },
  { name: 'label key invalid', obj: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta('x', { labels: { 'a b': 'x' } }) }, field: 'metadata.labels.a b', value: 'a b' },
  { name: 'annotation not a string', obj: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta('x', { annotations: { n: true } }) }, field: 'metadata.annotations.n', value: true },
  { name: 'service name must start with a letter', obj: { ...svc({ ports: [{ port: 80 }] }), metadata: meta('1svc') }, field: 'metadata.name', value: '1svc' },
  { name: 'pod without containers', obj: pod({}), field: 'spec.containers' },
  { name: 'container without command', obj: pod({ containers: [{ name: 'c' }] }), field: 'spec.containers[0].command' },
  { name: 'command not a list of strings', obj: pod({ containers: [ctr({ command: ['sleep', 1] })] }), field: 'spec.containers[0].command[1]', value: 1 },
  { name: 'duplicate container names', obj: pod({ containers: [ctr(), ctr()] }), field: 'spec.containers[1].name', value: 'c' },
  { name: 'container port out of range', obj: pod({ containers: [ctr({ ports: [{ containerPort: 0 }] })] }), field: 'spec.containers[0].ports[0].containerPort', value: 0 },
  { name: 'container port name too long', obj: pod({ containers: [ctr({ ports: [{ containerPort: 80, name: 'a-very-long-port-name' }] })] }), field: 'spec.containers[0].ports[0].name', value: 'a-very-long-port-name' },
  { name: 'env value number', obj: pod({ containers: [ctr({ env: [{ name: 'N', value: 3 }] })] }), field: 'spec.containers[0].env[0].value', value: 3 },
  { name: 'pod status bad IP', obj: pod({ containers: [ctr()] }, { status: { podIP: '10.0.0.300' } }), field: 'status.podIP', value: '10.0.0.300' },
  {
    name: 'deployment replicas not integer',
    obj: { apiVersion: 'apps/v1', kind: 'Deployment', metadata: meta('d'), spec: { replicas: '2', selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [ctr()] } } } },
    field: 'spec.replicas',
    value: '2',
  },
  {
    name: 'deployment template labels miss selector',
    obj: { apiVersion: 'apps/v1', kind: 'Deployment', metadata: meta('d'), spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'c' } }, spec: { containers: [ctr()] } } } },
    field: 'spec.template.metadata.labels',
    value: { a: 'c' },
  },
  {
    name: 'deployment template container without command',
    obj: { apiVersion: 'apps/v1', kind: 'Deployment', metadata: meta('d'), spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c' }] } } } },
    field: 'spec.template.spec.containers[0].command',
  },
  { name: 'service port out of range', obj: svc({ ports: [{ port: 65536 }] }), field: 'spec.ports[0].port', value: 65536 },
  { name: 'service ports need names when several', obj: svc({ ports: [{ port: 80, name: 'http' }, { port: 81 }] }), field: 'spec.ports[1].name' },
  { name: 'service targetPort bad name', obj: svc({ ports: [{ port: 80, targetPort: 'Not_A_Name' }] }), field: 'spec.ports[0].targetPort', value: 'Not_A_Name' },
  { name: 'service clusterIP not an IP', obj: svc({ ports: [{ port: 80 }], clusterIP: '10.1' }), field: 'spec.clusterIP', value: '10.1' },
  { name: 'service selector value not string', obj: svc({ ports: [{ port: 80 }], selector: { version: 2 } }), field: 'spec.selector.version', value: 2 },
  { name: 'service trafficDistribution unknown', obj: svc({ ports: [{ port: 80 }], trafficDistribution: 'Nearby' }), field: 'spec.trafficDistribution', value: 'Nearby' },
  { name: 'peer authentication mode', obj: pa({ mtls: { mode: 'strict' } }), field: 'spec.mtls.mode', value: 'strict' },
  { name: 'peer authentication port level without selector', obj: pa({ portLevelMtls: { '8080': { mode: 'DISABLE' } } }), field: 'spec.portLevelMtls', value: ['8080'] },
  { name: 'peer authentication port key', obj: pa({ selector: { matchLabels: { a: 'b' } }, portLevelMtls: { http: { mode: 'STRICT' } } }), field: 'spec.portLevelMtls.http', value: 'http' },
  { name: 'authorization action', obj: ap({ action: 'BLOCK' }), field: 'spec.action', value: 'BLOCK' },
  { name: 'authorization CUSTOM without provider', obj: ap({ action: 'CUSTOM' }), field: 'spec.provider' },
  { name: 'authorization ports must be numeric strings', obj: ap({ rules: [{ to: [{ operation: { ports: ['http'] } }] }] }), field: 'spec.rules[0].to[0].operation.ports[0]', value: 'http' },
  { name: 'authorization ports given as numbers', obj: ap({ rules: [{ to: [{ operation: { ports: [8080] } }] }] }), field: 'spec.rules[0].to[0].operation.ports[0]', value: 8080 },
  { name: 'authorization ipBlocks CIDR', obj: ap({ rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/33'] } }] }] }), field: 'spec.rules[0].from[0].source.ipBlocks[0]', value: '10.0.0.0/33' },
  { name: 'authorization wildcard in the middle', obj: ap({ rules: [{ from: [{ source: { principals: ['cluster.local/*/sa/x'] } }] }] }), field: 'spec.rules[0].from[0].source.principals[0]', value: 'cluster.local/*/sa/x' },
  { name: 'authorization empty source', obj: ap({ rules: [{ from: [{ source: {} }] }] }), field: 'spec.rules[0].from[0].source', value: {} },
  { name: 'authorization unknown source field', obj: ap({ rules: [{ from: [{ source: { principal: ['x'] } }] }] }), field: 'spec.rules[0].from[0].source.principal', value: ['x'] },
  { name: 'authorization unknown when key', obj: ap({ rules: [{ when: [{ key: 'source.color', values: ['red'] }] }] }), field: 'spec.rules[0].when[0].key', value: 'source.color' },
  { name: 'authorization selector with targetRefs', obj: ap({ selector: { matchLabels: { a: 'b' } }, targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'w' }] }), field: 'spec.selector', value: { matchLabels: { a: 'b' } } },
  { name: 'authorization rule field typo (form for from)', obj: ap({ rules: [{ form: [{ source: { namespaces: ['x'] } }] }] }), field: 'spec.rules[0].form', value: [{ source: { namespaces: ['x'] } }] },
  { name: 'authorization spec field typo', obj: ap({ rule: [{}] }), field: 'spec.rule', value: [{}] },
  { name: 'peer authentication mtls typo', obj: pa({ mtls: { mod: 'STRICT' } }), field: 'spec.mtls.mod', value: 'STRICT' },
  { name: 'virtual service http field typo', obj: vs({ hosts: ['a'], http: [{ route: [dest('a')], timout: '1s' }] }), field: 'spec.http[0].timout', value: '1s' },
  { name: 'destination rule traffic policy typo', obj: dr({ host: 'a', trafficPolicy: { connectionPool: { tcp: { maxConnection: 1 } } } }), field: 'spec.trafficPolicy.connectionPool.tcp.maxConnection', value: 1 },
  { name: 'httproute rule field typo', obj: route({ rules: [{ backendRef: [{ name: 'a', port: 80 }] }] }), field: 'spec.rules[0].backendRef', value: [{ name: 'a', port: 80 }] },
  { name: 'virtual service without hosts', obj: vs({ http: [{ route: [dest('a')] }] }), field: 'spec.hosts' },
  { name: 'virtual service bad timeout', obj: vs({ hosts: ['a'], http: [{ timeout: '5x', route: [dest('a')] }] }), field: 'spec.http[0].timeout', value: '5x' },
  { name: 'virtual service numeric timeout', obj: vs({ hosts: ['a'], http: [{ timeout: 5, route: [dest('a')] }] }), field: 'spec.http[0].timeout', value: 5 },
  { name: 'virtual service weights', obj: vs({ hosts: ['a'], http: [{ route: [dest('a', 50), dest('b', 40)] }] }), field: 'spec.http[0].route', value: [50, 40] },
  { name: 'virtual service weight above 100', obj: vs({ hosts: ['a'], http: [{ route: [dest('a', 101)] }] }), field: 'spec.http[0].route[0].weight', value: 101 },
  { name: 'virtual service destination host', obj: vs({ hosts: ['a'], http: [{ route: [{ destination: {} }] }] }), field: 'spec.http[0].route[0].destination.host' },
  { name: 'virtual service retries attempts', obj: vs({ hosts: ['a'], http: [{ route: [dest('a')], retries: { attempts: -1 } }] }), field: 'spec.http[0].retries.attempts', value: -1 },
  { name: 'virtual service perTryTimeout', obj: vs({ hosts: ['a'], http: [{ route: [dest('a')], retries: { attempts: 2, perTryTimeout: 'soon' } }] }), field: 'spec.http[0].retries.perTryTimeout', value: 'soon' },
  { name: 'virtual service abort status', obj: vs({ hosts: ['a'], http: [{ route: [dest('a')], fault: { abort: { httpStatus: 700 } } }] }), field: 'spec.http[0].fault.abort.httpStatus', value: 700 },
  { name: 'virtual service delay percentage', obj: vs({ hosts: ['a'], http: [{ route: [dest('a')], fault: { delay: { fixedDelay: '1s', percentage: { value: 120 } } } }] }), field: 'spec.http[0].fault.delay.percentage.value', value: 120 },
  { name: 'virtual service http rule with nothing to do', obj: vs({ hosts: ['a'], http: [{ name: 'x' }] }), field: 'spec.http[0]', value: ['name'] },
  { name: 'virtual service uri match with two kinds', obj: vs({ hosts: ['a'], http: [{ match: [{ uri: { exact: '/', prefix: '/' } }], route: [dest('a')] }] }), field: 'spec.http[0].match[0].uri', value: { exact: '/', prefix: '/' } },
  { name: 'destination rule without host', obj: dr({}), field: 'spec.host' },
  { name: 'destination rule duplicate subsets', obj: dr({ host: 'a', subsets: [{ name: 'v1' }, { name: 'v1' }] }), field: 'spec.subsets[1].name', value: 'v1' },
  { name: 'destination rule subset labels', obj: dr({ host: 'a', subsets: [{ name: 'v1', labels: { version: 1 } }] }), field: 'spec.subsets[0].labels.version', value: 1 },
  { name: 'destination rule maxConnections', obj: dr({ host: 'a', trafficPolicy: { connectionPool: { tcp: { maxConnections: -1 } } } }), field: 'spec.trafficPolicy.connectionPool.tcp.maxConnections', value: -1 },
  { name: 'destination rule outlier interval', obj: dr({ host: 'a', trafficPolicy: { outlierDetection: { interval: '10' } } }), field: 'spec.trafficPolicy.outlierDetection.interval', value: '10' },
  { name: 'destination rule maxEjectionPercent', obj: dr({ host: 'a', trafficPolicy: { outlierDetection: { maxEjectionPercent: 150 } } }), field: 'spec.trafficPolicy.outlierDetection.maxEjectionPercent', value: 150 },
  { name: 'destination rule lb', obj: dr({ host: 'a', trafficPolicy: { loadBalancer: { simple: 'FASTEST' } } }), field: 'spec.trafficPolicy.loadBalancer.simple', value: 'FASTEST' },
  { name: 'istio gateway port protocol', obj: { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: meta('g'), spec: { servers: [{ port: { number: 80, protocol: 'SMTP' }, hosts: ['*'] }] } }, field: 'spec.servers[0].port.protocol', value: 'SMTP' },
  { name: 'gateway without class', obj: gw({ listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] }), field: 'spec.gatewayClassName' },
  { name: 'gateway listener port', obj: gw({ gatewayClassName: 'ambit-waypoint', listeners: [{ name: 'mesh', port: '15008', protocol: 'HBONE' }] }), field: 'spec.listeners[0].port', value: '15008' },
  { name: 'httproute backend weight', obj: route({ rules: [{ backendRefs: [{ name: 'a', port: 80, weight: -1 }] }] }), field: 'spec.rules[0].backendRefs[0].weight', value: -1 },
  { name: 'httproute backend without port', obj: route({ rules: [{ backendRefs: [{ name: 'a' }] }] }), field: 'spec.rules[0].backendRefs[0].port' },
  { name: 'httproute timeout format', obj: route({ rules: [{ timeouts: { request: '1.5s' } }] }), field: 'spec.rules[0].timeouts.request', value: '1.5s' },
  { name: 'httproute path must start with /', obj: route({ rules: [{ matches: [{ path: { type: 'PathPrefix', value: 'api' } }] }] }), field: 'spec.rules[0].matches[0].path.value', value: 'api' },
  { name: 'grpcroute method type', obj: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: meta('r'), spec: { rules: [{ matches: [{ method: { type: 'Prefix', service: 'a.B' } }] }] } }, field: 'spec.rules[0].matches[0].method.type', value: 'Prefix' },
  { name: 'serviceentry without hosts', obj: se({ ports: [{ number: 80, name: 'http' }] }), field: 'spec.hosts' },
  { name: 'serviceentry host is an IP', obj: se({ hosts: ['10.0.0.1'] }), field: 'spec.hosts[0]', value: '10.0.0.1' },
  { name: 'serviceentry port protocol', obj: se({ hosts: ['a.example.com'], ports: [{ number: 80, name: 'x', protocol: 'SMTP' }] }), field: 'spec.ports[0].protocol', value: 'SMTP' },
  { name: 'serviceentry STATIC needs IP endpoints', obj: se({ hosts: ['a.example.com'], resolution: 'STATIC', endpoints: [{ address: 'db.example.com' }] }), field: 'spec.endpoints[0].address', value: 'db.example.com' },
  { name: 'serviceentry DNS wildcard host', obj: se({ hosts: ['*.example.com'], resolution: 'DNS' }), field: 'spec.hosts[0]', value: '*.example.com' },
  { name: 'serviceentry exportTo value', obj: se({ hosts: ['a.example.com'], exportTo: ['.', 'Bad_NS'] }), field: 'spec.exportTo[1]', value: 'Bad_NS' },
  { name: 'serviceentry exportTo ~ with others', obj: se({ hosts: ['a.example.com'], exportTo: ['~', 'shop'] }), field: 'spec.exportTo' },
  { name: 'serviceentry endpoint port names no port', obj: se({ hosts: ['a.example.com'], resolution: 'STATIC', ports: [{ number: 80, name: 'http' }], endpoints: [{ address: '10.0.0.1', ports: { tcp: 81 } }] }), field: 'spec.endpoints[0].ports.tcp', value: 'tcp' },
  { name: 'requestauthentication without issuer', obj: ra({ jwtRules: [{ jwksUri: 'https://a.example.com/jwks' }] }), field: 'spec.jwtRules[0].issuer' },
  { name: 'requestauthentication jwksUri scheme', obj: ra({ jwtRules: [{ issuer: 'a', jwksUri: 'ftp://a/jwks' }] }), field: 'spec.jwtRules[0].jwksUri', value: 'ftp://a/jwks' },
  { name: 'requestauthentication jwks not JSON', obj: ra({ jwtRules: [{ issuer: 'a', jwks: '{nope' }] }), field: 'spec.jwtRules[0].jwks' },
  { name: 'requestauthentication selector and targetRef', obj: ra({ selector: { matchLabels: { a: 'b' } }, targetRef: { kind: 'Gateway', name: 'g' } }), field: 'spec.selector', value: { matchLabels: { a: 'b' } } },
  { name: 'tcproute without rules', obj: gapi('TCPRoute', { parentRefs: [{ name: 'g' }] }), field: 'spec.rules' },
  { name: 'tlsroute unknown field', obj: gapi('TLSRoute', { rules: [{ backendRefs: [{ name: 'a', port: 443 }] }], matches: [] }), field: 'spec.matches' },
  { name: 'referencegrant from without namespace', obj: gapi('ReferenceGrant', { from: [{ group: '', kind: 'HTTPRoute' }], to: [{ group: '', kind: 'Service' }] }, 'v1beta1'), field: 'spec.from[0].namespace' },
  { name: 'telemetry sampling over 100', obj: { apiVersion: 'telemetry.istio.io/v1', kind: 'Telemetry', metadata: meta('t'), spec: { tracing: [{ randomSamplingPercentage: 101 }] } }, field: 'spec.tracing[0].randomSamplingPercentage', value: 101 },
  { name: 'ingress path type', obj: { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: meta('i'), spec: { rules: [{ http: { paths: [{ path: '/', pathType: 'Regex', backend: {} }] } }] } }, field: 'spec.rules[0].http.paths[0].pathType', value: 'Regex' },
  { name: 'gatewayclass controllerName', obj: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'c' }, spec: {} }, field: 'spec.controllerName' },
];

for (const c of INVALID) {
  test(`invalid: ${c.name}`, () => {
    const issues = validateObject(c.obj, 'case.yaml#1');
    const hit = issues.find((i) => i.path.startsWith('case.yaml#1') && i.path.endsWith(`: ${c.field}`));
    assert.ok(hit, `expected an issue for ${c.field}; got ${JSON.stringify(issues, null, 1)}`);
    if ('value' in c) assert.deepEqual(hit.value, c.value);
    assert.ok(hit.problem.length > 0 && hit.problem[0] === hit.problem[0]!.toLowerCase(), `problem text starts lowercase: ${hit.problem}`);
  });
}

const VALID: Array<{ name: string; obj: Obj }> = [
  { name: 'minimal pod', obj: pod({ containers: [ctr({ ports: [{ containerPort: 8080, name: 'http-api' }] })] }) },
  { name: 'service with named targetPort and appProtocol', obj: svc({ ports: [{ name: 'http', port: 80, targetPort: 'http-api', appProtocol: 'http' }], selector: { app: 'x' } }) },
  { name: 'headless service', obj: svc({ clusterIP: 'None', ports: [{ port: 80 }] }) },
  { name: 'empty authorization policy (deny all)', obj: ap({}) },
  { name: 'allow-all rule', obj: ap({ rules: [{}] }) },
  {
    name: 'L4 and L7 authorization policy',
    obj: ap({
      action: 'DENY',
      rules: [
        {
          from: [{ source: { notPrincipals: ['*'], ipBlocks: ['10.0.0.0/8', '::1'], serviceAccounts: ['demo/sleep'] } }],
          to: [{ operation: { methods: ['GET'], ports: ['8080'], paths: ['/admin*'] } }],
          when: [{ key: 'request.headers[x-user]', values: ['bob'] }, { key: 'destination.port', notValues: ['9090'] }],
        },
      ],
    }),
  },
  { name: 'peer authentication with port-level settings', obj: pa({ selector: { matchLabels: { app: 'x' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { '8080': { mode: 'PERMISSIVE' } } }) },
  { name: 'virtual service single route without weight', obj: vs({ hosts: ['a'], http: [{ route: [dest('a')], timeout: '1.5s' }] }) },
  { name: 'waypoint gateway', obj: gw({ gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] }) },
  { name: 'DNS service entry', obj: se({ hosts: ['api.example.com'], location: 'MESH_EXTERNAL', resolution: 'DNS', ports: [{ number: 443, name: 'https', protocol: 'TLS' }] }) },
  { name: 'STATIC service entry', obj: se({ hosts: ['db.internal'], addresses: ['240.0.0.1'], resolution: 'STATIC', ports: [{ number: 5432, name: 'tcp', protocol: 'TCP' }], endpoints: [{ address: '10.0.0.5', ports: { tcp: 15432 } }], exportTo: ['.'] }) },
  { name: 'JWT request authentication', obj: ra({ targetRef: { kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }, jwtRules: [{ issuer: 'testing@secure.istio.io', jwks: '{"keys":[]}', fromHeaders: [{ name: 'x-jwt', prefix: 'Bearer ' }], fromParams: ['token'], outputPayloadToHeader: 'x-payload', forwardOriginalToken: true }] }) },
  { name: 'tcp route', obj: gapi('TCPRoute', { parentRefs: [{ name: 'g' }], rules: [{ backendRefs: [{ name: 'a', port: 9000, weight: 80 }, { name: 'b', port: 9000, weight: 20 }] }] }) },
  { name: 'tls route', obj: gapi('TLSRoute', { parentRefs: [{ name: 'g' }], hostnames: ['a.example.com'], rules: [{ backendRefs: [{ name: 'a', port: 443 }] }] }) },
  { name: 'reference grant', obj: gapi('ReferenceGrant', { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'front' }], to: [{ group: '', kind: 'Service' }] }, 'v1beta1') },
  { name: 'sidecar', obj: { apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: meta('default'), spec: { egress: [{ hosts: ['./*'] }] } } },
  { name: 'ingress', obj: { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: meta('i'), spec: { ingressClassName: 'istio', rules: [{ host: 'a.example.com', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'a', port: { number: 80 } } } }] } }] } } },
  { name: 'grpc route', obj: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: meta('r'), spec: { parentRefs: [{ name: 'svc', kind: 'Service', group: '' }], rules: [{ matches: [{ method: { service: 'helloworld.Greeter' } }], backendRefs: [{ name: 'svc', port: 50051 }] }] } } },
];

test('a DNS ServiceEntry with a wildcard host and no endpoints is refused in Istio\'s words', () => {
  for (const resolution of ['DNS', 'DNS_ROUND_ROBIN']) {
    const issues = validateObject(se({ hosts: ['ok.example.com', '*.example.com'], resolution }), 'case.yaml#1');
    const hit = issues.find((i) => i.path.endsWith(': spec.hosts[1]'));
    assert.equal(hit?.problem, `hosts must be FQDN if no endpoints are provided for resolution mode ${resolution}`);
  }
  assert.deepEqual(validateObject(se({ hosts: ['*.example.com'], resolution: 'DNS', endpoints: [{ address: 'lb.example.com' }] }), 'case.yaml#1'), [], 'with endpoints the host is not resolved');
  assert.deepEqual(validateObject(se({ hosts: ['*.example.com'], resolution: 'STATIC', endpoints: [{ address: '192.0.2.1' }] }), 'case.yaml#1'), [], 'STATIC wildcard entries are valid');
});

for (const c of VALID) {
  test(`valid: ${c.name}`, () => {
    assert.deepEqual(validateObject(c.obj, 'ok.yaml#1'), []);
  });
}

test('containers without command are accepted when the caller does not require commands (cluster source)', () => {
  const p = pod({ containers: [{ name: 'c', image: 'nginx' }] });
  assert.equal(validateObject(p, 'x').length, 1);
  assert.deepEqual(validateObject(p, 'x', { requireContainerCommand: false }), []);
});

test('issue paths name the origin, the kind and namespace/name of the object', () => {
  const issues = validateObject(vs({ hosts: ['a'], http: [{ timeout: '5x', route: [dest('a')] }] }), 'dir/app.yaml#3');
  assert.deepEqual(issues.map((i) => i.path), ['dir/app.yaml#3: VirtualService demo/v: spec.http[0].timeout']);
});

test('size limits: an oversized list or object is refused with its path, size and the limit', () => {
  const principals = Array.from({ length: 200_000 }, (_, i) => `cluster.local/ns/demo/sa/sa-${i}`);
  const big = validateObject(ap({ rules: [{ from: [{ source: { principals } }] }] }), 'big.yaml#1');
  assert.equal(big.length, 1, JSON.stringify(big.map((i) => i.path)));
  assert.equal(big[0]!.path, 'big.yaml#1: AuthorizationPolicy demo/a: (document)');
  assert.match(big[0]!.problem, /more than the limit of 524288/, 'a 7 MB policy is refused for its size before anything else is read');

  const many = Array.from({ length: 1025 }, (_, i) => `sa-${i}`);
  const long = validateObject(ap({ rules: [{ from: [{ source: { principals: many } }] }] }), 'long.yaml#1');
  assert.deepEqual(long.map((i) => i.path), ['long.yaml#1: AuthorizationPolicy demo/a: spec.rules[0].from[0].source.principals']);
  assert.match(long[0]!.problem, /has 1025 entries, more than the limit of 1024/);

  const atLimit = Array.from({ length: 1024 }, (_, i) => `cluster.local/ns/demo/sa/sa-${i}`);
  assert.deepEqual(validateObject(ap({ rules: [{ from: [{ source: { principals: atLimit } }] }] }), 'ok.yaml#1'), [], '1024 entries are accepted');
});
