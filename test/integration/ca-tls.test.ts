import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createTestCa } from '../helpers/test-ca.js';
import { spiffeIdOf } from '../../src/shared/tls.js';

const SERVER_ID = 'spiffe://cluster.local/ns/default/sa/server';
const CLIENT_ID = 'spiffe://cluster.local/ns/default/sa/client';

test('TLS 1.3 mTLS between two issued certificates succeeds and each side reads the peer SPIFFE id', async (t) => {
  const tc = createTestCa();
  const s = tc.issue(SERVER_ID);
  const c = tc.issue(CLIENT_ID);
  const seenByServer: string[] = [];
  const server = tls.createServer(
    { key: s.keyPem, cert: s.certChainPem.join('\n'), ca: tc.rootPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] },
    (sock) => {
      const peer = sock.getPeerX509Certificate();
      seenByServer.push(peer?.subjectAltName ?? '');
      sock.end('ok');
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  const client = tls.connect({
    host: '127.0.0.1', port, key: c.keyPem, cert: c.certChainPem.join('\n'), ca: tc.rootPem, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'],
    // Workload certificates carry only a URI SAN: the identity check replaces the hostname check.
    checkServerIdentity: (_host, cert) => (cert.subjectaltname === `URI:${SERVER_ID}` ? undefined : new Error(`unexpected server ${cert.subjectaltname}`)),
  });
  t.after(() => client.destroy());
  await once(client, 'secureConnect');
  assert.equal(client.getProtocol(), 'TLSv1.3');
  assert.equal(client.alpnProtocol, 'h2');
  assert.equal(client.authorized, true);
  assert.equal(spiffeIdOf(client.getPeerX509Certificate()!), SERVER_ID);
  let body = '';
  for await (const chunk of client) body += chunk;
  assert.equal(body, 'ok');
  assert.deepEqual(seenByServer, [`URI:${CLIENT_ID}`]);
});

test('a client certificate from another CA is refused by the server', async (t) => {
  const tc = createTestCa();
  const rogue = createTestCa();
  const s = tc.issue(SERVER_ID);
  const c = rogue.issue(CLIENT_ID);
  const server = tls.createServer({ key: s.keyPem, cert: s.certChainPem.join('\n'), ca: tc.rootPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (sock) => sock.end('ok'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const { port } = server.address() as AddressInfo;
  const client = tls.connect({ host: '127.0.0.1', port, key: c.keyPem, cert: c.certChainPem.join('\n'), ca: tc.rootPem, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
  t.after(() => client.destroy());
  // In TLS 1.3 the server rejects the client certificate after the client considers the handshake done,
  // so the refusal shows as an error (alert) or a close without data.
  const outcome = await new Promise<string>((resolve) => {
    let data = '';
    client.on('data', (d) => (data += d));
    client.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
    client.on('close', () => resolve(data === '' ? 'closed' : `data:${data}`));
  });
  assert.notEqual(outcome, 'data:ok');
});
