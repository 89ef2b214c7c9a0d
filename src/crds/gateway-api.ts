/**
 * Gateway API kinds (gateway.networking.k8s.io) as CRDs, written from the Gateway API reference:
 * same group, names, scope, served versions and storage version as the upstream CRDs (standard
 * channel, plus TCPRoute/TLSRoute and the older served versions of the experimental channel), so
 * either set can be installed over objects made under the other.
 */
import {
  AGE_COLUMN,
  anyValue,
  buildCrd,
  int32,
  int64,
  list,
  mapOf,
  obj,
  oneOfStrings,
  opaque,
  portNumber,
  str,
  strs,
  type KindSpec,
  type Schema,
} from './schema.js';
import type { CustomResourceDefinition } from '../shared/crd.js';

const GROUP = 'gateway.networking.k8s.io';
const CATEGORIES = ['gateway-api'];

/** metav1.Condition as Gateway API status uses it. */
const condition = obj(
  {
    type: str({ maxLength: 316 }),
    status: oneOfStrings(['True', 'False', 'Unknown']),
    observedGeneration: int64({ minimum: 0 }),
    lastTransitionTime: str({ format: 'date-time' }),
    reason: str({ maxLength: 1024 }),
    message: str({ maxLength: 32768 }),
  },
  { required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'] },
);
const conditions = list(condition, { maxItems: 8, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] });

const parentReference = obj(
  {
    group: str(),
    kind: str(),
    namespace: str(),
    name: str(),
    sectionName: str(),
    port: portNumber(),
  },
  { required: ['name'] },
);

const routeStatus = obj(
  {
    parents: list(
      obj({ parentRef: parentReference, controllerName: str(), conditions }, { required: ['parentRef', 'controllerName'] }),
      { maxItems: 32 },
    ),
  },
  { required: ['parents'] },
);

const labelSelector = obj({
  matchLabels: mapOf(str()),
  matchExpressions: list(obj({ key: str(), operator: str(), values: strs() }, { required: ['key', 'operator'] })),
});

const headerMatch = obj(
  { type: oneOfStrings(['Exact', 'RegularExpression']), name: str(), value: str() },
  { required: ['name', 'value'] },
);
const headerValues = list(obj({ name: str(), value: str() }, { required: ['name', 'value'] }), { maxItems: 16 });
const headerFilter = obj({ set: headerValues, add: headerValues, remove: strs({ maxItems: 16 }) });
const pathModifier = obj(
  { type: oneOfStrings(['ReplaceFullPath', 'ReplacePrefixMatch']), replaceFullPath: str(), replacePrefixMatch: str() },
  { required: ['type'] },
);
const objectReference = obj({ group: str(), kind: str(), name: str() }, { required: ['group', 'kind', 'name'] });

function backendRef(filters?: Schema): Schema {
  return obj(
    {
      group: str(),
      kind: str(),
      name: str(),
      namespace: str(),
      port: portNumber(),
      weight: int32({ minimum: 0, maximum: 1_000_000 }),
      ...(filters ? { filters: list(filters, { maxItems: 16 }) } : {}),
    },
    { required: ['name'] },
  );
}

const mirror = obj(
  {
    backendRef: backendRef(),
    percent: int32({ minimum: 0, maximum: 100 }),
    fraction: obj({ numerator: int32({ minimum: 0 }), denominator: int32({ minimum: 1 }) }, { required: ['numerator'] }),
  },
  { required: ['backendRef'] },
);

const HTTP_FILTER_TYPES = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'RequestRedirect', 'URLRewrite', 'ExtensionRef', 'CORS'];
const GRPC_FILTER_TYPES = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'ExtensionRef'];

const httpFilter = obj(
  {
    type: oneOfStrings(HTTP_FILTER_TYPES),
    requestHeaderModifier: headerFilter,
    responseHeaderModifier: headerFilter,
    requestMirror: mirror,
    requestRedirect: obj({
      scheme: oneOfStrings(['http', 'https']),
      hostname: str(),
      path: pathModifier,
      port: portNumber(),
      statusCode: int32({ enum: [301, 302, 303, 307, 308] }),
    }),
    urlRewrite: obj({ hostname: str(), path: pathModifier }),
    extensionRef: objectReference,
    cors: opaque('CORS settings (kept as written).'),
  },
  { required: ['type'] },
);

const grpcFilter = obj(
  {
    type: oneOfStrings(GRPC_FILTER_TYPES),
    requestHeaderModifier: headerFilter,
    responseHeaderModifier: headerFilter,
    requestMirror: mirror,
    extensionRef: objectReference,
  },
  { required: ['type'] },
);

