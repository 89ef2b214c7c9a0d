/** listeningPorts: the readiness check of local pods reads only the LISTEN part of /proc/<pid>/net/tcp*. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { listeningPorts } from '../../../src/local/node/containers.js';

test('listening ports are all found while hundreds of connected sockets follow them in the table; connected ports are not', { timeout: 20_000 }, async (t) => {
  const servers: net.Server[] = [];
  const sockets: net.Socket[] = [];
  t.after(() => {
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
  });
  for (const host of ['127.0.0.1', '127.0.0.1', '127.0.0.1', '::1']) {
    const server = net.createServer((s) => sockets.push(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    }).catch((e: NodeJS.ErrnoException) => {
      if (host !== '::1') throw e; // a host without IPv6 loopback tests IPv4 only
    });
    servers.push(server);
  }
  const wanted = servers.filter((s) => s.listening).map((s) => (s.address() as net.AddressInfo).port);
  // 300 established connections (600 sockets) to the first listener.
  const target = wanted[0]!;
  await Promise.all(
    Array.from({ length: 300 }, () =>
      new Promise<void>((resolve, reject) => {
        const c = net.connect({ host: '127.0.0.1', port: target }, () => resolve());
        c.once('error', reject);
        sockets.push(c);
      }),
    ),
  );
  const clientPorts = sockets.filter((s) => s.localPort !== undefined && s.localPort !== target).map((s) => s.localPort!);
  const found = listeningPorts(process.pid);
  for (const p of wanted) assert.ok(found.has(p), `listening port ${p} found`);
  const wrongly = clientPorts.filter((p) => found.has(p) && !wanted.includes(p));
  assert.deepEqual(wrongly, [], 'no connected socket counts as listening');
  assert.equal(listeningPorts(2 ** 22 + 12345).size, 0, 'a process that is gone listens on nothing');
});
