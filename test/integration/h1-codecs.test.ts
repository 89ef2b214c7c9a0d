/**
 * The waypoint's own HTTP/1.1 codecs (decision 67) on loopback: the upstream client against a
 * scripted server (framing kinds, interim responses, trailers, reuse, malformed answers), and the
 * lean front with a raw client (pipelining, chunked bodies, HEAD, Connection: close, and the
 * hand-over of an unusual request to node:http's server in the middle of a connection).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { silentLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { emptyHeaderOps } from '../../src/shared/routes.js';
import { HttpUpstream, isUpstreamFailure, type UpstreamResponse } from '../../src/waypoint/endpoint/upstream.js';
import { WaypointServer } from '../../src/waypoint/server/server.js';

/** A TCP server answering each request head it reads with the next scripted reply; counts connections. */
async function scripted(t: TestContext, replies: string[]): Promise<{ port: number; connections: () => number; heads: string[] }> {
  let connections = 0;
  const heads: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    connections++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    let buf = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      buf += d;
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        heads.push(buf.slice(0, end));
        buf = buf.slice(end + 4);
        const reply = replies.shift() ?? 'HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n';
        if (reply.endsWith('<close>')) s.end(reply.slice(0, -'<close>'.length));
        else s.write(reply);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, connections: () => connections, heads };
}

function get(up: HttpUpstream, port: number, method = 'GET'): Promise<UpstreamResponse> {
  return up.dispatch({ key: `127.0.0.1:${port}`, address: '127.0.0.1', port }, { method, path: '/p?q=1', authority: 'svc', headers: { 'x-a': 'b' }, body: undefined, http2: false, signal: new AbortController().signal });
}

async function text(r: UpstreamResponse): Promise<string> {
  let s = '';
  for await (const c of r.body) s += (c as Buffer).toString('latin1');
  return s;
}

test('h1 client: chunked response with trailers, interim 100 skipped, the connection reused', { timeout: 20_000 }, async (t) => {
  const srv = await scripted(t, [
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-d: 1\r\nx-d: 2\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-t: v\r\n\r\n',
    'HTTP/1.1 204 No Content\r\n\r\n',
  ]);
  const up = new HttpUpstream();
  t.after(() => up.close());
  const r = await get(up, srv.port);
  assert.equal(r.status, 200);
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(r.headers['x-d'], '1, 2');
  assert.equal(await text(r), 'hello world');
  assert.deepEqual({ ...(await r.trailers) }, { 'x-t': 'v' });
  assert.match(srv.heads[0]!, /^GET \/p\?q=1 HTTP\/1\.1\r\nhost: svc\r\nx-a: b$/);
  const r2 = await get(up, srv.port);
  assert.equal(r2.status, 204);
  assert.equal(await text(r2), '');
  assert.equal(srv.connections(), 1, 'the second request went on the pooled connection');
});

test('h1 client: a body framed by the connection end, HEAD without body, connection: close honoured', { timeout: 20_000 }, async (t) => {
  const srv = await scripted(t, ['HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n', 'HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok', 'HTTP/1.1 200 OK\r\n\r\nuntil the end<close>']);
  const up = new HttpUpstream();
  t.after(() => up.close());
  const head = await get(up, srv.port, 'HEAD');
  assert.equal(head.headers['content-length'], '10');
  assert.equal(await text(head), '', 'no body after a HEAD response');
  assert.equal(await text(await get(up, srv.port)), 'ok');
  assert.equal(await text(await get(up, srv.port)), 'until the end');
  assert.equal(srv.connections(), 2, 'connection: close made the third request open a new connection');
});

test('h1 client: malformed answers and refused connects fail the try with their kind', { timeout: 20_000 }, async (t) => {
  const bad = ['HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n', 'HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nx', 'HTTP/1.1 200 OK\r\nbad header\r\n\r\n', 'HTTP/1.1 101 Switching Protocols\r\n\r\n', 'HTTQ/1.1 200 OK\r\n\r\n'];
  const srv = await scripted(t, [...bad]);
  const up = new HttpUpstream();
  t.after(() => up.close());
  for (const reply of bad) {
    await assert.rejects(get(up, srv.port), (e: unknown) => isUpstreamFailure(e) && e.kind === 'reset', JSON.stringify(reply));
  }
  assert.equal(srv.connections(), bad.length, 'a connection that carried a malformed answer is not reused');
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  await assert.rejects(get(up, port), (e: unknown) => isUpstreamFailure(e) && e.kind === 'connect-failure');
});

