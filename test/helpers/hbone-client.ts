/**
 * A raw HBONE client for attack tests: an mTLS HTTP/2 session to a 15008 listener with a mesh
 * certificate, and single CONNECT (or other) requests on it, without the pool's checks.
 */
import * as http2 from 'node:http2';
import * as tls from 'node:tls';
import { once } from 'node:events';
import type { TunnelCertificate } from '../../src/shared/hbone/tunnel.js';

export interface HboneTarget {
  host: string;
  port: number;
  cert: TunnelCertificate;
  /** Source address to connect from (a 127.x "pod" address). */
  localAddress?: string;
}

/** TLS 1.3 with ALPN h2 and the client certificate; the server identity is not checked here. */
export function hboneTls(t: HboneTarget): tls.TLSSocket {
  return tls.connect({
    host: t.host,
    port: t.port,
    ...(t.localAddress ? { localAddress: t.localAddress } : {}),
    cert: t.cert.certChainPem.join('\n'),
    key: t.cert.keyPem,
    ca: t.cert.rootsPem,
    ALPNProtocols: ['h2'],
    minVersion: 'TLSv1.3',
    servername: '',
    checkServerIdentity: () => undefined,
  });
}

/** An HTTP/2 session over hboneTls; resolves once the server's SETTINGS arrived. */
export async function hboneSession(t: HboneTarget): Promise<http2.ClientHttp2Session> {
  const socket = hboneTls(t);
  const session = http2.connect(`https://${t.host}:${t.port}`, { createConnection: () => socket });
  session.on('error', () => undefined);
  // 'connect' fires when TLS is up on the client's side; in TLS 1.3 the server checks the client
  // certificate after that, so only its SETTINGS prove the session was accepted.
  await Promise.race([
    once(session, 'remoteSettings'),
    once(session, 'close').then(() => {
      throw new Error(`hbone session to ${t.host}:${t.port} closed before SETTINGS`);
    }),
  ]);
  return session;
}

export interface HboneReply {
  status: number;
  reason: string | undefined;
  stream: http2.ClientHttp2Stream;
}

/** Sends one request (CONNECT by default) and resolves with its status and x-ambit-reason. */
export function hboneRequest(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<HboneReply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'CONNECT', ...headers }, { endStream: false });
    stream.on('error', (e) => reject(e));
    stream.once('close', () => reject(new Error(`stream closed before a reply (code ${stream.rstCode})`)));
    stream.once('response', (h) => {
      const reason = h['x-ambit-reason'];
      resolve({ status: Number(h[':status']), reason: typeof reason === 'string' ? reason : undefined, stream });
    });
  });
}
