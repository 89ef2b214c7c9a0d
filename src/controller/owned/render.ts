/**
 * What a Gateway API Gateway asks the controller to run (pure): for a waypoint class
 * (`istio-waypoint`, `ambit-waypoint`) a ServiceAccount, Deployment and ClusterIP Service named
 * after the Gateway, pods running `ambit waypoint`; for an ingress class (`istio`, `ambit`) the
 * same three named `<gateway>-<class>`, pods running `ambit waypoint` in gateway mode, and a
 * LoadBalancer Service with the listeners' ports (Istio's names and labels in both cases, so
 * istioctl, Kiali and Istio's docs apply). Every object is owned by its Gateway (ownerReference,
 * controller: true), so deleting the Gateway deletes them. Also Istio's own
 * `istio-ingressgateway` (not owned by anything) for clusters and local meshes that want one for
 * Istio `Gateway` objects, which select gateway pods by labels.
 *
 * Pods authenticate with a projected service-account token of audience `istio-ca` and trust the
 * mesh root from ConfigMap `ambit-ca-root-cert` in their namespace (published by the controller).
 */
import { GROUP_GATEWAY_API, type KubeObject } from '../objects.js';
import {
  ENV_CA_ROOT_FILE,
  ENV_CLUSTER_ID,
  ENV_CONTROLLER_ADDR,
  ENV_CONTROLLER_SERVER_NAME,
  ENV_LOG_LEVEL,
  ENV_NODE_NAME,
  ENV_POD_IP,
  ENV_POD_NAME,
  ENV_POD_NAMESPACE,
  ENV_SERVICE_ACCOUNT,
  ENV_TOKEN_FILE,
  ENV_TRUST_DOMAIN,
  ENV_WAYPOINT_MODE,
  ENV_WAYPOINT_NAME,
} from '../../shared/env.js';
import { LABEL_GATEWAY_NAME, WAYPOINT_CLASSES } from '../translate/waypoints.js';
import { INGRESS_CLASSES } from '../translate/gateway-api-listeners.js';
import { asArray, asRecord, asString, nsOf } from '../translate/util.js';

/** Label Istio (and Kiali) use to tell controller-made gateway workloads. */
export const LABEL_MANAGED = 'gateway.istio.io/managed';
export const MANAGED_WAYPOINT = 'istio.io-mesh-controller';
export const MANAGED_INGRESS = 'istio.io-gateway-controller';
/** Marks every object this controller creates (its informers select on it). */
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'ambit-controller';
/** A Gateway annotation choosing the ingress Service type (as Istio's). */
export const ANNOTATION_SERVICE_TYPE = 'networking.istio.io/service-type';

export const TOKEN_DIR = '/var/run/secrets/tokens';
export const TOKEN_FILE = `${TOKEN_DIR}/istio-token`;
export const CA_ROOT_DIR = '/var/run/secrets/ambit/ca';
export const CA_ROOT_FILE = `${CA_ROOT_DIR}/root-cert.pem`;
export const CA_ROOT_CONFIGMAP = 'ambit-ca-root-cert';
export const TOKEN_AUDIENCE = 'istio-ca';

/** What the pods need to reach the controller, and the image they run. */
export interface ProxyTemplate {
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** `host:port` of the controller as pods reach it (e.g. ambit-controller.istio-system.svc:15012). */
  controllerAddress: string;
  /** Name to check in the controller's certificate when the address host is not in it. */
  controllerServerName?: string;
  trustDomain: string;
  clusterId: string;
  logLevel: string;
}

export type GatewayRole = 'waypoint' | 'ingress';

/** The objects one Gateway asks for. */
export interface OwnedObjects {
  role: GatewayRole;
  serviceAccount: KubeObject;
  deployment: KubeObject;
  service: KubeObject;
}

/** Whether a Gateway API Gateway is a waypoint, an ingress gateway, or of a class this controller does not serve. */
export function gatewayRole(gw: KubeObject): GatewayRole | undefined {
  if (gw.kind !== 'Gateway' || !gw.apiVersion.startsWith(`${GROUP_GATEWAY_API}/`)) return undefined;
  const cls = asString(gw.spec?.['gatewayClassName']) ?? '';
  if (WAYPOINT_CLASSES.includes(cls)) return 'waypoint';
  if (INGRESS_CLASSES.includes(cls)) return 'ingress';
  return undefined;
}

/** Name of the objects made for a Gateway: the Gateway's own for waypoints, `<gateway>-<class>` for ingress. */
export function ownedName(gw: KubeObject, role: GatewayRole): string {
  return role === 'waypoint' ? gw.metadata.name : `${gw.metadata.name}-${asString(gw.spec?.['gatewayClassName'])}`;
}

