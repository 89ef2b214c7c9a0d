/**
 * Istio's configuration kinds (security.istio.io, networking.istio.io, telemetry.istio.io) as
 * CRDs, written from Istio's documented API fields: same group, names, scope and versions as
 * Istio's own CRDs, so objects written for Istio apply unchanged and either set of CRDs can be
 * installed over the other's objects. Fields Ambit reads are typed in detail; subtrees it does not
 * interpret are typed as objects that keep every field (nothing a user wrote is pruned).
 */
import {
  AGE_COLUMN,
  anyValue,
  bool,
  buildCrd,
  described,
  int32,
  intOrString,
  list,
  mapOf,
  num,
  obj,
  oneOfStrings,
  opaque,
  str,
  strs,
  type KindSpec,
  type Schema,
} from './schema.js';
import type { CustomResourceDefinition } from '../shared/crd.js';

const SECURITY = 'security.istio.io';
const NETWORKING = 'networking.istio.io';
const TELEMETRY = 'telemetry.istio.io';

/** Versions served by Istio for its networking kinds; v1beta1 is the storage version. */
const NETWORKING_VERSIONS = ['v1', 'v1alpha3', 'v1beta1'];
const SECURITY_VERSIONS = ['v1', 'v1beta1'];

const workloadSelector = described(
  'Selects the pods (by labels, in the object\'s namespace) the configuration applies to.',
  obj({ matchLabels: mapOf(str()) }),
);
const labelsSelector = obj({ labels: mapOf(str()) });
const policyTargetRef = obj(
  {
    group: str(),
    kind: str(),
    name: str(),
    namespace: str(),
  },
  { required: ['kind', 'name'] },
);

/** Istio's status: conditions and analyzer messages written by the controller. */
const istioStatus: Schema = obj(
  {
    conditions: list(
      obj({
        type: str(),
        status: str(),
        reason: str(),
        message: str(),
        lastProbeTime: str({ format: 'date-time' }),
        lastTransitionTime: str({ format: 'date-time' }),
        observedGeneration: intOrString(),
      }),
    ),
    observedGeneration: intOrString(),
    validationMessages: list(
      obj({
        documentationUrl: str(),
        level: oneOfStrings(['UNKNOWN', 'ERROR', 'WARNING', 'INFO']),
        type: obj({ code: str(), name: str() }),
      }),
    ),
  },
  { 'x-kubernetes-preserve-unknown-fields': true },
);

function istioKind(k: Omit<KindSpec, 'status' | 'required'>): CustomResourceDefinition {
  return buildCrd({ ...k, status: istioStatus, required: ['spec'] });
}

// ---- security.istio.io ----

const MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];

