/**
 * Istio Gateways → the servers ingress gateway pods serve (gateway-listeners.ts turns them into
 * each pod's listeners), and which hosts a Gateway lets a VirtualService bind.
 */
import type { KubeObject } from '../objects.js';
import type { GatewayServer } from '../../shared/routes.js';
import { Invalid, type RouteContext } from './route-context.js';
import { asArray, asRecord, asString, asStrings, nsOf } from './util.js';

export function gatewayAllowsHost(gw: KubeObject, host: string, vsNs: string): boolean {
  for (const s of asArray(asRecord(gw.spec)['servers'])) {
    for (const h of asStrings(asRecord(s)['hosts'])) {
      const [ns, name] = h.includes('/') ? [h.slice(0, h.indexOf('/')), h.slice(h.indexOf('/') + 1)] : ['*', h];
      if (ns !== '*' && ns !== '.' && ns !== vsNs) continue;
      if (ns === '.' && nsOf(gw) !== vsNs) continue;
      if (name === '*' || name === host) return true;
      if (name.startsWith('*.') && host.endsWith(name.slice(1))) return true;
      if (host.startsWith('*.') && name.endsWith(host.slice(1))) return true;
    }
  }
  return false;
}

export function translateIstioGateway(ctx: RouteContext, gw: KubeObject): void {
  const key = `${nsOf(gw)}/${gw.metadata.name}`;
  const spec = asRecord(gw.spec);
  const selector: Record<string, string> = {};
  for (const [k, v] of Object.entries(asRecord(spec['selector']))) if (typeof v === 'string') selector[k] = v;
  const servers: GatewayServer[] = [];
  asArray(spec['servers']).forEach((s, i) => {
    const r = asRecord(s);
    const p = asRecord(r['port']);
    const port = p['number'];
    const protocol = (asString(p['protocol']) ?? '').toUpperCase();
    if (typeof port !== 'number' || port < 1 || port > 65535) throw new Invalid('InvalidServer', `spec.servers[${i}].port.number must be a port`);
    if (!['HTTP', 'HTTPS', 'HTTP2', 'GRPC', 'TLS', 'TCP'].includes(protocol)) throw new Invalid('InvalidServer', `spec.servers[${i}].port.protocol ${JSON.stringify(protocol)} is not HTTP, HTTPS, HTTP2, GRPC, TLS or TCP`);
    const server: GatewayServer = { gateway: key, index: i, port, protocol: protocol as GatewayServer['protocol'], hosts: asStrings(r['hosts']), selector };
    if (asString(p['name'])) server.name = asString(p['name'])!;
    const tls = asRecord(r['tls']);
    const plain = protocol === 'HTTP' || protocol === 'HTTP2' || protocol === 'GRPC';
    if (plain && tls['httpsRedirect'] === true && tls['mode'] === undefined && tls['credentialName'] === undefined) {
      // Istio's `tls: { httpsRedirect: true }` on a plain server: answer 301 to https.
      server.httpsRedirect = true;
    } else if (r['tls'] !== undefined) {
      const mode = (asString(tls['mode']) ?? 'SIMPLE') as NonNullable<GatewayServer['tls']>['mode'];
      server.tls = { mode, ...(asString(tls['credentialName']) ? { credentialName: asString(tls['credentialName'])! } : {}) };
      if ((protocol === 'HTTPS' || mode === 'SIMPLE' || mode === 'MUTUAL' || mode === 'OPTIONAL_MUTUAL') && mode !== 'PASSTHROUGH' && mode !== 'ISTIO_MUTUAL' && !server.tls.credentialName) {
        throw new Invalid('InvalidServer', `spec.servers[${i}].tls.credentialName must name a Secret for mode ${mode}`);
      }
    } else if (protocol === 'HTTPS') throw new Invalid('InvalidServer', `spec.servers[${i}]: HTTPS needs tls with a credentialName`);
    servers.push(server);
  });
  ctx.gatewayServers.push(...servers);
}
