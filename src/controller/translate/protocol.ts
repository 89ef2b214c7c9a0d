/**
 * The protocol of a Service port, with Istio's rules (pilot's ConvertProtocol): UDP ports are
 * `udp`; else `appProtocol` when it names a known protocol (Kubernetes' `kubernetes.io/h2c`,
 * `/ws`, `/wss` included); else the port name: a name starting with `grpc-web` (any case, with or
 * without a suffix: `grpc-web`, `grpc-web-ui`, `grpc-webx`) is `grpc-web`, otherwise the part
 * before the first `-` (`http-web` → `http`); anything else is `tcp`. The one detector for the
 * agents' Service ports (services.ts) and the waypoints' route configs (service-routes.ts).
 */

export type PortProtocol = 'http' | 'http2' | 'https' | 'grpc' | 'grpc-web' | 'tcp' | 'tls' | 'udp' | 'mongo' | 'mysql' | 'redis';

const KNOWN = new Set<string>(['http', 'http2', 'https', 'grpc', 'grpc-web', 'tcp', 'tls', 'udp', 'mongo', 'mysql', 'redis']);

const KUBERNETES_APP_PROTOCOLS: Record<string, PortProtocol> = {
  'kubernetes.io/h2c': 'http2',
  'kubernetes.io/ws': 'http',
  'kubernetes.io/wss': 'https',
};

function parseProtocol(v: string): PortProtocol | undefined {
  const lower = v.toLowerCase();
  return KUBERNETES_APP_PROTOCOLS[lower] ?? (KNOWN.has(lower) ? (lower as PortProtocol) : undefined);
}

export function detectPortProtocol(port: { name?: string; appProtocol?: string; protocol?: string }): PortProtocol {
  if (port.protocol?.toUpperCase() === 'UDP') return 'udp';
  if (port.appProtocol) {
    const p = parseProtocol(port.appProtocol);
    if (p) return p;
  }
  const name = port.name?.toLowerCase() ?? '';
  if (name.startsWith('grpc-web')) return 'grpc-web';
  return parseProtocol(name.split('-')[0] ?? '') ?? 'tcp';
}
