/**
 * The fields Ambit serves, per kind: the one table both the field-warning walker
 * (field-warnings.ts: every other field of an object is reported as not supported) and the test
 * that watches translation read objects (test/unit/translate/served-fields.test.ts: translation
 * reads only these fields, and reads every one of them) are held to.
 *
 * A path names a field from the object's root: `spec.hosts`; `[]` steps into every list item
 * (`spec.http[].name`); `{}` steps into every entry of a map whose keys are the user's
 * (`spec.selector.matchLabels{}`). A path covers its whole subtree. `=A|B` after a path lists the
 * values served (a value outside the list is reported).
 */
import { REF_GATEWAY_API_GATEWAY, REF_ISTIO_GATEWAY } from '../objects.js';

/** One kind's served fields, and for kinds that have no effect at all, why. */
export interface ServedKind {
  fields: readonly string[];
  /** Set for kinds whose objects are accepted but change nothing (Istio's sidecar-only kinds). */
  ignoredBecause?: string;
}

const STRING_MATCH = ['exact', 'prefix', 'regex'];

/** `base.{a,b}` for each of `leaves`. */
function under(base: string, leaves: readonly string[]): string[] {
  return leaves.map((l) => `${base}.${l}`);
}

const HEADER_OPS = (base: string): string[] => [`${base}.set{}`, `${base}.add{}`, `${base}.remove`];

const VS_MATCH = 'spec.http[].match[]';
const VS_ROUTE = 'spec.http[]';

/** A VirtualService `tcp` or `tls` route: port matches and weighted destinations. */
const L4_ROUTE = (base: string): string[] => [
  `${base}.match[].port`,
  `${base}.match[].gateways`,
  `${base}.match[].sourceNamespace`,
  `${base}.match[].sourceLabels{}`,
  `${base}.match[].destinationSubnets`,
  `${base}.route[].destination.host`,
  `${base}.route[].destination.subset`,
  `${base}.route[].destination.port.number`,
  `${base}.route[].weight`,
];

const VIRTUAL_SERVICE: readonly string[] = [
  'spec.hosts',
  'spec.gateways',
  `${VS_ROUTE}.name`,
  ...under(`${VS_MATCH}.uri`, STRING_MATCH),
  ...under(`${VS_MATCH}.method`, ['exact']),
  ...under(`${VS_MATCH}.headers{}`, STRING_MATCH),
  ...under(`${VS_MATCH}.withoutHeaders{}`, STRING_MATCH),
  ...under(`${VS_MATCH}.queryParams{}`, STRING_MATCH),
  `${VS_MATCH}.port`,
  `${VS_MATCH}.ignoreUriCase`,
  `${VS_MATCH}.gateways`,
  `${VS_MATCH}.sourceNamespace`,
  `${VS_MATCH}.sourceLabels{}`,
  `${VS_ROUTE}.route[].destination.host`,
  `${VS_ROUTE}.route[].destination.subset`,
  `${VS_ROUTE}.route[].destination.port.number`,
  `${VS_ROUTE}.route[].weight`,
  ...under(`${VS_ROUTE}.redirect`, ['uri', 'authority', 'port', 'derivePort', 'scheme', 'redirectCode']),
  ...under(`${VS_ROUTE}.corsPolicy.allowOrigins[]`, STRING_MATCH),
  ...under(`${VS_ROUTE}.corsPolicy`, ['allowOrigin', 'allowMethods', 'allowHeaders', 'exposeHeaders', 'maxAge', 'allowCredentials', 'unmatchedPreflights']),
  `${VS_ROUTE}.directResponse.status`,
  `${VS_ROUTE}.directResponse.body.string`,
  `${VS_ROUTE}.rewrite.uri`,
  `${VS_ROUTE}.rewrite.authority`,
  `${VS_ROUTE}.mirror.host`,
  `${VS_ROUTE}.mirror.subset`,
  `${VS_ROUTE}.mirror.port.number`,
  `${VS_ROUTE}.mirrorPercentage.value`,
  `${VS_ROUTE}.timeout`,
  `${VS_ROUTE}.retries.attempts`,
  `${VS_ROUTE}.retries.perTryTimeout`,
  `${VS_ROUTE}.retries.retryOn`,
  `${VS_ROUTE}.fault.delay.fixedDelay`,
  `${VS_ROUTE}.fault.delay.percentage.value`,
  `${VS_ROUTE}.fault.delay.percent`,
  `${VS_ROUTE}.fault.abort.httpStatus`,
  `${VS_ROUTE}.fault.abort.grpcStatus`,
  `${VS_ROUTE}.fault.abort.percentage.value`,
  ...HEADER_OPS(`${VS_ROUTE}.headers.request`),
  ...HEADER_OPS(`${VS_ROUTE}.headers.response`),
  ...L4_ROUTE('spec.tcp[]'),
  ...L4_ROUTE('spec.tls[]'),
  'spec.tls[].match[].sniHosts',
];

