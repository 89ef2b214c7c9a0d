/** Valid model resources for config-stream tests; each call returns a fresh object to mutate. */
import type { Authorization, Service, Workload } from '../../../src/shared/model.js';

export function workload(name = 'web-1', namespace = 'default', overrides: Partial<Workload> = {}): Workload {
  return {
    uid: `cluster1//v1/Pod/${namespace}/${name}`,
    name,
    namespace,
    serviceAccount: 'web',
    trustDomain: 'cluster.local',
    node: 'node-1',
    addresses: ['10.0.1.7'],
    tunnelProtocol: 'HBONE',
    canonicalName: 'web',
    canonicalRevision: 'v1',
    workloadName: 'web',
    workloadType: 'deployment',
    labels: { app: 'web' },
    services: { [`${namespace}/web.${namespace}.svc.cluster.local`]: [{ servicePort: 80, targetPort: 8080 }] },
    status: 'Healthy',
    authorizationPolicies: [],
    peerAuthentication: 'PERMISSIVE',
    portPeerAuthentication: {},
    ...overrides,
  };
}

export function service(name = 'web', namespace = 'default', overrides: Partial<Service> = {}): Service {
  return {
    name,
    namespace,
    hostname: `${name}.${namespace}.svc.cluster.local`,
    vips: ['10.96.0.10'],
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'http' }],
    subjectAltNames: [],
    routingPreference: [],
    endpoints: [`cluster1//v1/Pod/${namespace}/web-1`],
    ...overrides,
  };
}

export function authorization(name = 'allow-frontend', namespace = 'default', overrides: Partial<Authorization> = {}): Authorization {
  return {
    name,
    namespace,
    scope: 'namespace',
    action: 'ALLOW',
    rules: [
      {
        clauses: [
          {
            matches: [
              {
                namespaces: [{ exact: 'frontend' }],
                notNamespaces: [],
                principals: [{ prefix: 'cluster.local/ns/frontend/' }],
                notPrincipals: [],
                sourceIps: ['10.0.0.0/8'],
                notSourceIps: [],
                destinationIps: [],
                notDestinationIps: [],
                destinationPorts: [8080],
                notDestinationPorts: [],
              },
            ],
          },
        ],
      },
    ],
    dryRun: false,
    ...overrides,
  };
}
