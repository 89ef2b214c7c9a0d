/**
 * HTTP limits and request smuggling at the waypoint and the ingress gateway (issue 7): headers
 * over the limit get 431, ambiguous framing (content-length with transfer-encoding, two
 * content-lengths, obsolete line folding, bare LF, bad chunk sizes) gets 400 and never reaches a
 * backend; bodies stream through with at most 64 KiB kept for retries.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { silentLogger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import { emptyHeaderOps, type RouteConfig } from '../../src/shared/routes.js';
import { validateRouteConfig } from '../../src/shared/validate-routes.js';
import { WaypointServer } from '../../src/waypoint/server/server.js';
import { HttpUpstream } from '../../src/waypoint/endpoint/upstream.js';
import { ingressPort } from '../helpers/ingress-port.js';
import { MAX_REQUEST_HEADER_BYTES } from '../../src/waypoint/server/limits.js';

interface Backend {
  port: number;
  /** TCP connections the waypoint or gateway opened to the backend. */
  connections: () => number;
  requests: Array<{ method: string; url: string; bytes: number; sha256: string }>;
}

async function backend(t: TestContext, status: (n: number) => number = () => 200): Promise<Backend> {
  const requests: Backend['requests'] = [];
  // The backend's own header limit is above the front's, so a 431 can only come from the front.
  const server = http.createServer({ maxHeaderSize: 4 * MAX_REQUEST_HEADER_BYTES }, (req, res) => {
    const h = crypto.createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      h.update(c);
      bytes += c.length;
    });
    req.once('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', bytes, sha256: h.digest('hex') });
      res.writeHead(status(requests.length));
      res.end(`seen ${req.url}`);
    });
  });
  let connections = 0;
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { port: (server.address() as net.AddressInfo).port, requests, connections: () => connections };
}

function routeTo(retries = false): RouteConfig {
  return {
    name: 'shop/svc',
    namespace: 'shop',
    hostname: 'svc',
    aliases: [],
    ports: [{ port: 80, protocol: 'http' }],
    routes: [
      {
        name: 'all',
        match: [],
        backends: [{ host: 'svc', weight: 1 }],
        headers: { request: emptyHeaderOps(), response: emptyHeaderOps() },
        ...(retries ? { retries: { attempts: 2, retryOn: ['5xx'], retriableStatusCodes: [], retryNonIdempotent: true, backoffMs: 1 } } : {}),
      },
    ],
    authorization: [],
  };
}

/** A waypoint (plain listener) or a gateway (an ingress HTTP port) in front of `be`. */
async function front(t: TestContext, kind: 'waypoint' | 'gateway', be: Backend, retries = false): Promise<number> {
  const upstream = new HttpUpstream();
  const server = new WaypointServer({
    log: silentLogger(),
    registry: createRegistry(),
    dispatch: upstream.dispatch,
    resolveEndpoints: () => [{ key: `127.0.0.1:${be.port}`, address: '127.0.0.1', port: be.port }],
    ...(kind === 'gateway' ? { gateway: 'istio-system/gw' } : {}),
  });
  assert.deepEqual(validateRouteConfig(routeTo(retries)), []);
  server.setRoutes(kind === 'waypoint' ? [routeTo(retries)] : []);
  t.after(async () => {
    await server.close(200);
    upstream.close();
  });
  if (kind === 'waypoint') return (await server.listen(0, '127.0.0.1')).port;
  return ingressPort(t, server);
}

/** Writes raw bytes, reads until the server closes (or 5 s); returns the status codes of every response. */
function raw(port: number, bytes: string | Buffer): Promise<number[]> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let text = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (text += d));
    s.on('error', () => undefined);
    const done = (): void => resolve([...text.matchAll(/(?:^|\r\n)HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])));
    const timer = setTimeout(() => {
      s.destroy();
      done();
    }, 5000);
    s.once('close', () => {
      clearTimeout(timer);
      done();
    });
    s.once('connect', () => s.write(bytes));
  });
}