const CONNECTION_POOL = (base: string): string[] => [
  `${base}.connectionPool.tcp.maxConnections`,
  `${base}.connectionPool.http.http1MaxPendingRequests`,
  `${base}.connectionPool.http.http2MaxRequests`,
  `${base}.connectionPool.http.maxRequestsPerConnection`,
];
const OUTLIER = (base: string): string[] =>
  under(`${base}.outlierDetection`, ['interval', 'baseEjectionTime', 'maxEjectionPercent', 'consecutive5xxErrors', 'consecutiveErrors', 'consecutiveGatewayErrors']);

const DESTINATION_RULE: readonly string[] = [
  'spec.host',
  ...CONNECTION_POOL('spec.trafficPolicy'),
  ...OUTLIER('spec.trafficPolicy'),
  'spec.subsets[].name',
  'spec.subsets[].labels{}',
  ...CONNECTION_POOL('spec.subsets[].trafficPolicy'),
  ...OUTLIER('spec.subsets[].trafficPolicy'),
];

const ISTIO_GATEWAY: readonly string[] = [
  'spec.selector{}',
  'spec.servers[].port.number',
  'spec.servers[].port.protocol',
  'spec.servers[].port.name',
  'spec.servers[].hosts',
  'spec.servers[].tls.httpsRedirect',
  'spec.servers[].tls.mode=SIMPLE|MUTUAL|OPTIONAL_MUTUAL|PASSTHROUGH|ISTIO_MUTUAL',
  'spec.servers[].tls.credentialName',
];

const TARGET_REFS = ['spec.targetRef.kind', 'spec.targetRef.name', 'spec.targetRef.group', 'spec.targetRefs[].kind', 'spec.targetRefs[].name', 'spec.targetRefs[].group'];

const AUTHZ_SOURCE = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks', 'serviceAccounts', 'notServiceAccounts', 'requestPrincipals', 'notRequestPrincipals'];
const AUTHZ_OPERATION = ['hosts', 'notHosts', 'paths', 'notPaths', 'methods', 'notMethods', 'ports', 'notPorts'];

const AUTHORIZATION_POLICY: readonly string[] = [
  'spec.selector.matchLabels{}',
  ...TARGET_REFS,
  'spec.action=ALLOW|DENY|AUDIT|CUSTOM',
  'spec.provider.name',
  ...under('spec.rules[].from[].source', AUTHZ_SOURCE),
  ...under('spec.rules[].to[].operation', AUTHZ_OPERATION),
  'spec.rules[].when[].key',
  'spec.rules[].when[].values',
  'spec.rules[].when[].notValues',
];

const PEER_AUTHENTICATION: readonly string[] = ['spec.selector.matchLabels{}', 'spec.mtls.mode', 'spec.portLevelMtls{}.mode'];