const authorizationPolicy = istioKind({
  group: SECURITY,
  kind: 'AuthorizationPolicy',
  plural: 'authorizationpolicies',
  scope: 'Namespaced',
  categories: ['istio-io', 'security-istio-io'],
  versions: SECURITY_VERSIONS,
  storage: 'v1beta1',
  printerColumns: [{ name: 'Action', type: 'string', jsonPath: '.spec.action', description: 'The action taken when a rule matches.' }, AGE_COLUMN],
  description: 'Access control for workloads: ALLOW, DENY, AUDIT or CUSTOM on matching sources, operations and conditions.',
  spec: obj({
    selector: workloadSelector,
    targetRef: policyTargetRef,
    targetRefs: list(policyTargetRef, { maxItems: 16 }),
    action: oneOfStrings(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']),
    provider: obj({ name: str() }),
    rules: list(
      obj({
        from: list(
          obj({
            source: obj({
              principals: strs(),
              notPrincipals: strs(),
              requestPrincipals: strs(),
              notRequestPrincipals: strs(),
              namespaces: strs(),
              notNamespaces: strs(),
              serviceAccounts: strs(),
              notServiceAccounts: strs(),
              ipBlocks: strs(),
              notIpBlocks: strs(),
              remoteIpBlocks: strs(),
              notRemoteIpBlocks: strs(),
            }),
          }),
        ),
        to: list(
          obj({
            operation: obj({
              hosts: strs(),
              notHosts: strs(),
              ports: strs(),
              notPorts: strs(),
              methods: strs(),
              notMethods: strs(),
              paths: strs(),
              notPaths: strs(),
            }),
          }),
        ),
        when: list(obj({ key: str(), values: strs(), notValues: strs() }, { required: ['key'] })),
      }),
    ),
  }),
});

const peerAuthentication = istioKind({
  group: SECURITY,
  kind: 'PeerAuthentication',
  plural: 'peerauthentications',
  scope: 'Namespaced',
  shortNames: ['pa'],
  categories: ['istio-io', 'security-istio-io'],
  versions: SECURITY_VERSIONS,
  storage: 'v1beta1',
  printerColumns: [{ name: 'Mode', type: 'string', jsonPath: '.spec.mtls.mode', description: 'The mTLS mode of the selected workloads.' }, AGE_COLUMN],
  description: 'Whether workloads accept plaintext (PERMISSIVE) or only mutual TLS (STRICT), per workload and port.',
  spec: obj({
    selector: workloadSelector,
    mtls: obj({ mode: oneOfStrings(MTLS_MODES) }),
    portLevelMtls: mapOf(obj({ mode: oneOfStrings(MTLS_MODES) })),
    portLevelTls: mapOf(opaque()),
  }),
});

const requestAuthentication = istioKind({
  group: SECURITY,
  kind: 'RequestAuthentication',
  plural: 'requestauthentications',
  scope: 'Namespaced',
  shortNames: ['ra'],
  categories: ['istio-io', 'security-istio-io'],
  versions: SECURITY_VERSIONS,
  storage: 'v1beta1',
  printerColumns: [AGE_COLUMN],
  description: 'Which JSON Web Tokens requests to a workload may carry, and how to validate them.',
  spec: obj({
    selector: workloadSelector,
    targetRef: policyTargetRef,
    targetRefs: list(policyTargetRef, { maxItems: 16 }),
    jwtRules: list(
      obj(
        {
          issuer: str(),
          audiences: strs(),
          jwksUri: str(),
          jwks: str(),
          fromHeaders: list(obj({ name: str(), prefix: str() }, { required: ['name'] })),
          fromParams: strs(),
          fromCookies: strs(),
          outputPayloadToHeader: str(),
          forwardOriginalToken: bool(),
          outputClaimToHeaders: list(obj({ header: str(), claim: str() })),
          timeout: str(),
          spaceDelimitedClaims: strs(),
        },
        { required: ['issuer'] },
      ),
      { maxItems: 4096 },
    ),
  }),
});

// ---- networking.istio.io ----

const portSelector = obj({ number: int32({ minimum: 0, maximum: 65535 }) });
const destination = obj({ host: str(), subset: str(), port: portSelector }, { required: ['host'] });
const percent = obj({ value: num() });
const headerOperations = obj({ set: mapOf(str()), add: mapOf(str()), remove: strs() });
const headers = obj({ request: headerOperations, response: headerOperations });
const stringMatch = obj({ exact: str(), prefix: str(), regex: str() });
const routeDestination = obj({ destination, weight: int32() }, { required: ['destination'] });

const httpMatch = obj({
  name: str(),
  uri: stringMatch,
  scheme: stringMatch,
  method: stringMatch,
  authority: stringMatch,
  headers: mapOf(stringMatch),
  port: int32({ minimum: 0, maximum: 65535 }),
  sourceLabels: mapOf(str()),
  gateways: strs(),
  queryParams: mapOf(stringMatch),
  ignoreUriCase: bool(),
  withoutHeaders: mapOf(stringMatch),
  sourceNamespace: str(),
  statPrefix: str(),
});

const httpRoute = obj({
  name: str(),
  match: list(httpMatch),
  route: list(obj({ destination, weight: int32(), headers }, { required: ['destination'] })),
  redirect: obj({
    uri: str(),
    authority: str(),
    port: int32(),
    derivePort: oneOfStrings(['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT']),
    scheme: str(),
    redirectCode: int32(),
  }),
  directResponse: obj({ status: int32(), body: obj({ string: str(), bytes: str({ format: 'byte' }) }) }, { required: ['status'] }),
  delegate: obj({ name: str(), namespace: str() }),
  rewrite: obj({ uri: str(), authority: str(), uriRegexRewrite: obj({ match: str(), rewrite: str() }) }),
  timeout: str(),
  retries: obj({
    attempts: int32(),
    perTryTimeout: str(),
    retryOn: str(),
    retryRemoteLocalities: bool({ nullable: true }),
    retryIgnorePreviousHosts: bool({ nullable: true }),
    backoff: str(),
  }),
  fault: obj({
    delay: obj({ fixedDelay: str(), exponentialDelay: str(), percentage: percent, percent: int32() }),
    abort: obj({ httpStatus: int32(), grpcStatus: str(), http2Error: str(), percentage: percent }),
  }),
  mirror: destination,
  mirrors: list(obj({ destination, percentage: percent }, { required: ['destination'] })),
  mirrorPercentage: percent,
  mirrorPercent: int32({ nullable: true }),
  corsPolicy: obj({
    allowOrigins: list(stringMatch),
    allowOrigin: strs(),
    allowMethods: strs(),
    allowHeaders: strs(),
    exposeHeaders: strs(),
    maxAge: str(),
    allowCredentials: bool({ nullable: true }),
    unmatchedPreflights: oneOfStrings(['UNSPECIFIED', 'FORWARD', 'IGNORE']),
  }),
  headers,
});

const l4Match = {
  destinationSubnets: strs(),
  port: int32({ minimum: 0, maximum: 65535 }),
  sourceLabels: mapOf(str()),
  gateways: strs(),
  sourceNamespace: str(),
};

const virtualService = istioKind({
  group: NETWORKING,
  kind: 'VirtualService',
  plural: 'virtualservices',
  scope: 'Namespaced',
  shortNames: ['vs'],
  categories: ['istio-io', 'networking-istio-io'],
  versions: NETWORKING_VERSIONS,
  storage: 'v1beta1',
  printerColumns: [
    { name: 'Gateways', type: 'string', jsonPath: '.spec.gateways', description: 'The gateways (or mesh) the routes apply to.' },
    { name: 'Hosts', type: 'string', jsonPath: '.spec.hosts', description: 'The hosts the routes match.' },
    AGE_COLUMN,
  ],
  description: 'Routing rules for the hosts it names: matches, weighted destinations, retries, timeouts, faults, rewrites.',
  spec: obj({
    hosts: strs(),
    gateways: strs(),
    http: list(httpRoute),
    tls: list(obj({ match: list(obj({ sniHosts: strs(), ...l4Match })), route: list(routeDestination) })),
    tcp: list(obj({ match: list(obj({ sourceSubnet: str(), ...l4Match })), route: list(routeDestination) })),
    exportTo: strs(),
  }),
});

const connectionPool = obj({
  tcp: obj({
    maxConnections: int32(),
    connectTimeout: str(),
    tcpKeepalive: obj({ probes: int32(), time: str(), interval: str() }),
    maxConnectionDuration: str(),
    idleTimeout: str(),
  }),
  http: obj({
    http1MaxPendingRequests: int32(),
    http2MaxRequests: int32(),
    maxRequestsPerConnection: int32(),
    maxRetries: int32(),
    idleTimeout: str(),
    h2UpgradePolicy: oneOfStrings(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']),
    useClientProtocol: bool(),
    maxConcurrentStreams: int32(),
  }),
});

const outlierDetection = obj({
  splitExternalLocalOriginErrors: bool(),
  consecutiveLocalOriginFailures: int32({ nullable: true }),
  consecutiveGatewayErrors: int32({ nullable: true, minimum: 0 }),
  consecutive5xxErrors: int32({ nullable: true, minimum: 0 }),
  consecutiveErrors: int32(),
  interval: str(),
  baseEjectionTime: str(),
  maxEjectionPercent: int32(),
  minHealthPercent: int32(),
});

const LB_SIMPLE = ['UNSPECIFIED', 'LEAST_CONN', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN', 'LEAST_REQUEST'];

const trafficPolicyBase = {
  loadBalancer: obj({
    simple: oneOfStrings(LB_SIMPLE),
    consistentHash: opaque('Hash-based load balancing (kept as written).'),
    localityLbSetting: opaque(),
    warmupDurationSecs: str(),
    warmup: opaque(),
  }),
  connectionPool,
  outlierDetection,
  tls: obj({
    mode: oneOfStrings(['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']),
    clientCertificate: str(),
    privateKey: str(),
    caCertificates: str(),
    credentialName: str(),
    subjectAltNames: strs(),
    sni: str(),
    insecureSkipVerify: bool({ nullable: true }),
    caCrl: str(),
  }),
};

const trafficPolicy = obj({
  ...trafficPolicyBase,
  portLevelSettings: list(obj({ port: portSelector, ...trafficPolicyBase }), { maxItems: 4096 }),
  tunnel: obj({ protocol: str(), targetHost: str(), targetPort: int32() }, { required: ['targetHost', 'targetPort'] }),
  proxyProtocol: obj({ version: oneOfStrings(['V1', 'V2']) }),
  retryBudget: opaque(),
});

const destinationRule = istioKind({
  group: NETWORKING,
  kind: 'DestinationRule',
  plural: 'destinationrules',
  scope: 'Namespaced',
  shortNames: ['dr'],
  categories: ['istio-io', 'networking-istio-io'],
  versions: NETWORKING_VERSIONS,
  storage: 'v1beta1',
  printerColumns: [{ name: 'Host', type: 'string', jsonPath: '.spec.host', description: 'The service the rule applies to.' }, AGE_COLUMN],
  description: 'Policies for traffic to a service after routing: subsets, load balancing, connection pools, outlier detection, TLS.',
  spec: obj(
    {
      host: str(),
      trafficPolicy,
      subsets: list(obj({ name: str(), labels: mapOf(str()), trafficPolicy }, { required: ['name'] })),
      exportTo: strs(),
      workloadSelector: workloadSelector,
    },
    { required: ['host'] },
  ),
});

const TLS_VERSIONS = ['TLS_AUTO', 'TLSV1_0', 'TLSV1_1', 'TLSV1_2', 'TLSV1_3'];
const serverPort = obj({ number: int32({ minimum: 0, maximum: 65535 }), protocol: str(), name: str(), targetPort: int32() });

const istioGateway = istioKind({
  group: NETWORKING,
  kind: 'Gateway',
  plural: 'gateways',
  scope: 'Namespaced',
  shortNames: ['gw'],
  categories: ['istio-io', 'networking-istio-io'],
  versions: NETWORKING_VERSIONS,
  storage: 'v1beta1',
  printerColumns: [AGE_COLUMN],
  description: 'A load balancer at the edge of the mesh: the ports, protocols, hosts and TLS settings gateway pods serve.',
  spec: obj({
    selector: mapOf(str()),
    servers: list(
      obj(
        {
          port: serverPort,
          bind: str(),
          hosts: strs(),
          name: str(),
          defaultEndpoint: str(),
          tls: obj({
            httpsRedirect: bool(),
            mode: oneOfStrings(['PASSTHROUGH', 'SIMPLE', 'MUTUAL', 'AUTO_PASSTHROUGH', 'ISTIO_MUTUAL', 'OPTIONAL_MUTUAL']),
            serverCertificate: str(),
            privateKey: str(),
            caCertificates: str(),
            caCrl: str(),
            credentialName: str(),
            credentialNames: strs(),
            tlsCertificates: list(opaque()),
            subjectAltNames: strs(),
            verifyCertificateSpki: strs(),
            verifyCertificateHash: strs(),
            minProtocolVersion: oneOfStrings(TLS_VERSIONS),
            maxProtocolVersion: oneOfStrings(TLS_VERSIONS),
            cipherSuites: strs(),
          }),
        },
        { required: ['port', 'hosts'] },
      ),
    ),
  }),
});

const workloadEntrySpec = obj({
  address: str(),
  ports: mapOf(int32({ minimum: 0, maximum: 65535 })),
  labels: mapOf(str()),
  network: str(),
  locality: str(),
  weight: int32(),
  serviceAccount: str(),
});

const serviceEntry = istioKind({
  group: NETWORKING,
  kind: 'ServiceEntry',
  plural: 'serviceentries',
  scope: 'Namespaced',
  shortNames: ['se'],
  categories: ['istio-io', 'networking-istio-io'],
  versions: NETWORKING_VERSIONS,
  storage: 'v1beta1',
  printerColumns: [
    { name: 'Hosts', type: 'string', jsonPath: '.spec.hosts', description: 'The hosts the entry adds to the registry.' },
    { name: 'Location', type: 'string', jsonPath: '.spec.location', description: 'Inside or outside the mesh.' },
    { name: 'Resolution', type: 'string', jsonPath: '.spec.resolution', description: 'How endpoints are found.' },
    AGE_COLUMN,
  ],
  description: 'Adds services (hosts, addresses, ports, endpoints) to the mesh\'s registry.',
  spec: obj(
    {
      hosts: strs(),
      addresses: strs(),
      ports: list(obj({ number: int32({ minimum: 0, maximum: 65535 }), protocol: str(), name: str(), targetPort: int32() }, { required: ['number', 'name'] })),
      location: oneOfStrings(['MESH_EXTERNAL', 'MESH_INTERNAL']),
      resolution: oneOfStrings(['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'DYNAMIC_DNS']),
      endpoints: list(workloadEntrySpec),
      workloadSelector: labelsSelector,
      exportTo: strs(),
      subjectAltNames: strs(),
    },
    { required: ['hosts'] },
  ),
});

const sidecar = istioKind({
  group: NETWORKING,
  kind: 'Sidecar',
  plural: 'sidecars',
  scope: 'Namespaced',
  categories: ['istio-io', 'networking-istio-io'],
  versions: NETWORKING_VERSIONS,
  storage: 'v1beta1',
  printerColumns: [AGE_COLUMN],
  description: 'Sidecar proxy scoping (sidecar mode only; it has no effect on ambient pods).',
  spec: obj({
    workloadSelector: labelsSelector,
    ingress: list(opaque()),
    egress: list(obj({ port: opaque(), bind: str(), captureMode: oneOfStrings(['DEFAULT', 'IPTABLES', 'NONE']), hosts: strs() }, { required: ['hosts'] })),
    inboundConnectionPool: opaque(),
    outboundTrafficPolicy: obj({ mode: oneOfStrings(['REGISTRY_ONLY', 'ALLOW_ANY']), egressProxy: destination }),
  }),
});

const workloadEntry = istioKind({
  group: NETWORKING,
  kind: 'WorkloadEntry',
  plural: 'workloadentries',
  scope: 'Namespaced',
  shortNames: ['we'],
  categories: ['istio-io', 'networking-istio-io'],
  versions: NETWORKING_VERSIONS,
  storage: 'v1beta1',
  printerColumns: [AGE_COLUMN, { name: 'Address', type: 'string', jsonPath: '.spec.address', description: 'The workload\'s address.' }],
  description: 'A workload outside Kubernetes (a VM, a bare-metal host) as a member of the mesh.',
  spec: workloadEntrySpec,
});

const workloadGroup = istioKind({
  group: NETWORKING,
  kind: 'WorkloadGroup',
  plural: 'workloadgroups',
  scope: 'Namespaced',
  shortNames: ['wg'],
  categories: ['istio-io', 'networking-istio-io'],
  versions: NETWORKING_VERSIONS,
  storage: 'v1beta1',
  printerColumns: [AGE_COLUMN],
  description: 'A template for WorkloadEntries of workloads that register themselves.',
  spec: obj(
    {
      metadata: obj({ labels: mapOf(str()), annotations: mapOf(str()) }),
      template: workloadEntrySpec,
      probe: opaque(),
    },
    { required: ['template'] },
  ),
});

const envoyFilter = istioKind({
  group: NETWORKING,
  kind: 'EnvoyFilter',
  plural: 'envoyfilters',
  scope: 'Namespaced',
  categories: ['istio-io', 'networking-istio-io'],
  versions: ['v1alpha3'],
  storage: 'v1alpha3',
  printerColumns: [AGE_COLUMN],
  description: 'Envoy configuration patches (Envoy-specific; Ambit does not apply them).',
  spec: obj({
    workloadSelector: labelsSelector,
    targetRefs: list(policyTargetRef, { maxItems: 16 }),
    priority: int32(),
    configPatches: list(
      obj({
        applyTo: str(),
        match: opaque(),
        patch: obj({ operation: str(), value: anyValue(), filterClass: str() }),
      }),
    ),
  }),
});

// ---- telemetry.istio.io ----

const telemetry = istioKind({
  group: TELEMETRY,
  kind: 'Telemetry',
  plural: 'telemetries',
  scope: 'Namespaced',
  shortNames: ['telemetry'],
  categories: ['istio-io', 'telemetry-istio-io'],
  versions: ['v1', 'v1alpha1'],
  storage: 'v1alpha1',
  printerColumns: [AGE_COLUMN],
  description: 'Tracing, metrics and access-logging settings for workloads.',
  spec: obj({
    selector: workloadSelector,
    targetRef: policyTargetRef,
    targetRefs: list(policyTargetRef, { maxItems: 16 }),
    tracing: list(opaque()),
    metrics: list(opaque()),
    accessLogging: list(opaque()),
  }),
});

/** Every Istio CRD Ambit ships, in file order. */
export const ISTIO_CRDS: readonly CustomResourceDefinition[] = [
  authorizationPolicy,
  peerAuthentication,
  requestAuthentication,
  destinationRule,
  envoyFilter,
  istioGateway,
  serviceEntry,
  sidecar,
  virtualService,
  workloadEntry,
  workloadGroup,
  telemetry,
];
