/**
 * The sk_reuseport program that gives a pod's HBONE tunnels to the agent's worker threads in
 * turn (src/agent/workers/spread.ts, bpf/reuseport.bpf.c), on a real SO_REUSEPORT group: the
 * listeners stand in for the workers' 15008 listeners of one pod. Needs root and BPF.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { listenInNetns } from '../../native/netns.js';
import { spreadInTurn } from '../../src/agent/workers/spread.js';
import { bpfSkipReason, closeServer } from './fixture.js';

const skip = bpfSkipReason();

/** A listener of the group on 127.0.0.1:port (0: a new port) that records which one accepted. */
async function member(name: string, port: number, order: string[], servers: net.Server[]): Promise<{ fd: number; port: number; server: net.Server }> {
  const fd = listenInNetns('/proc/self/ns/net', { address: '127.0.0.1', port, reusePort: true });
  const server = net.createServer((s) => {
    order.push(name);
    s.destroy();
  });
  await new Promise<void>((resolve) => server.listen({ fd }, () => resolve()));
  servers.push(server);
  return { fd, port: (server.address() as net.AddressInfo).port, server };
}

/** Connects once and waits until the group accepted it. */
async function connectOnce(port: number, order: string[]): Promise<void> {
  const before = order.length;
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no listener accepted within 5 s')), 5000);
    const check = (): void => {
      if (order.length > before) {
        clearTimeout(t);
        resolve();
      } else setTimeout(check, 2);
    };
    check();
  });
  s.destroy();
}

test('new connections go to the listeners of the group in turn, and to those left when one closes', { skip }, async (t) => {
  const servers: net.Server[] = [];
  t.after(async () => {
    for (const s of servers) await closeServer(s);
  });
  const order: string[] = [];
  const a = await member('a', 0, order, servers);
  const b = await member('b', a.port, order, servers);
  const c = await member('c', a.port, order, servers);
  spreadInTurn([a.fd, b.fd, c.fd]);
  for (let i = 0; i < 12; i++) await connectOnce(a.port, order);
  // The turn counter starts at 0; a hash would give this exact order once in 3^12.
  assert.deepEqual(order, ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c']);

  order.length = 0;
  await closeServer(b.server);
  for (let i = 0; i < 6; i++) await connectOnce(a.port, order);
  assert.equal(order.length, 6, 'every connection was accepted');
  assert.ok(!order.includes('b'));
  assert.ok(order.includes('a') && order.includes('c'), `both remaining listeners take connections (${order.join(',')})`);
});

test('a socket outside any SO_REUSEPORT group is refused with an error, not half spread', { skip }, async (t) => {
  const servers: net.Server[] = [];
  t.after(async () => {
    for (const s of servers) await closeServer(s);
  });
  const plain = net.createServer();
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', () => resolve()));
  servers.push(plain);
  const fd = (plain as unknown as { _handle: { fd: number } })._handle.fd;
  assert.throws(() => spreadInTurn([fd, fd]), /ambit_spread_socks|EINVAL|EBUSY|EOPNOTSUPP/);
});