const GW_MATCH = 'spec.rules[].matches[]';
const GW_VALUE_MATCH = ['name', 'value', 'type'];
const GW_OBJECT_REF = ['kind', 'group', 'name', 'namespace', 'port'];
const GW_BACKEND = [...GW_OBJECT_REF, 'weight'];
const GW_PARENT = under('spec.parentRefs[]', ['kind', 'group', 'name', 'namespace']);
/** TCPRoute and TLSRoute parents: a Service (its port limits the route to that port). */
const GW_L4_PARENT = under('spec.parentRefs[]', ['kind', 'group', 'name', 'namespace', 'port', 'sectionName']);
const GW_HEADER_MODIFIER = (base: string): string[] => [`${base}.set[].name`, `${base}.set[].value`, `${base}.add[].name`, `${base}.add[].value`, `${base}.remove`];

const HTTP_ROUTE: readonly string[] = [
  ...GW_PARENT,
  'spec.hostnames',
  `${GW_MATCH}.path.type`,
  `${GW_MATCH}.path.value`,
  ...under(`${GW_MATCH}.headers[]`, GW_VALUE_MATCH),
  ...under(`${GW_MATCH}.queryParams[]`, GW_VALUE_MATCH),
  `${GW_MATCH}.method`,
  'spec.rules[].filters[].type=RequestHeaderModifier|ResponseHeaderModifier|URLRewrite|RequestMirror',
  ...GW_HEADER_MODIFIER('spec.rules[].filters[].requestHeaderModifier'),
  ...GW_HEADER_MODIFIER('spec.rules[].filters[].responseHeaderModifier'),
  'spec.rules[].filters[].urlRewrite.hostname',
  'spec.rules[].filters[].urlRewrite.path.type',
  'spec.rules[].filters[].urlRewrite.path.replacePrefixMatch',
  'spec.rules[].filters[].urlRewrite.path.replaceFullPath',
  ...under('spec.rules[].filters[].requestMirror.backendRef', GW_OBJECT_REF),
  'spec.rules[].filters[].requestMirror.percent',
  ...under('spec.rules[].backendRefs[]', GW_BACKEND),
  'spec.rules[].timeouts.request',
  'spec.rules[].timeouts.backendRequest',
  'spec.rules[].retry.attempts',
  'spec.rules[].retry.codes',
  'spec.rules[].retry.backoff',
];

const GRPC_ROUTE: readonly string[] = [
  ...GW_PARENT,
  'spec.hostnames',
  `${GW_MATCH}.method.service`,
  `${GW_MATCH}.method.method`,
  `${GW_MATCH}.method.type`,
  ...under(`${GW_MATCH}.headers[]`, GW_VALUE_MATCH),
  'spec.rules[].filters[].type=RequestHeaderModifier|ResponseHeaderModifier|RequestMirror',
  ...GW_HEADER_MODIFIER('spec.rules[].filters[].requestHeaderModifier'),
  ...GW_HEADER_MODIFIER('spec.rules[].filters[].responseHeaderModifier'),
  ...under('spec.rules[].filters[].requestMirror.backendRef', GW_OBJECT_REF),
  'spec.rules[].filters[].requestMirror.percent',
  ...under('spec.rules[].backendRefs[]', GW_BACKEND),
];

const GATEWAY_API_GATEWAY: readonly string[] = [
  'spec.gatewayClassName',
  'spec.listeners[].name',
  'spec.listeners[].port',
  'spec.listeners[].protocol=HTTP|HTTPS|TCP|TLS|HBONE',
  'spec.listeners[].hostname',
  'spec.listeners[].tls.mode=Terminate|Passthrough',
  'spec.listeners[].allowedRoutes.namespaces.from=All|Same|Selector',
  'spec.listeners[].allowedRoutes.namespaces.selector',
  ...under('spec.listeners[].allowedRoutes.kinds[]', ['group', 'kind']),
  ...under('spec.listeners[].tls.certificateRefs[]', ['group', 'kind', 'name', 'namespace']),
];

const NOT_FOR_AMBIENT = 'it configures sidecar proxies, which ambient mode does not run';

