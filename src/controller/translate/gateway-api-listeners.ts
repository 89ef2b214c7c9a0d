/**
 * Gateway API Gateways of an ingress class → the servers their own gateway pods open (pure): the
 * pods of the Gateway's namespace labelled `gateway.networking.k8s.io/gateway-name: <name>` (the
 * Deployment the controller makes for it). HTTP listeners, HTTPS listeners that terminate TLS
 * with a valid TLS Secret of the Gateway's namespace, TCP listeners and TLS listeners in
 * Passthrough or Terminate mode (served by TCPRoutes and TLSRoutes) become servers; any other listener gets a
 * condition naming it and is left out (the others keep working).
 */
import { objectKey, type KubeObject } from '../objects.js';
import type { GatewayServer } from '../../shared/routes.js';
import type { ObjectIndex, TranslateCondition } from './object-index.js';
import { asArray, asRecord, asString, nsOf } from './util.js';
import { LABEL_GATEWAY_NAME } from './waypoints.js';
import { decodeTlsSecret } from './gateway-listeners.js';

/** Gateway classes served as ingress gateways (Istio's `istio`, and `ambit`). */
export const INGRESS_CLASSES: readonly string[] = ['ambit', 'istio'];

/** Condition types and reasons of Gateway API listeners. */
export const LISTENER_ACCEPTED = 'Accepted';
export const LISTENER_RESOLVED_REFS = 'ResolvedRefs';

export function isIngressGateway(gw: KubeObject): boolean {
  return INGRESS_CLASSES.includes(asString(gw.spec?.['gatewayClassName']) ?? '');
}

export interface GatewayApiServers {
  servers: GatewayServer[];
  /** Listener problems, with `section` naming the listener. */
  conditions: TranslateCondition[];
}

/** The servers of every ingress-class Gateway, and the listeners that cannot be served. */
export function gatewayApiServers(idx: Pick<ObjectIndex, 'gateways' | 'of'>): GatewayApiServers {
  const secrets = new Map(idx.of('Secret').map((s) => [`${nsOf(s)}/${s.metadata.name}`, s]));
  const servers: GatewayServer[] = [];
  const conditions: TranslateCondition[] = [];
  for (const gw of idx.gateways) {
    if (!isIngressGateway(gw)) continue;
    const ns = nsOf(gw);
    const key = `${ns}/${gw.metadata.name}`;
    asArray(gw.spec?.['listeners']).forEach((raw, i) => {
      const l = asRecord(raw);
      const name = asString(l['name']) ?? `listener-${i}`;
      const port = l['port'];
      const protocol = (asString(l['protocol']) ?? '').toUpperCase();
      const refuse = (type: string, reason: string, message: string): void => {
        conditions.push({ objectKey: objectKey(gw), type, status: 'False', reason, message: `listener ${name}: ${message}`, section: name });
      };
      if (typeof port !== 'number') return refuse(LISTENER_ACCEPTED, 'PortUnavailable', 'has no port');
      const base: GatewayServer = {
        gateway: key,
        index: i,
        name,
        port,
        protocol: 'HTTP',
        hosts: [asString(l['hostname']) ?? '*'],
        selector: { [LABEL_GATEWAY_NAME]: gw.metadata.name },
        namespace: ns,
        objectKey: objectKey(gw),
        listener: name,
      };
      if (protocol === 'HTTP') {
        servers.push(base);
        return;
      }
      if (protocol === 'TCP') {
        servers.push({ ...base, protocol: 'TCP', hosts: ['*'] });
        return;
      }
      const tls = asRecord(l['tls']);
      const mode = asString(tls['mode']) ?? 'Terminate';
      if (protocol === 'TLS' && mode === 'Passthrough') {
        // TLSRoutes pick the backend by SNI; the bytes pass through undecrypted (decision 50).
        servers.push({ ...base, protocol: 'TLS', tls: { mode: 'PASSTHROUGH' } });
        return;
      }
      if (protocol !== 'HTTPS' && protocol !== 'TLS') return refuse(LISTENER_ACCEPTED, 'UnsupportedProtocol', `protocol ${protocol || '(none)'} is not supported by ambit gateways (HTTP, HTTPS, TCP and TLS are)`);
      if (mode !== 'Terminate') return refuse(LISTENER_ACCEPTED, 'UnsupportedValue', `tls.mode ${mode} is not supported (Terminate${protocol === 'TLS' ? ' and Passthrough are' : ' is'})`);
      const ref = asRecord(asArray(tls['certificateRefs'])[0]);
      const refName = asString(ref['name']);
      if (!refName) return refuse(LISTENER_RESOLVED_REFS, 'InvalidCertificateRef', `${protocol} in Terminate mode needs tls.certificateRefs naming a Secret`);
      if ((asString(ref['kind']) ?? 'Secret') !== 'Secret' || (asString(ref['group']) ?? '') !== '') {
        return refuse(LISTENER_RESOLVED_REFS, 'InvalidCertificateRef', `certificateRefs[0] must be a core Secret, not ${asString(ref['group']) ?? ''}/${asString(ref['kind'])}`);
      }
      if ((asString(ref['namespace']) ?? ns) !== ns) {
        return refuse(LISTENER_RESOLVED_REFS, 'RefNotPermitted', `certificateRefs[0] names a Secret in namespace ${asString(ref['namespace'])}; only the Gateway's own namespace is supported (no ReferenceGrant)`);
      }
      const decoded = decodeTlsSecret(secrets.get(`${ns}/${refName}`), `${ns}/${refName}`);
      if (!decoded.ok) return refuse(LISTENER_RESOLVED_REFS, 'InvalidCertificateRef', decoded.problem);
      // A terminating TLS listener: its TLSRoutes pick the backend by the handshake's SNI.
      servers.push({ ...base, protocol: protocol === 'TLS' ? 'TLS' : 'HTTPS', tls: { mode: 'SIMPLE', credentialName: refName }, ...(protocol === 'TLS' ? { routeBySni: true } : {}) });
    });
  }
  return { servers, conditions };
}