const hostnames = strs({ maxItems: 16 });
const parentRefs = list(parentReference, { maxItems: 32 });

function gatewayKind(k: Omit<KindSpec, 'group' | 'categories'>): CustomResourceDefinition {
  return buildCrd({ ...k, group: GROUP, categories: CATEGORIES });
}

const gatewayClass = gatewayKind({
  kind: 'GatewayClass',
  plural: 'gatewayclasses',
  scope: 'Cluster',
  shortNames: ['gc'],
  versions: ['v1', 'v1beta1'],
  storage: 'v1',
  printerColumns: [
    { name: 'Controller', type: 'string', jsonPath: '.spec.controllerName' },
    { name: 'Accepted', type: 'string', jsonPath: '.status.conditions[?(@.type=="Accepted")].status' },
    AGE_COLUMN,
    { name: 'Description', type: 'string', jsonPath: '.spec.description', priority: 1 },
  ],
  description: 'A class of Gateways and the controller that implements it.',
  required: ['spec'],
  spec: obj(
    {
      controllerName: str({ minLength: 1, maxLength: 253 }),
      parametersRef: obj({ group: str(), kind: str(), name: str(), namespace: str() }, { required: ['group', 'kind', 'name'] }),
      description: str({ maxLength: 64 }),
    },
    { required: ['controllerName'] },
  ),
  status: obj({ conditions, supportedFeatures: list(anyValue(), { maxItems: 64 }) }),
});

const listener = obj(
  {
    name: str({ minLength: 1, maxLength: 253 }),
    hostname: str(),
    port: portNumber(),
    protocol: str({ minLength: 1, maxLength: 255 }),
    tls: obj({
      mode: oneOfStrings(['Terminate', 'Passthrough']),
      certificateRefs: list(obj({ group: str(), kind: str(), name: str(), namespace: str() }, { required: ['name'] }), { maxItems: 64 }),
      frontendValidation: opaque(),
      options: mapOf(str(), { maxProperties: 16 }),
    }),
    allowedRoutes: obj({
      namespaces: obj({ from: oneOfStrings(['All', 'Same', 'Selector']), selector: labelSelector }),
      kinds: list(obj({ group: str(), kind: str() }, { required: ['kind'] }), { maxItems: 8 }),
    }),
  },
  { required: ['name', 'port', 'protocol'] },
);

const gateway = gatewayKind({
  kind: 'Gateway',
  plural: 'gateways',
  scope: 'Namespaced',
  shortNames: ['gtw'],
  versions: ['v1', 'v1beta1'],
  storage: 'v1',
  printerColumns: [
    { name: 'Class', type: 'string', jsonPath: '.spec.gatewayClassName' },
    { name: 'Address', type: 'string', jsonPath: '.status.addresses[*].value' },
    { name: 'Programmed', type: 'string', jsonPath: '.status.conditions[?(@.type=="Programmed")].status' },
    AGE_COLUMN,
  ],
  description: 'A request for a load balancer (or a waypoint) of a GatewayClass: its listeners and addresses.',
  required: ['spec'],
  spec: obj(
    {
      gatewayClassName: str({ minLength: 1, maxLength: 253 }),
      listeners: list(listener, { minItems: 1, maxItems: 64, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] }),
      addresses: list(obj({ type: str(), value: str() }, { required: ['value'] }), { maxItems: 16 }),
      infrastructure: obj({
        labels: mapOf(str(), { maxProperties: 8 }),
        annotations: mapOf(str(), { maxProperties: 8 }),
        parametersRef: objectReference,
      }),
      backendTLS: opaque(),
    },
    { required: ['gatewayClassName', 'listeners'] },
  ),
  status: obj({
    addresses: list(obj({ type: str(), value: str() }, { required: ['value'] }), { maxItems: 16 }),
    conditions,
    listeners: list(
      obj(
        {
          name: str(),
          supportedKinds: list(obj({ group: str(), kind: str() }, { required: ['kind'] }), { maxItems: 8 }),
          attachedRoutes: int32(),
          conditions,
        },
        { required: ['name', 'supportedKinds', 'attachedRoutes', 'conditions'] },
      ),
      { maxItems: 64, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] },
    ),
  }),
});

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

