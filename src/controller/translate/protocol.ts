/** Service port protocol selection with Istio's rules: appProtocol, then the port name prefix. */

const KNOWN = new Set(['http', 'http2', 'https', 'grpc', 'grpc-web', 'tcp', 'tls', 'udp', 'mongo', 'mysql', 'redis']);

const KUBERNETES_APP_PROTOCOLS: Record<string, string> = {
  'kubernetes.io/h2c': 'http2',
  'kubernetes.io/ws': 'http',
  'kubernetes.io/wss': 'https',
};

function parseProtocol(v: string): string | undefined {
  const lower = v.toLowerCase();
  if (KUBERNETES_APP_PROTOCOLS[lower]) return KUBERNETES_APP_PROTOCOLS[lower];
  return KNOWN.has(lower) ? lower : undefined;
}

/**
 * The protocol of a Service port: UDP ports are 'udp'; else `appProtocol` when it names a known
 * protocol; else the name (`http`, `http-web`, `grpc-web-x`, `tcp-db`); else 'tcp'.
 */
export function detectPortProtocol(port: { name?: string; appProtocol?: string; protocol?: string }): string {
  if (port.protocol?.toUpperCase() === 'UDP') return 'udp';
  if (port.appProtocol) {
    const p = parseProtocol(port.appProtocol);
    if (p) return p;
  }
  const name = port.name?.toLowerCase() ?? '';
  if (name.startsWith('grpc-web')) return 'grpc-web';
  const prefix = name.split('-')[0] ?? '';
  return parseProtocol(prefix) ?? 'tcp';
}
