/**
 * The nftables fallback on real namespaces: the same redirects as BPF capture, with conntrack
 * answering SO_ORIGINAL_DST. Needs root and the nft binary, not BPF.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { silentLogger } from '../../src/shared/log.js';
import { NftCapture, NFT_TABLE } from '../../src/agent/capture/nft.js';
import { openCapture } from '../../src/agent/capture/open.js';
import { originalDestination } from '../../src/agent/capture/orig-dst.js';
import { BYPASS_MARK, listenInNetns, socketFd, socketInNetns } from '../../native/netns.js';
import { captureTest, closeServer, createFixture, dialFrom, fetchText, nftSkipReason, outcome, runClient, serveFd, startProxies, type Pod } from './fixture.js';

const skipReason = nftSkipReason();

function dial(netnsPath: string, host: string, port: number, mark?: number): Promise<string> {
  const fd = socketInNetns(netnsPath, mark === undefined ? { family: 'IPv4' } : { family: 'IPv4', mark });
  return fetchText(new net.Socket({ fd }), port, host);
}

function tables(netnsPath: string): string {
  return execFileSync('nsenter', [`--net=${netnsPath}`, 'nft', 'list', 'tables'], { encoding: 'utf8' });
}

test('nft capture redirects outbound to 15001 and inbound to 15006', { skip: skipReason }, async (t) => {
  const fx = createFixture('n', 2);
  const capture = new NftCapture({ log: silentLogger() });
  const servers: net.Server[] = [];
  t.after(async () => {
    await capture.uninstall();
    for (const s of servers) await closeServer(s);
    fx.cleanup();
  });
  const [a, b] = fx.pods as [(typeof fx.pods)[0], (typeof fx.pods)[0]];
  servers.push(serveFd(listenInNetns(b.netnsPath, { address: '0.0.0.0', port: 8080 }), (s) => `app-b ${s.localAddress}:${s.localPort}`));
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 8080 }), () => 'app-a'));
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 9090 }), () => 'excluded-a'));
  servers.push(serveFd(listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 15008 }), () => 'hbone-a'));
  servers.push(
    serveFd(listenInNetns(a.netnsPath, { address: '127.0.0.1', port: 15001 }), async (s) => {
      const orig = originalDestination(s, 'outbound');
      const text = await dial(a.netnsPath, orig.address, orig.port, BYPASS_MARK);
      return `proxied ${orig.address}:${orig.port} -> ${text}`;
    }),
  );
  const inbound = serveFd(listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 15006 }), (s) => {
    const o = originalDestination(s, 'inbound');
    return `inbound ${o.address}:${o.port} from ${s.remoteAddress}`;
  });
  servers.push(inbound);

  await capture.enroll({
    uid: 'pod-a',
    netnsPath: a.netnsPath,
    inboundListenerFd: socketFd(inbound),
    excludeInboundPorts: [9090],
  });
  assert.match(tables(a.netnsPath), new RegExp(`table inet ${NFT_TABLE}`));
  assert.doesNotMatch(tables(b.netnsPath), new RegExp(NFT_TABLE), 'only the enrolled pod gets a table');

  await t.test('an app connect is redirected and the original destination read from conntrack', async () => {
    const r = await runClient(a, b.ip, 8080);
    assert.equal(r.error, undefined);
    assert.equal(r.data, `proxied ${b.ip}:8080 -> app-b ${b.ip}:8080`);
    assert.equal(r.remoteAddress, b.ip);
  });

  await t.test('a socket marked 0x539 bypasses capture', async () => {
    assert.equal(await dial(a.netnsPath, b.ip, 8080, BYPASS_MARK), `app-b ${b.ip}:8080`);
  });

  await t.test('inbound is redirected to 15006; 15008 and excluded ports are not', async () => {
    assert.equal(await fetchText(new net.Socket(), 8080, a.ip), `inbound ${a.ip}:8080 from ${a.hostIp}`);
    assert.equal(await fetchText(new net.Socket(), 15008, a.ip), 'hbone-a');
    assert.equal(await fetchText(new net.Socket(), 9090, a.ip), 'excluded-a');
  });

  await t.test('enrolling again replaces the table instead of failing', async () => {
    await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(inbound) });
    const count = tables(a.netnsPath).split('\n').filter((l) => l.includes(NFT_TABLE)).length;
    assert.equal(count, 1);
  });

  await t.test('unenroll removes the table and traffic goes direct', async () => {
    await capture.unenroll('pod-a');
    assert.doesNotMatch(tables(a.netnsPath), new RegExp(NFT_TABLE));
    const r = await runClient(a, b.ip, 8080);
    assert.equal(r.data, `app-b ${b.ip}:8080`);
    assert.equal(await fetchText(new net.Socket(), 8080, a.ip), 'app-a');
  });
});

test('nft capture: IPv6 is captured both ways; while no agent runs the pod is refused; a new agent re-applies the table', { skip: skipReason }, async (t) => {
  const { fx, servers: apps, own } = captureTest(t, 'i', 2, { enterCgroup: false });
  let capture = own(new NftCapture({ log: silentLogger() }));
  let proxies = startProxies(fx.pods[0]!, { ipv6: true });
  t.after(async () => {
    for (const s of proxies.servers) await closeServer(s);
  });
  const [a, b] = fx.pods as [Pod, Pod];
  const hits = { a: 0, b: 0 };
  apps.push(serveFd(listenInNetns(a.netnsPath, { address: '::', port: 8080 }), () => `app-a ${++hits.a}`));
  apps.push(serveFd(listenInNetns(b.netnsPath, { address: '::', port: 8080 }), () => `app-b ${++hits.b}`));
  await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(proxies.inbound), ipv6: true });

  assert.equal(await dialFrom(a.netnsPath, b.ip6, 8080), `proxied [${b.ip6}]:8080 -> app-b 1`, 'IPv6 out: redirected to [::1]:15001');
  assert.equal(await dialFrom(b.netnsPath, a.ip6, 8080), `inbound [${a.ip6}]:8080 from ${b.ip6}`, 'IPv6 in: redirected to [::]:15006');
  assert.equal(await dialFrom(b.netnsPath, a.ip, 8080), `inbound ${a.ip}:8080 from ${b.ip}`, 'IPv4 in, same dual-stack listener');

  // The agent stops: its listeners close, the table stays.
  await capture.close();
  for (const s of proxies.servers) await closeServer(s);
  assert.match(tables(a.netnsPath), new RegExp(`table inet ${NFT_TABLE}`), 'close() leaves the table');
  for (const [from, host] of [
    [a, b.ip],
    [a, b.ip6],
    [b, a.ip],
    [b, a.ip6],
  ] as const) {
    assert.equal(await outcome(dialFrom(from.netnsPath, host, 8080)), 'ECONNREFUSED', `${from.name} -> ${host} is refused while no agent runs`);
  }
  assert.deepEqual(hits, { a: 0, b: 1 }, 'nothing went direct');

  // The next agent enrolls again: the table is replaced in one transaction.
  capture = own(new NftCapture({ log: silentLogger() }));
  proxies = startProxies(a, { ipv6: true });
  await capture.enroll({ uid: 'pod-a', netnsPath: a.netnsPath, inboundListenerFd: socketFd(proxies.inbound), ipv6: true });
  assert.equal(tables(a.netnsPath).split('\n').filter((l) => l.includes(NFT_TABLE)).length, 1);
  assert.equal(await dialFrom(a.netnsPath, b.ip, 8080), `proxied ${b.ip}:8080 -> app-b 2`);
  await capture.uninstall();
  assert.doesNotMatch(tables(a.netnsPath), new RegExp(NFT_TABLE), 'uninstall removes it');
});

test('openCapture builds the configured nft capture without touching BPF', { skip: skipReason }, async () => {
  const { capture, decision } = await openCapture({ mode: 'nft', cgroupPath: '/nonexistent', pinDir: '/nonexistent', log: silentLogger() });
  assert.deepEqual(decision, { mode: 'nft', reason: 'configured' });
  assert.ok(capture instanceof NftCapture);
  assert.deepEqual(capture.enrolled(), []);
  await capture.close();
});
