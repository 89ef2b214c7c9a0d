import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { L4Route } from '../../../src/shared/routes.js';
import { selectL4Route, sniMatches } from '../../../src/waypoint/route/l4.js';
import { peekClientHello } from '../../../src/waypoint/server/sni.js';

/** The first bytes a real TLS client (node:tls) sends, with `servername` when given. */
async function clientHello(servername: string | undefined): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => {
    server.once('connection', (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => {
        chunks.push(c);
        const all = Buffer.concat(chunks);
        if (all.length >= 5 && all.length >= 5 + all.readUInt16BE(3)) {
          resolve(all);
          s.destroy();
        }
      });
    });
  });
  const client = tls.connect({ host: '127.0.0.1', port, ...(servername !== undefined ? { servername } : {}), rejectUnauthorized: false });
  client.on('error', () => undefined);
  const hello = await got;
  client.destroy();
  server.close();
  return hello;
}

test('the SNI of a real ClientHello is read whole, and not before the record is complete', async () => {
  const hello = await clientHello('shop.example.com');
  assert.deepEqual(peekClientHello(hello), { kind: 'tls', sni: 'shop.example.com' });
  for (const cut of [0, 1, 4, 5, 40, hello.length - 1]) assert.deepEqual(peekClientHello(hello.subarray(0, cut)), { kind: 'incomplete' }, `cut at ${cut}`);
  assert.deepEqual(peekClientHello(Buffer.concat([hello, Buffer.from('more')])), { kind: 'tls', sni: 'shop.example.com' });
});

test('a ClientHello without SNI is TLS with no name; plain text and other records are not TLS', async () => {
  // node:tls sends no SNI for an IP address.
  assert.deepEqual(peekClientHello(await clientHello(undefined)), { kind: 'tls' });
  assert.deepEqual(peekClientHello(Buffer.from('GET / HTTP/1.1\r\n')), { kind: 'not-tls' });
  assert.deepEqual(peekClientHello(Buffer.from([0x16, 0x01, 0x00, 0x00, 0x01, 0x00])), { kind: 'not-tls' }, 'not a TLS version');
  assert.deepEqual(peekClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x01, 0x02])), { kind: 'not-tls' }, 'not a ClientHello');
  assert.deepEqual(peekClientHello(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff])), { kind: 'not-tls' }, 'a record longer than any hello');
  const truncated = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0x03, 0x03]);
  assert.deepEqual(peekClientHello(truncated), { kind: 'tls' }, 'a hello cut short has no name, and never throws');
});

test('SNI patterns: exact (any case), *.domain for names under it, * for any', () => {
  assert.equal(sniMatches(['shop.example.com'], 'SHOP.example.com'), true);
  assert.equal(sniMatches(['shop.example.com'], 'shop.example.org'), false);
  assert.equal(sniMatches(['*.example.com'], 'a.b.example.com'), true);
  assert.equal(sniMatches(['*.example.com'], 'example.com'), false);
  assert.equal(sniMatches(['*.example.com'], undefined), false);
  assert.equal(sniMatches(['*'], undefined), true);
});

const backend = (host: string) => [{ host, weight: 1 }];
const ROUTES: L4Route[] = [
  { name: 'a', match: [{ port: 443, sniHosts: ['a.example.com'] }], backends: backend('a') },
  { name: 'wild', match: [{ sniHosts: ['*.example.com'] }], backends: backend('wild') },
  { name: 'p9000', match: [{ port: 9000 }], backends: backend('p9000') },
  { name: 'rest', match: [], backends: backend('rest') },
];

test('the first L4 route whose match holds takes the connection', () => {
  assert.equal(selectL4Route(ROUTES, 443, 'a.example.com')?.name, 'a');
  assert.equal(selectL4Route(ROUTES, 8443, 'a.example.com')?.name, 'wild', 'port limits the first route');
  assert.equal(selectL4Route(ROUTES, 9000, 'x.other.org')?.name, 'p9000');
  assert.equal(selectL4Route(ROUTES, 1, undefined)?.name, 'rest');
  assert.equal(selectL4Route(ROUTES.slice(0, 2), 1, 'other.org'), undefined);
  assert.equal(selectL4Route(undefined, 1), undefined);
});