/**
 * The ServiceAccount, Deployment and Service a Gateway of one of this controller's classes asks
 * for, each owned by it; undefined for other classes or a Gateway without a uid (not stored yet).
 */
export function renderOwned(gw: KubeObject, t: ProxyTemplate): OwnedObjects | undefined {
  const role = gatewayRole(gw);
  if (!role || !gw.metadata.uid) return undefined;
  const ns = nsOf(gw);
  const name = ownedName(gw, role);
  const labels = {
    [LABEL_GATEWAY_NAME]: gw.metadata.name,
    [LABEL_MANAGED]: role === 'waypoint' ? MANAGED_WAYPOINT : MANAGED_INGRESS,
    [LABEL_MANAGED_BY]: MANAGED_BY,
  };
  const owner = { apiVersion: gw.apiVersion, kind: 'Gateway', name: gw.metadata.name, uid: gw.metadata.uid, controller: true, blockOwnerDeletion: true };
  const metadata = (): KubeObject['metadata'] => ({ name, namespace: ns, labels: { ...labels }, ownerReferences: [{ ...owner }] });
  const listenerPorts = role === 'ingress' ? ingressPorts(gw) : [];
  const serviceAccount: KubeObject = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: metadata() };
  const deployment: KubeObject = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: metadata(),
    spec: {
      selector: { matchLabels: { [LABEL_GATEWAY_NAME]: gw.metadata.name } },
      template: proxyPodTemplate({
        role,
        labels: { ...labels, 'service.istio.io/canonical-name': name, ...(role === 'waypoint' ? { 'istio.io/gateway-name': gw.metadata.name } : {}) },
        serviceAccount: name,
        workloadName: role === 'waypoint' ? gw.metadata.name : name,
        ports: role === 'waypoint' ? [{ name: 'mesh', containerPort: 15008, protocol: 'TCP' }] : listenerPorts.map((p) => ({ name: p.name, containerPort: p.port, protocol: 'TCP' })),
        template: t,
      }),
    },
  };
  const serviceType = role === 'waypoint' ? 'ClusterIP' : (asString(gw.metadata.annotations?.[ANNOTATION_SERVICE_TYPE]) ?? 'LoadBalancer');
  const service: KubeObject = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadata(),
    spec: {
      type: serviceType,
      selector: { [LABEL_GATEWAY_NAME]: gw.metadata.name },
      ports: [
        { name: 'status-port', port: 15021, targetPort: 15021, protocol: 'TCP', appProtocol: 'tcp' },
        ...(role === 'waypoint'
          ? [{ name: 'mesh', port: 15008, targetPort: 15008, protocol: 'TCP', appProtocol: 'all' }]
          : listenerPorts.map((p) => ({ name: p.name, port: p.port, targetPort: p.port, protocol: 'TCP' }))),
      ],
    },
  };
  return { role, serviceAccount, deployment, service };
}

/** One port per distinct listener port, named `<protocol>-<port>` as Istio names them. */
function ingressPorts(gw: KubeObject): Array<{ name: string; port: number }> {
  const out = new Map<number, string>();
  for (const l of asArray(gw.spec?.['listeners']).map(asRecord)) {
    const port = l['port'];
    if (typeof port !== 'number' || out.has(port) || [15000, 15008, 15020, 15021].includes(port)) continue;
    out.set(port, `${(asString(l['protocol']) ?? 'tcp').toLowerCase()}-${port}`.slice(0, 15).replace(/-+$/, ''));
  }
  return [...out].sort((a, b) => a[0] - b[0]).map(([port, name]) => ({ name, port }));
}

/** Istio's default ingress gateway: `istio-system/istio-ingressgateway`, pods labelled `istio: ingressgateway`. */
export const ISTIO_INGRESS_GATEWAY = {
  namespace: 'istio-system',
  name: 'istio-ingressgateway',
  labels: { istio: 'ingressgateway', app: 'istio-ingressgateway' } as Readonly<Record<string, string>>,
} as const;

/**
 * Istio's `istio-ingressgateway` (ServiceAccount, Deployment, LoadBalancer Service on 80 and 443)
 * running `ambit waypoint` in gateway mode: the pods Istio `Gateway` objects with selector
 * `istio: ingressgateway` are served by. Owned by nothing: whoever installs it (a cluster
 * operator, local mode) also removes it.
 */