const H = 'Host: svc\r\n';
const SMUGGLING: Array<[string, string]> = [
  ['content-length and transfer-encoding together', `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`],
  ['transfer-encoding and content-length together', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`],
  ['two different content-lengths', `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nContent-Length: 40\r\n\r\nabcdGET /smuggled HTTP/1.1\r\n${H}\r\n`],
  ['a content-length list', `POST / HTTP/1.1\r\n${H}Content-Length: 4, 40\r\n\r\nabcd`],
  ['transfer-encoding not ending in chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`],
  ['an unknown transfer-encoding', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`],
  ['obsolete line folding', `GET / HTTP/1.1\r\n${H}X-Folded: a\r\n  b\r\n\r\n`],
  ['folding into transfer-encoding', `POST / HTTP/1.1\r\n${H}Transfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\nabcd`],
  ['whitespace before the colon', `POST / HTTP/1.1\r\n${H}Content-Length : 4\r\n\r\nabcd`],
  ['bare LF line endings', `GET / HTTP/1.1\n${H.trim()}\n\n`],
  ['a NUL in a header value', `GET / HTTP/1.1\r\n${H}X-Nul: a\u0000b\r\n\r\n`],
  ['a negative content-length', `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`],
];
/** Framing errors inside a body arrive after the headers were accepted and forwarding began. */
const BODY_FRAMING: Array<[string, string]> = [
  ['a chunk size that overflows', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`],
  ['a chunk without its CRLF', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabcGET /smuggled HTTP/1.1\r\n${H}\r\n`],
];

for (const kind of ['waypoint', 'gateway'] as const) {
  test(`${kind}: request headers over ${MAX_REQUEST_HEADER_BYTES / 1024} KiB get 431; just under the limit passes`, { timeout: 30_000 }, async (t) => {
    const be = await backend(t);
    const port = await front(t, kind, be);
    const big = `GET /big HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(MAX_REQUEST_HEADER_BYTES + 1024)}\r\n\r\n`;
    assert.deepEqual(await raw(port, big), [431]);
    assert.equal(be.connections(), 0, 'refused by the front');
    const fits = `GET /fits HTTP/1.1\r\n${H}X-Fits: ${'a'.repeat(MAX_REQUEST_HEADER_BYTES - 4096)}\r\nConnection: close\r\n\r\n`;
    assert.deepEqual(await raw(port, fits), [kind === 'waypoint' ? 200 : 404], 'a request under the limit is served (the gateway has no route: 404)');
    assert.deepEqual(be.requests.map((r) => r.url), kind === 'waypoint' ? ['/fits'] : []);
  });

  test(`${kind}: request smuggling attempts get 400 and never reach the backend`, { timeout: 60_000 }, async (t) => {
    const be = await backend(t);
    const port = await front(t, kind, be);
    for (const [name, bytes] of SMUGGLING) assert.deepEqual(await raw(port, bytes), [400], name);
    assert.equal(be.connections(), 0, 'the front refused them all itself: nothing, smuggled or not, reached the backend');
    for (const [name, bytes] of BODY_FRAMING) {
      const statuses = await raw(port, bytes);
      assert.ok(statuses.length <= 1 && !statuses.includes(200), `${name}: one refusal at most, never a served request (${statuses.join(',')})`);
    }
    assert.deepEqual(be.requests, [], 'the backend completed no request: the broken body was cut off, nothing behind it was smuggled');
  });

  test(`${kind}: HTTP/2 header lists over the limit are refused`, { timeout: 30_000 }, async (t) => {
    const be = await backend(t);
    const port = await front(t, kind, be);
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => undefined);
    t.after(() => client.destroy());
    const outcome = await new Promise<string>((resolve) => {
      const s = client.request({ ':path': '/h2big', host: 'svc', 'x-big': 'a'.repeat(MAX_REQUEST_HEADER_BYTES + 1024) });
      s.on('response', (h) => resolve(`status ${h[':status']}`));
      s.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`));
      s.on('close', () => resolve(`closed ${s.rstCode}`));
      s.end();
    });
    assert.doesNotMatch(outcome, /status 200/, `refused: ${outcome}`);
    assert.equal(be.connections(), 0);
  });
}

test('waypoint: a 32 MiB body streams through intact, only 64 KiB is kept for a retry', { timeout: 60_000 }, async (t) => {
  // The backend fails every first try: a body that fits the replay buffer is retried, a larger one is not.
  const be = await backend(t, (n) => (n % 2 === 1 ? 503 : 200));
  const port = await front(t, 'waypoint', be, true);
  const post = (bytes: number): Promise<{ status: number; sha256: string }> =>
    new Promise((resolve, reject) => {
      const h = crypto.createHash('sha256');
      const req = http.request({ host: '127.0.0.1', port, path: `/upload/${bytes}`, method: 'POST', headers: { host: 'svc' } }, (res) => {
        res.resume();
        res.once('end', () => resolve({ status: res.statusCode ?? 0, sha256: h.digest('hex') }));
      });
      req.once('error', reject);
      let left = bytes;
      const chunk = crypto.randomBytes(256 * 1024);
      const write = (): void => {
        while (left > 0) {
          const piece = chunk.subarray(0, Math.min(chunk.length, left));
          left -= piece.length;
          h.update(piece);
          if (!req.write(piece)) return void req.once('drain', write);
        }
        req.end();
      };
      write();
    });
  const small = await post(60 * 1024);
  assert.equal(small.status, 200, 'a body within the replay limit is retried');
  assert.deepEqual(be.requests.map((r) => r.bytes), [60 * 1024, 60 * 1024]);
  const big = await post(32 * 1024 * 1024);
  assert.equal(big.status, 503, 'a 32 MiB body is not buffered for a retry');
  assert.equal(be.requests.length, 3);
  assert.equal(be.requests[2]!.bytes, 32 * 1024 * 1024);
  assert.equal(be.requests[2]!.sha256, big.sha256, 'the body arrived intact');
});
