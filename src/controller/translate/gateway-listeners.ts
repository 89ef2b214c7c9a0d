/**
 * Istio Gateway servers → the listeners each ingress gateway pod opens (pure). A Gateway serves on
 * every pod its `spec.selector` matches (any namespace, as Istio); a TLS server's `credentialName`
 * names a `kubernetes.io/tls` Secret in the gateway pod's namespace, decoded here into PEM for the
 * pod (with its `ca.crt` for tls.mode MUTUAL and OPTIONAL_MUTUAL). TCP servers and TLS servers in PASSTHROUGH mode
 * become TCP and TLS listeners routed by the gateway's VirtualService `tcp` and `tls` routes; TLS
 * servers in another mode become listeners that terminate TLS as HTTPS ones do, then route the
 * decrypted bytes by `tcp` routes (Gateway API TLS listeners in Terminate mode: by TLSRoutes on SNI). A server that cannot be served (missing or bad Secret, unsupported protocol or TLS mode,
 * reserved or conflicting port) gets a condition on its Gateway naming the server and is left
 * out; the other servers keep working.
 * Invariant: certificate and key text only ever lands in the returned listeners, never in a
 * condition message.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { REF_ISTIO_GATEWAY, type KubeObject } from '../objects.js';
import type { TranslateCondition } from './object-index.js';
import { parse as parseYaml } from 'yaml';
import { annotationsOf, asRecord, asString, compareStrings, matchesLabels, nsOf } from './util.js';
import type { GatewayListener, GatewayServer, ListenerCertificate } from '../../shared/routes.js';
import { validTrustedProxies, type MeshProxyDefaults } from './mesh-config.js';

/** Condition type written on an Istio Gateway whose server a gateway pod cannot serve. */
export const CONDITION_GATEWAY_PROGRAMMED = 'Programmed';

/** Ports the gateway process itself uses (HBONE, metrics, readiness, admin). */
export const RESERVED_GATEWAY_PORTS: readonly number[] = [15000, 15008, 15020, 15021];

/** Istio's companion Secret of a credential, holding the CA certificates clients must chain to. */
export const CA_SECRET_SUFFIX = '-cacert';

/** Secret types Istio reads a server certificate from. */
const TLS_SECRET_TYPES = ['kubernetes.io/tls', 'Opaque', 'istio.io/key-and-cert'];

export type TlsSecretResult = { ok: true; certPem: string; keyPem: string; caPem?: string; crlPem?: string } | { ok: false; problem: string };

/** True when a Gateway server's selector (non-empty) matches the pod's labels (and namespace, when it names one). */
export function serverSelectsPod(server: Pick<GatewayServer, 'selector' | 'namespace'>, pod: KubeObject): boolean {
  if (server.namespace !== undefined && nsOf(pod) !== server.namespace) return false;
  return Object.keys(server.selector).length > 0 && matchesLabels(server.selector, (pod.metadata.labels ?? {}) as Record<string, string>);
}

/** Reads one data field of a Secret: base64 `data` first, then plain `stringData`. */
function secretField(secret: KubeObject, keys: readonly string[]): { text?: string; problem?: string } {
  const data = asRecord((secret as Record<string, unknown>)['data']);
  const stringData = asRecord((secret as Record<string, unknown>)['stringData']);
  for (const k of keys) {
    const b64 = data[k];
    if (b64 !== undefined) {
      if (typeof b64 !== 'string' || !/^[A-Za-z0-9+/=\s]*$/.test(b64)) return { problem: `data.${k} is not base64` };
      return { text: Buffer.from(b64, 'base64').toString('utf8') };
    }
    const plain = stringData[k];
    if (typeof plain === 'string') return { text: plain };
  }
  return {};
}

/**
 * Decodes a TLS Secret (`tls.crt`/`tls.key`, or Istio's `cert`/`key`) into PEM and checks that
 * the key belongs to the certificate; with `mutual`, also the CA certificates client certificates
 * must chain to: from the companion Secret `<name>-cacert` when it exists (`caSecret`), else from
 * the same Secret (`ca.crt`, or Istio's `cacert`), as Istio looks them up. Problems say what is
 * wrong, never what the Secret holds.
 */