const httpRoute = gatewayKind({
  kind: 'HTTPRoute',
  plural: 'httproutes',
  scope: 'Namespaced',
  versions: ['v1', 'v1beta1'],
  storage: 'v1',
  printerColumns: [{ name: 'Hostnames', type: 'string', jsonPath: '.spec.hostnames' }, AGE_COLUMN],
  description: 'HTTP routing from Gateway listeners (or a waypoint) to backends.',
  required: ['spec'],
  spec: obj({
    parentRefs,
    hostnames,
    rules: list(
      obj({
        name: str(),
        matches: list(
          obj({
            path: obj({ type: oneOfStrings(['Exact', 'PathPrefix', 'RegularExpression']), value: str({ maxLength: 1024 }) }),
            headers: list(headerMatch, { maxItems: 16 }),
            queryParams: list(headerMatch, { maxItems: 16 }),
            method: oneOfStrings(HTTP_METHODS),
          }),
          { maxItems: 64 },
        ),
        filters: list(httpFilter, { maxItems: 16 }),
        backendRefs: list(backendRef(httpFilter), { maxItems: 16 }),
        timeouts: obj({ request: str(), backendRequest: str() }),
        retry: obj({ codes: list(int32({ minimum: 400, maximum: 599 })), attempts: int32({ minimum: 0 }), backoff: str() }),
        sessionPersistence: opaque(),
      }),
      { maxItems: 16 },
    ),
  }),
  status: routeStatus,
});

const grpcRoute = gatewayKind({
  kind: 'GRPCRoute',
  plural: 'grpcroutes',
  scope: 'Namespaced',
  versions: ['v1', 'v1alpha2'],
  storage: 'v1',
  deprecated: ['v1alpha2'],
  printerColumns: [{ name: 'Hostnames', type: 'string', jsonPath: '.spec.hostnames' }, AGE_COLUMN],
  description: 'gRPC routing (by service and method) from Gateway listeners (or a waypoint) to backends.',
  required: ['spec'],
  spec: obj({
    parentRefs,
    hostnames,
    rules: list(
      obj({
        name: str(),
        matches: list(
          obj({
            method: obj({ type: oneOfStrings(['Exact', 'RegularExpression']), service: str(), method: str() }),
            headers: list(headerMatch, { maxItems: 16 }),
          }),
          { maxItems: 64 },
        ),
        filters: list(grpcFilter, { maxItems: 16 }),
        backendRefs: list(backendRef(grpcFilter), { maxItems: 16 }),
        sessionPersistence: opaque(),
      }),
      { maxItems: 16 },
    ),
  }),
  status: routeStatus,
});

const l4Rules = list(obj({ name: str(), backendRefs: list(backendRef(), { minItems: 1, maxItems: 16 }) }), { minItems: 1, maxItems: 16 });

const tcpRoute = gatewayKind({
  kind: 'TCPRoute',
  plural: 'tcproutes',
  scope: 'Namespaced',
  versions: ['v1alpha2'],
  storage: 'v1alpha2',
  printerColumns: [AGE_COLUMN],
  description: 'TCP forwarding from a Gateway listener to backends.',
  required: ['spec'],
  spec: obj({ parentRefs, rules: l4Rules }, { required: ['rules'] }),
  status: routeStatus,
});

const tlsRoute = gatewayKind({
  kind: 'TLSRoute',
  plural: 'tlsroutes',
  scope: 'Namespaced',
  versions: ['v1alpha2'],
  storage: 'v1alpha2',
  printerColumns: [AGE_COLUMN],
  description: 'TLS forwarding by SNI hostname from a Gateway listener to backends.',
  required: ['spec'],
  spec: obj({ parentRefs, hostnames, rules: l4Rules }, { required: ['rules'] }),
  status: routeStatus,
});

const referenceGrant = gatewayKind({
  kind: 'ReferenceGrant',
  plural: 'referencegrants',
  scope: 'Namespaced',
  shortNames: ['refgrant'],
  versions: ['v1beta1', 'v1alpha2'],
  storage: 'v1beta1',
  deprecated: ['v1alpha2'],
  printerColumns: [AGE_COLUMN],
  description: 'Allows objects in other namespaces to refer to objects in this one (e.g. a route to a Service, a Gateway to a Secret).',
  spec: obj(
    {
      from: list(obj({ group: str(), kind: str(), namespace: str() }, { required: ['group', 'kind', 'namespace'] }), { minItems: 1, maxItems: 16 }),
      to: list(obj({ group: str(), kind: str(), name: str() }, { required: ['group', 'kind'] }), { minItems: 1, maxItems: 16 }),
    },
    { required: ['from', 'to'] },
  ),
});

/** Every Gateway API CRD Ambit ships, in file order. */
export const GATEWAY_API_CRDS: readonly CustomResourceDefinition[] = [
  gatewayClass,
  gateway,
  grpcRoute,
  httpRoute,
  referenceGrant,
  tcpRoute,
  tlsRoute,
];
