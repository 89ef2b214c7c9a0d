/**
 * Istio protocol selection for a service port: `appProtocol` first, then the port name prefix
 * (`http`, `http2`, `grpc`, `grpc-web`, `tcp`, ...); unknown protocols are carried as TCP.
 */

export type PortProtocol = 'http' | 'http2' | 'grpc' | 'grpc-web' | 'https' | 'tls' | 'tcp' | 'udp' | 'mongo' | 'mysql' | 'redis';

const KNOWN = new Set<PortProtocol>(['http', 'http2', 'grpc', 'grpc-web', 'https', 'tls', 'tcp', 'udp', 'mongo', 'mysql', 'redis']);

const KUBERNETES_APP_PROTOCOLS: Record<string, PortProtocol> = {
  'kubernetes.io/h2c': 'http2',
  'kubernetes.io/ws': 'http',
  'kubernetes.io/wss': 'https',
};

function known(v: string): PortProtocol | undefined {
  const lower = v.toLowerCase();
  return KUBERNETES_APP_PROTOCOLS[lower] ?? (KNOWN.has(lower as PortProtocol) ? (lower as PortProtocol) : undefined);
}

export function detectProtocol(port: { name?: string; appProtocol?: string; protocol?: string }): PortProtocol {
  if (port.protocol?.toUpperCase() === 'UDP') return 'udp';
  if (port.appProtocol) {
    const p = known(port.appProtocol);
    if (p) return p;
  }
  const name = (port.name ?? '').toLowerCase();
  if (name === 'grpc-web' || name.startsWith('grpc-web-')) return 'grpc-web';
  return known(name.split('-')[0] ?? '') ?? 'tcp';
}

/** Protocols the waypoint terminates and routes as HTTP; everything else is proxied as TCP. */
export function isHttpProtocol(p: string): boolean {
  return p === 'http' || p === 'http2' || p === 'grpc' || p === 'grpc-web';
}

/**
 * Whether the upstream leg is HTTP/2: ports declared http2/grpc, or a gRPC request; otherwise
 * HTTP/1.1, which every HTTP server speaks (h2c-only backends must declare their port).
 */
export function upstreamUsesHttp2(portProtocol: string | undefined, _downstreamHttp2: boolean, contentType: string | undefined): boolean {
  if (portProtocol === 'http2' || portProtocol === 'grpc') return true;
  return contentType === 'application/grpc' || contentType?.startsWith('application/grpc+') === true;
}