export function decodeTlsSecret(secret: KubeObject | undefined, ref: string, mutual = false, caSecret?: KubeObject): TlsSecretResult {
  if (!secret) return { ok: false, problem: `Secret ${ref} not found` };
  const type = asString((secret as Record<string, unknown>)['type']) ?? 'Opaque';
  if (!TLS_SECRET_TYPES.includes(type)) return { ok: false, problem: `Secret ${ref} has type ${type}; expected kubernetes.io/tls` };
  const cert = secretField(secret, ['tls.crt', 'cert']);
  const key = secretField(secret, ['tls.key', 'key']);
  if (cert.problem || key.problem) return { ok: false, problem: `Secret ${ref}: ${cert.problem ?? key.problem}` };
  if (cert.text === undefined) return { ok: false, problem: `Secret ${ref} has no tls.crt` };
  if (key.text === undefined) return { ok: false, problem: `Secret ${ref} has no tls.key` };
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert.text);
  } catch {
    return { ok: false, problem: `Secret ${ref}: tls.crt is not a PEM certificate` };
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key.text))) return { ok: false, problem: `Secret ${ref}: tls.key does not belong to the certificate in tls.crt` };
  } catch {
    return { ok: false, problem: `Secret ${ref}: tls.key is not a PEM private key` };
  }
  if (!mutual) return { ok: true, certPem: cert.text, keyPem: key.text };
  const caRef = caSecret ? `${ref}${CA_SECRET_SUFFIX}` : ref;
  const ca = secretField(caSecret ?? secret, ['ca.crt', 'cacert']);
  if (ca.problem) return { ok: false, problem: `Secret ${caRef}: ${ca.problem}` };
  if (ca.text === undefined) {
    const where = caSecret ? `Secret ${caRef} has no ca.crt or cacert` : `Secret ${ref} has no ca.crt (and there is no Secret ${ref}${CA_SECRET_SUFFIX})`;
    return { ok: false, problem: `${where}, which tls.mode MUTUAL and OPTIONAL_MUTUAL need to verify client certificates` };
  }
  try {
    new X509Certificate(ca.text);
  } catch {
    return { ok: false, problem: `Secret ${caRef}: ca.crt is not a PEM certificate` };
  }
  // Istio: revoked client certificates are listed in `ca.crl` beside the CA certificates.
  const crl = secretField(caSecret ?? secret, ['ca.crl']);
  if (crl.problem) return { ok: false, problem: `Secret ${caRef}: ${crl.problem}` };
  if (crl.text !== undefined) {
    try {
      if (!/-----BEGIN X509 CRL-----/.test(crl.text)) throw new Error('no PEM CRL');
      createSecureContext({ ca: ca.text, crl: crl.text });
    } catch {
      return { ok: false, problem: `Secret ${caRef}: ca.crl is not a PEM X509 CRL of that CA` };
    }
  }
  return { ok: true, certPem: cert.text, keyPem: key.text, caPem: ca.text, ...(crl.text !== undefined ? { crlPem: crl.text } : {}) };
}

function serverLabel(s: GatewayServer): string {
  const name = s.name ? ` ${JSON.stringify(s.name)}` : '';
  return `server${s.index !== undefined ? ` ${s.index}` : ''}${name} (port ${s.port} ${s.protocol})`;
}

function gatewayObjectKey(gateway: string): string {
  const [ns, name] = gateway.split('/') as [string, string];
  return `${REF_ISTIO_GATEWAY}/${ns}/${name}`;
}

export interface GatewayListenersResult {
  /** Listeners per gateway pod (`ns/name`), sorted by port. */
  byPod: Map<string, GatewayListener[]>;
  conditions: TranslateCondition[];
}

/**
 * The listeners of every pod some Gateway server selects. Servers are taken in Gateway-name
 * order; on one port, HTTP and HTTPS cannot mix (the later server is refused, as Istio does).
 */
