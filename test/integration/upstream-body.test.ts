/**
 * The waypoint's upstream client lets go of a request whose body stops before its end: the app
 * has answered, the client left (or a retry gave up on this try) and the body stream is destroyed
 * without an error. The upstream request must go down with it, or it holds its connection to the
 * app for good (found by the waypoint fuzz run: 3 app connections still open 45 s later).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import { PassThrough } from 'node:stream';
import { HttpUpstream } from '../../src/waypoint/endpoint/upstream.js';
import { eventually } from '../helpers/process-usage.js';

/** An app that answers at once without waiting for the body; counts its open connections. */
async function app(t: TestContext, h2: boolean): Promise<{ port: number; open: () => number }> {
  const sockets = new Set<net.Socket>();
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    req.resume();
    res.end('ok');
  };
  const server = h2 ? http2.createServer(handler) : http.createServer(handler);
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, open: () => sockets.size };
}

for (const h2 of [false, true]) {
  test(`upstream ${h2 ? 'HTTP/2' : 'HTTP/1.1'}: a body destroyed before its end (no error) ends the upstream request`, { timeout: 30_000 }, async (t) => {
    const a = await app(t, h2);
    const upstream = new HttpUpstream();
    t.after(() => upstream.close());
    const body = new PassThrough();
    body.write('part of a body that will never end');
    const resp = await upstream.dispatch(
      { key: `127.0.0.1:${a.port}`, address: '127.0.0.1', port: a.port },
      { method: 'POST', path: '/', authority: 'app', headers: { 'content-length': '1000000' }, body, http2: h2, signal: new AbortController().signal },
    );
    assert.equal(resp.status, 200);
    resp.body.resume();
    assert.equal(a.open(), 1, 'the request is on one connection to the app');
    body.destroy();
    if (h2) {
      // HTTP/2: the stream is reset; the session (shared by requests) may stay. The stream must end.
      assert.ok(await eventually(() => resp.body.destroyed, 5000), 'the upstream stream is reset');
    } else {
      assert.ok(await eventually(() => a.open() === 0, 5000), `the connection to the app is closed (${a.open()} open)`);
    }
  });
}
