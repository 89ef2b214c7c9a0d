/**
 * IngressListeners on 127.0.0.1: pushed GatewayListeners open plain and TLS ports whose
 * connections reach the accept callback with the port; TLS picks the certificate by SNI; a new
 * certificate is used by the next handshake; a port switched to httpsRedirect answers 301; removed
 * ports stop accepting; a port that cannot be opened does not keep the others from serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { CertificateAuthority } from '../../src/controller/ca/authority.js';
import { silentLogger } from '../../src/shared/log.js';
import type { GatewayListener, ListenerCertificate } from '../../src/shared/routes.js';
import { IngressListeners } from '../../src/waypoint/server/gateway.js';
import type { ConnectionMeta } from '../../src/waypoint/server/server.js';

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const ca = CertificateAuthority.generate({ trustDomain: 'example.test', ttlDays: 1 });
function cert(host: string): ListenerCertificate {
  const issued = ca.issueServingCert({ dnsNames: [host], ttlMs: 3_600_000 });
  return { hosts: [host], secret: `istio-system/${host}`, certPem: issued.certChainPem.join('\n'), keyPem: issued.keyPem };
}

/** Connects (TLS when `servername` is given), reads the one line the accept callback writes. */
function hello(port: number, servername?: string): Promise<{ line: string; subject?: string }> {
  return new Promise((resolve, reject) => {
    const sock = servername ? tls.connect({ host: '127.0.0.1', port, servername, ca: ca.rootCertPem }) : net.connect({ host: '127.0.0.1', port });
    let data = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (data += d));
    sock.once('end', () => {
      const subject = sock instanceof tls.TLSSocket ? String(sock.getPeerX509Certificate()?.subjectAltName ?? '') : undefined;
      resolve({ line: data.trim(), ...(subject !== undefined ? { subject } : {}) });
    });
    sock.once('error', reject);
    sock.setTimeout(5000, () => sock.destroy(new Error('timed out')));
  });
}

test('ingress listeners open, pick certificates by SNI, swap them, close removed ports, survive a port that cannot open', async (t) => {
  const accepted: number[] = [];
  const listeners = new IngressListeners({
    log: silentLogger(),
    host: '127.0.0.1',
    source: { workload: 'istio-ingressgateway' },
    accept: (conn: Duplex, meta: ConnectionMeta) => {
      accepted.push(meta.targetPort ?? 0);
      conn.end(`port ${meta.targetPort} from ${meta.source?.workload}\n`);
    },
  });
  t.after(() => listeners.close());
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  t.after(() => blocker.close());
  const busyPort = (blocker.address() as net.AddressInfo).port;
  const a = cert('a.example.com');
  const b = cert('b.example.com');
  const l = (port: number, protocol: GatewayListener['protocol'], certificates: ListenerCertificate[] = []): GatewayListener => ({ pod: 'istio-system/gw', port, protocol, gateways: ['bookinfo/g'], hosts: ['*'], certificates });

  await listeners.apply([l(httpPort, 'HTTP'), l(httpsPort, 'HTTPS', [a, b]), l(busyPort, 'HTTP')]);
  assert.deepEqual(listeners.ports().map((p) => p.port).sort(), [httpPort, httpsPort].sort(), 'the busy port is skipped, the others listen');
  assert.equal((await hello(httpPort)).line, `port ${httpPort} from istio-ingressgateway`);
  const viaA = await hello(httpsPort, 'a.example.com');
  assert.equal(viaA.line, `port ${httpsPort} from istio-ingressgateway`);
  assert.match(viaA.subject ?? '', /DNS:a\.example\.com/);
  assert.match((await hello(httpsPort, 'b.example.com')).subject ?? '', /DNS:b\.example\.com/, 'SNI picks the second certificate');

  const a2 = cert('a.example.com');
  await listeners.apply([l(httpsPort, 'HTTPS', [a2])]);
  assert.deepEqual(listeners.ports(), [{ port: httpsPort, protocol: 'HTTPS' }], 'the HTTP port was removed');
  await assert.rejects(hello(httpPort), /ECONNREFUSED/);
  const rotated = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: httpsPort, servername: 'a.example.com', ca: ca.rootCertPem }, () => {
      resolve(s.getPeerX509Certificate()!.serialNumber);
      s.destroy();
    });
    s.once('error', reject);
  });
  assert.equal(rotated, new (await import('node:crypto')).X509Certificate(a2.certPem.split(/(?<=-----END CERTIFICATE-----)/)[0]!).serialNumber, 'the new certificate is served');

  // The same port switched to httpsRedirect is reopened as a redirect-only HTTP port.
  await listeners.apply([{ ...l(httpsPort, 'HTTP'), httpsRedirect: true }]);
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: httpsPort, path: '/p?q=1', headers: { host: 'a.example.com:8080' }, agent: false }, resolve);
    req.once('error', reject);
  });
  res.resume();
  assert.equal(res.statusCode, 301);
  assert.equal(res.headers.location, 'https://a.example.com/p?q=1');

  await listeners.apply([]);
  assert.deepEqual(listeners.ports(), []);
  await assert.rejects(hello(httpPort), /ECONNREFUSED/);
  await assert.rejects(fetch(`http://127.0.0.1:${httpsPort}/`), /fetch failed/);
  assert.ok(accepted.length >= 3);
});
