/** listeningPorts: the readiness check of local pods reads only the LISTEN part of /proc/<pid>/net/tcp*. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { listeningPorts, PodProcesses, type ContainerSpec } from '../../../src/local/node/containers.js';
import { silentLogger } from '../../../src/shared/log.js';

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

test('a container is ready once it listened on every declared port, and stays so until its process changes', async (t) => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.after(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const spec = { name: 'app', argv: ['true'], env: {}, ports: [port], capabilities: [], noNewPrivs: false, readOnlyRoot: false, mounts: [] } as unknown as ContainerSpec;
  const procs = new PodProcesses({ key: 'ns/p', netns: 'none', cgroupProcs: '/dev/null', logDir: '/tmp', restartPolicy: 'Never', containers: [spec], cwd: '/', log: silentLogger(), onChange: () => undefined });
  const c = procs.containers[0]!;
  assert.equal(procs.containerReady(c), false, 'not running');
  c.pid = process.pid;
  const other = { ...spec, ports: [port, 1] } as ContainerSpec;
  assert.equal(procs.containerReady({ ...c, spec: other }), false, 'port 1 does not listen');
  assert.equal(procs.containerReady(c), true, 'its port listens');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.equal(listeningPorts(process.pid).has(port), false);
  assert.equal(procs.containerReady(c), true, 'still ready: /proc is not read again for the same process');
  c.pid = process.ppid;
  assert.equal(procs.containerReady(c), false, 'a new process (a restart) is checked afresh');
});