export function renderIstioIngressGateway(t: ProxyTemplate): Omit<OwnedObjects, 'role'> {
  const g = ISTIO_INGRESS_GATEWAY;
  const labels = { ...g.labels, [LABEL_MANAGED_BY]: MANAGED_BY };
  const metadata = (): KubeObject['metadata'] => ({ name: g.name, namespace: g.namespace, labels: { ...labels } });
  return {
    serviceAccount: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: metadata() },
    deployment: {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: metadata(),
      spec: {
        selector: { matchLabels: { ...g.labels } },
        template: proxyPodTemplate({
          role: 'ingress',
          labels: { ...labels, 'service.istio.io/canonical-name': g.name },
          serviceAccount: g.name,
          workloadName: g.name,
          ports: [
            { name: 'http2', containerPort: 80, protocol: 'TCP' },
            { name: 'https', containerPort: 443, protocol: 'TCP' },
          ],
          template: t,
        }),
      },
    },
    service: {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: metadata(),
      spec: {
        type: 'LoadBalancer',
        selector: { ...g.labels },
        ports: [
          { name: 'status-port', port: 15021, targetPort: 15021, protocol: 'TCP' },
          { name: 'http2', port: 80, targetPort: 80, protocol: 'TCP' },
          { name: 'https', port: 443, targetPort: 443, protocol: 'TCP' },
        ],
      },
    },
  };
}

function fieldEnv(name: string, fieldPath: string): Record<string, unknown> {
  return { name, valueFrom: { fieldRef: { fieldPath } } };
}

/** The pod template of a waypoint or gateway: `ambit waypoint`, its token, the mesh root, probes. */
function proxyPodTemplate(p: {
  role: GatewayRole;
  labels: Record<string, string>;
  serviceAccount: string;
  workloadName: string;
  ports: Array<{ name: string; containerPort: number; protocol: string }>;
  template: ProxyTemplate;
}): Record<string, unknown> {
  const t = p.template;
  const env: Array<Record<string, unknown>> = [
    fieldEnv(ENV_NODE_NAME, 'spec.nodeName'),
    fieldEnv(ENV_POD_NAME, 'metadata.name'),
    fieldEnv(ENV_POD_NAMESPACE, 'metadata.namespace'),
    fieldEnv(ENV_POD_IP, 'status.podIP'),
    fieldEnv(ENV_SERVICE_ACCOUNT, 'spec.serviceAccountName'),
    { name: ENV_WAYPOINT_NAME, value: p.workloadName },
    { name: ENV_WAYPOINT_MODE, value: p.role === 'waypoint' ? 'waypoint' : 'gateway' },
    { name: ENV_CONTROLLER_ADDR, value: t.controllerAddress },
    ...(t.controllerServerName ? [{ name: ENV_CONTROLLER_SERVER_NAME, value: t.controllerServerName }] : []),
    { name: ENV_CA_ROOT_FILE, value: CA_ROOT_FILE },
    { name: ENV_TOKEN_FILE, value: TOKEN_FILE },
    { name: ENV_TRUST_DOMAIN, value: t.trustDomain },
    { name: ENV_CLUSTER_ID, value: t.clusterId },
    { name: ENV_LOG_LEVEL, value: t.logLevel },
  ];
  return {
    metadata: {
      labels: { ...p.labels, 'istio.io/dataplane-mode': 'none', 'sidecar.istio.io/inject': 'false' },
      annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15020', 'prometheus.io/path': '/metrics' },
    },
    spec: {
      serviceAccountName: p.serviceAccount,
      // The pod proves who it is with the projected istio-ca token only.
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 30,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 1337,
        runAsGroup: 1337,
        fsGroup: 1337,
        // Gateways listen on the listeners' ports (80, 443) without root, as Istio's do.
        ...(p.role === 'ingress' ? { sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }] } : {}),
      },
      containers: [
        {
          name: p.role === 'waypoint' ? 'waypoint' : 'istio-proxy',
          image: t.image,
          imagePullPolicy: t.imagePullPolicy ?? 'IfNotPresent',
          command: ['ambit', 'waypoint'],
          env,
          ports: [...p.ports, { name: 'metrics', containerPort: 15020, protocol: 'TCP' }, { name: 'status-port', containerPort: 15021, protocol: 'TCP' }],
          readinessProbe: { httpGet: { path: '/healthz/ready', port: 15021 }, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 3 },
          resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '1Gi' } },
          securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
          volumeMounts: [
            { name: 'istio-token', mountPath: TOKEN_DIR, readOnly: true },
            { name: 'ca-root', mountPath: CA_ROOT_DIR, readOnly: true },
          ],
        },
      ],
      volumes: [
        { name: 'istio-token', projected: { sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: 43200, path: 'istio-token' } }] } },
        { name: 'ca-root', configMap: { name: CA_ROOT_CONFIGMAP } },
      ],
    },
  };
}