/**
 * Served fields by kind ref (objects.ts). Kinds absent here (core Kubernetes kinds) are not
 * checked field by field: Ambit reads what it needs of them and the rest is not mesh config.
 */
export const SERVED_FIELDS: ReadonlyMap<string, ServedKind> = new Map<string, ServedKind>([
  ['VirtualService', { fields: VIRTUAL_SERVICE }],
  ['DestinationRule', { fields: DESTINATION_RULE }],
  [REF_ISTIO_GATEWAY, { fields: ISTIO_GATEWAY }],
  ['AuthorizationPolicy', { fields: AUTHORIZATION_POLICY }],
  ['PeerAuthentication', { fields: PEER_AUTHENTICATION }],
  [
    'RequestAuthentication',
    {
      fields: [
        ...TARGET_REFS,
        'spec.selector.matchLabels{}',
        ...under('spec.jwtRules[]', ['issuer', 'audiences', 'jwksUri', 'jwks', 'fromParams', 'outputPayloadToHeader', 'forwardOriginalToken']),
        ...under('spec.jwtRules[].fromHeaders[]', ['name', 'prefix']),
      ],
    },
  ],
  [
    'ServiceEntry',
    {
      fields: [
        'spec.hosts',
        'spec.addresses',
        ...under('spec.ports[]', ['number', 'protocol', 'name', 'targetPort']),
        'spec.location',
        'spec.resolution=NONE|STATIC|DNS|DNS_ROUND_ROBIN',
        ...under('spec.endpoints[]', ['address', 'ports{}', 'labels{}', 'serviceAccount']),
        'spec.workloadSelector.labels{}',
        'spec.subjectAltNames',
        'spec.exportTo',
      ],
    },
  ],
  [
    'Telemetry',
    {
      fields: [...TARGET_REFS, 'spec.selector.matchLabels{}', 'spec.accessLogging[].disabled', 'spec.accessLogging[].filter.expression', 'spec.accessLogging[].providers[].name', 'spec.metrics[].providers[].name', 'spec.metrics[].overrides[].match.metric', 'spec.metrics[].overrides[].match.mode', 'spec.metrics[].overrides[].disabled', 'spec.metrics[].overrides[].tagOverrides{}.operation', 'spec.metrics[].overrides[].tagOverrides{}.value', 'spec.tracing[].randomSamplingPercentage', 'spec.tracing[].disableSpanReporting'],
    },
  ],
  ['Sidecar', { fields: [], ignoredBecause: NOT_FOR_AMBIENT }],
  ['EnvoyFilter', { fields: [], ignoredBecause: 'it patches Envoy configuration, and Ambit\'s proxies are not Envoy' }],
  ['WorkloadEntry', { fields: [], ignoredBecause: 'workloads outside Kubernetes are not served' }],
  ['WorkloadGroup', { fields: [], ignoredBecause: 'workloads outside Kubernetes are not served' }],
  ['Ingress', { fields: [], ignoredBecause: 'Kubernetes Ingress is not served; use an Istio Gateway or a Gateway API Gateway of class istio' }],
  [REF_GATEWAY_API_GATEWAY, { fields: GATEWAY_API_GATEWAY }],
  ['HTTPRoute', { fields: HTTP_ROUTE }],
  ['GRPCRoute', { fields: GRPC_ROUTE }],
  ['TCPRoute', { fields: [...GW_L4_PARENT, ...under('spec.rules[].backendRefs[]', GW_BACKEND)] }],
  ['TLSRoute', { fields: [...GW_L4_PARENT, 'spec.hostnames', ...under('spec.rules[].backendRefs[]', GW_BACKEND)] }],
  ['ReferenceGrant', { fields: ['spec.from[].group', 'spec.from[].kind=HTTPRoute|GRPCRoute|TCPRoute|TLSRoute', 'spec.from[].namespace', 'spec.to[].group', 'spec.to[].kind=Service', 'spec.to[].name'] }],
]);