/** A waypoint (plain listener, one route to `backend`) in front of an echo of method, url and body. */
async function front(t: TestContext): Promise<{ port: number; seen: string[] }> {
  const seen: string[] = [];
  const backend = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${body}`);
      res.setHeader('content-type', 'text/plain');
      res.end(`${req.method} ${req.url} ${body}`);
    });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  const bp = (backend.address() as net.AddressInfo).port;
  const upstream = new HttpUpstream();
  const server = new WaypointServer({ log: silentLogger(), registry: createRegistry(), dispatch: upstream.dispatch, resolveEndpoints: () => [{ key: `127.0.0.1:${bp}`, address: '127.0.0.1', port: bp }] });
  server.setRoutes([{ name: 'shop/svc', namespace: 'shop', hostname: 'svc', aliases: [], ports: [{ port: 80, protocol: 'http' }], routes: [{ name: 'all', match: [], backends: [{ host: 'svc', weight: 1 }], headers: { request: emptyHeaderOps(), response: emptyHeaderOps() } }], authorization: [] }]);
  const { port } = await server.listen(0, '127.0.0.1');
  t.after(async () => {
    await server.close(200);
    upstream.close();
    backend.closeAllConnections();
    backend.close();
  });
  return { port, seen };
}

/** Writes `bytes` on one connection and reads until `until` holds (then 50 ms more) or the server closes (5 s bound). */
function exchange(port: number, bytes: string, until: (text: string) => boolean): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(bytes));
    let text = '';
    let settled = false;
    const done = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text, closed });
    };
    const timer = setTimeout(() => done(false), 5000);
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      text += d;
      if (until(text)) setTimeout(() => done(s.readableEnded), 50);
    });
    s.on('error', () => undefined);
    s.once('close', () => done(true));
  });
}

/** Status codes of the responses in `text` (a status line may follow a body directly). */
const statuses = (text: string): number[] => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

test('h1 front: pipelined requests answered in order; a chunked body forwarded; HEAD without body', { timeout: 20_000 }, async (t) => {
  const f = await front(t);
  const H = 'host: svc\r\n';
  const bytes = `GET /one HTTP/1.1\r\n${H}\r\nPOST /two HTTP/1.1\r\n${H}transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nHEAD /three HTTP/1.1\r\n${H}\r\n`;
  const r = await exchange(f.port, bytes, (x) => statuses(x).length === 3);
  assert.deepEqual(statuses(r.text), [200, 200, 200]);
  assert.deepEqual(f.seen, ['GET /one ', 'POST /two abcde', 'HEAD /three ']);
  const bodies = r.text.split(/HTTP\/1\.1 200 OK\r\n/).slice(1);
  assert.match(bodies[0]!, /\r\n\r\nGET \/one $/);
  assert.match(bodies[1]!, /\r\n\r\nPOST \/two abcde$/);
  assert.match(bodies[2]!, /\r\n\r\n$/, 'no body bytes after the HEAD response');
  assert.match(bodies[0]!, /^(?:.*\r\n)*date: /i, 'a Date header, as node:http sends');
});

test('h1 front: an HTTP/1.0 request after a served one goes to node:http on the same connection; connection: close closes', { timeout: 20_000 }, async (t) => {
  const f = await front(t);
  const r = await exchange(f.port, 'GET /lean HTTP/1.1\r\nhost: svc\r\n\r\nGET /old HTTP/1.0\r\nhost: svc\r\n\r\n', (x) => statuses(x).length === 2);
  assert.deepEqual(statuses(r.text), [200, 200]);
  assert.deepEqual(f.seen, ['GET /lean ', 'GET /old ']);
  const c = await exchange(f.port, 'GET /bye HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n', () => false);
  assert.deepEqual(statuses(c.text), [200]);
  assert.match(c.text, /connection: close\r\n/i);
  assert.equal(c.closed, true, 'the waypoint closed the connection after the response');
});