export function gatewayListeners(servers: readonly GatewayServer[], pods: readonly KubeObject[], secrets: readonly KubeObject[], meshDefaults: MeshProxyDefaults = {}): GatewayListenersResult {
  const secretByKey = new Map(secrets.map((s) => [`${nsOf(s) || 'default'}/${s.metadata.name}`, s]));
  const ordered = [...servers].sort((a, b) => compareStrings(a.gateway, b.gateway) || (a.index ?? 0) - (b.index ?? 0));
  const byPod = new Map<string, GatewayListener[]>();
  const problems = new Map<string, { objectKey: string; reason: string; message: string; listener?: string }>();
  const refuse = (s: GatewayServer, reason: string, what: string): void => {
    const message = `Gateway ${s.gateway} ${serverLabel(s)}: ${what}; this server is not served (the others keep working)`;
    const objectKey = s.objectKey ?? gatewayObjectKey(s.gateway);
    problems.set(`${objectKey}|${message}`, { objectKey, reason, message, ...(s.listener !== undefined ? { listener: s.listener } : {}) });
  };
  for (const pod of [...pods].sort((a, b) => compareStrings(`${nsOf(a)}/${a.metadata.name}`, `${nsOf(b)}/${b.metadata.name}`))) {
    const podNs = nsOf(pod) || 'default';
    const podKey = `${podNs}/${pod.metadata.name}`;
    const byPort = new Map<number, GatewayListener>();
    const trusted = trustedProxies(pod, meshDefaults.numTrustedProxies);
    for (const s of ordered) {
      if (!serverSelectsPod(s, pod)) continue;
      if (RESERVED_GATEWAY_PORTS.includes(s.port)) {
        refuse(s, 'PortUnavailable', `port ${s.port} is reserved for the gateway's own use (${RESERVED_GATEWAY_PORTS.join(', ')})`);
        continue;
      }
      let protocol: GatewayListener['protocol'];
      let cert: ListenerCertificate | undefined;
      let istioMutual = false;
      let optional = false;
      // TLS the gateway ends itself: HTTPS (SIMPLE by default), and TLS servers in any mode but
      // PASSTHROUGH (their decrypted bytes then follow `tcp` routes, or TLSRoutes by SNI).
      const mode = s.tls?.mode ?? (s.protocol === 'HTTPS' ? 'SIMPLE' : undefined);
      const terminates = (s.protocol === 'HTTPS' || s.protocol === 'TLS') && mode !== undefined && mode !== 'PASSTHROUGH';
      const terminate = terminates && s.protocol === 'TLS';
      if (s.protocol === 'HTTP' || s.protocol === 'HTTP2' || s.protocol === 'GRPC') {
        if (s.tls) {
          refuse(s, 'UnsupportedProtocol', `tls on a ${s.protocol} server is not supported; use protocol HTTPS`);
          continue;
        }
        protocol = 'HTTP';
      } else if (terminates) {
        protocol = s.protocol === 'HTTPS' ? 'HTTPS' : s.routeBySni ? 'TLS' : 'TCP';
        if (mode === 'ISTIO_MUTUAL') istioMutual = true;
        else {
          optional = mode === 'OPTIONAL_MUTUAL';
          const name = s.tls?.credentialName ?? '';
          const ref = `${podNs}/${name}`;
          const decoded = decodeTlsSecret(secretByKey.get(ref), ref, mode === 'MUTUAL' || optional, secretByKey.get(`${ref}${CA_SECRET_SUFFIX}`));
          if (!decoded.ok) {
            refuse(s, 'InvalidCertificateRef', `credentialName ${JSON.stringify(name)}: ${decoded.problem}`);
            continue;
          }
          cert = { hosts: hostNames(s.hosts), secret: ref, certPem: decoded.certPem, keyPem: decoded.keyPem, ...(decoded.caPem !== undefined ? { caPem: decoded.caPem } : {}), ...(decoded.crlPem !== undefined ? { crlPem: decoded.crlPem } : {}) };
        }
      } else if (s.protocol === 'TCP' && !s.tls) {
        protocol = 'TCP';
      } else if ((s.protocol === 'TLS' || s.protocol === 'HTTPS') && mode === 'PASSTHROUGH') {
        protocol = 'TLS';
      } else {
        const shown = s.tls?.mode ? ` with tls.mode ${s.tls.mode}` : '';
        refuse(s, 'UnsupportedProtocol', `protocol ${s.protocol}${shown} is not supported by ambit gateways (HTTP, HTTP2, GRPC, HTTPS and TLS with tls.mode SIMPLE, MUTUAL, OPTIONAL_MUTUAL or ISTIO_MUTUAL, TLS with tls.mode PASSTHROUGH, and TCP are)`);
        continue;
      }
      const redirect = s.httpsRedirect === true;
      const cur = byPort.get(s.port);
      if (cur && cur.protocol !== protocol) {
        refuse(s, 'PortConflict', `port ${s.port} is already served as ${cur.protocol} by Gateway ${cur.gateways[0]}`);
        continue;
      }
      if (cur && (cur.terminate === true) !== terminate) {
        refuse(s, 'PortConflict', `port ${s.port} is already served as ${cur.protocol} ${terminate ? 'without' : 'with'} TLS termination by Gateway ${cur.gateways[0]}; one port cannot mix both`);
        continue;
      }
      if (cur && (cur.istioMutual === true) !== istioMutual) {
        refuse(s, 'PortConflict', `port ${s.port} is already served ${istioMutual ? 'without' : 'with'} tls.mode ISTIO_MUTUAL by Gateway ${cur.gateways[0]}; one port cannot mix it with other modes`);
        continue;
      }
      if (cur && cert && cur.certificates.length > 0 && (cur.certificates[0]!.caPem !== undefined) !== (cert.caPem !== undefined)) {
        refuse(s, 'PortConflict', `port ${s.port} is already served with tls.mode ${cert.caPem !== undefined ? 'SIMPLE' : 'MUTUAL'} by Gateway ${cur.gateways[0]}; one port cannot mix SIMPLE and MUTUAL`);
        continue;
      }
      if (cur && cert?.caPem !== undefined && (cur.optionalClientCert === true) !== optional) {
        refuse(s, 'PortConflict', `port ${s.port} is already served with tls.mode ${optional ? 'MUTUAL' : 'OPTIONAL_MUTUAL'} by Gateway ${cur.gateways[0]}; one port cannot mix MUTUAL and OPTIONAL_MUTUAL`);
        continue;
      }
      if (cur && (cur.httpsRedirect === true) !== redirect) {
        refuse(s, 'PortConflict', `port ${s.port} is already served ${redirect ? 'without' : 'with'} httpsRedirect by Gateway ${cur.gateways[0]}; one port cannot mix both`);
        continue;
      }
      const l: GatewayListener = cur ?? { pod: podKey, port: s.port, protocol, gateways: [], hosts: [], certificates: [], ...(redirect ? { httpsRedirect: true } : {}), ...(terminate ? { terminate: true } : {}), ...(istioMutual ? { istioMutual: true } : {}), ...(optional ? { optionalClientCert: true } : {}), ...(trusted > 0 && (protocol === 'HTTP' || protocol === 'HTTPS') ? { numTrustedProxies: trusted } : {}) };
      if (!l.gateways.includes(s.gateway)) l.gateways.push(s.gateway);
      for (const h of s.hosts) if (!l.hosts.includes(h)) l.hosts.push(h);
      if (cert) l.certificates.push(cert);
      byPort.set(s.port, l);
    }
    if (byPort.size > 0) byPod.set(podKey, [...byPort.values()].sort((a, b) => a.port - b.port));
  }
  const conditions: TranslateCondition[] = [...problems.values()].map((p) => ({
    objectKey: p.objectKey,
    type: CONDITION_GATEWAY_PROGRAMMED,
    status: 'False',
    reason: p.reason,
    message: p.message,
    ...(p.listener !== undefined ? { section: p.listener } : {}),
  }));
  return { byPod, conditions };
}

/** Istio's per-pod proxy config annotation (YAML or JSON ProxyConfig). */
export const ANNOTATION_PROXY_CONFIG = 'proxy.istio.io/config';

/**
 * `gatewayTopology.numTrustedProxies` of a gateway pod: its `proxy.istio.io/config` annotation's
 * when that sets one, else the mesh config's `defaultConfig` (`meshDefault`), else 0 (Istio's
 * precedence: the annotation overrides the mesh default field by field).
 */
export function trustedProxies(pod: KubeObject, meshDefault = 0): number {
  const text = annotationsOf(pod)[ANNOTATION_PROXY_CONFIG];
  if (text === undefined) return meshDefault;
  try {
    const n = asRecord(asRecord(parseYaml(text))['gatewayTopology'])['numTrustedProxies'];
    return validTrustedProxies(n) ? n : meshDefault;
  } catch {
    return meshDefault;
  }
}

/** Gateway server hosts (`host` or `<namespace>/host`) as SNI names. */
function hostNames(hosts: readonly string[]): string[] {
  return hosts.map((h) => (h.includes('/') ? h.slice(h.indexOf('/') + 1) : h));
}
