/** HBONE framing helpers: CONNECT headers, forwarded parsing, SAN extraction, addresses, copy. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { buildBaggage, buildConnectHeaders, forwardedClientPort, parseForwardedFor, parseForwardedSource, uriSans, newTraceparent, tunnelStatusError } from '../../../src/shared/hbone/tunnel.js';
import { formatAddress, parseAddress, normalizeIp } from '../../../src/shared/address.js';
import { copyBidirectional, type CopyResult } from '../../../src/shared/hbone/copy.js';
import { trafficKey, trafficLabels, trafficLabelSet, TRAFFIC_LABELS } from '../../../src/agent/proxy/metrics.js';
import { testWorkload } from '../../helpers/loopback-net.js';

test('framing: CONNECT headers name the target and carry forwarded/traceparent', () => {
  const h = buildConnectHeaders({ target: { address: 'fd00::7', port: 8080 }, srcIp: 'fd00::5', random: () => 0.5 });
  assert.equal(h[':method'], 'CONNECT');
  assert.equal(h[':authority'], '[fd00::7]:8080');
  assert.equal(h['forwarded'], 'for="[fd00::5]"');
  assert.equal(h['traceparent'], `00-${'80'.repeat(16)}-${'80'.repeat(8)}-00`);
  assert.equal(h[':path'], undefined, 'CONNECT has no :path');
  assert.match(newTraceparent(), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
});

test('framing: baggage is composed once per workload object; a changed workload (a new object) gets its own', () => {
  const w = testWorkload({ name: 'a-1', namespace: 'shop', ip: '10.0.0.1' });
  const first = buildBaggage({ ...w, canonicalName: 'cart', canonicalRevision: 'v1' });
  assert.match(first, /k8s\.namespace\.name=shop/);
  assert.match(first, /service\.name=cart,service\.version=v1/);
  const obj = { ...w, canonicalName: 'cart', canonicalRevision: 'v2' };
  assert.equal(buildBaggage(obj), buildBaggage(obj));
  assert.match(buildBaggage(obj), /service\.version=v2/, 'the new object carries its own revision');
});

test('framing: trace ids from the random pool are well formed and distinct across pool refills', () => {
  const seen = new Set<string>();
  // 600 ids span three refills of the 256-id pool.
  for (let i = 0; i < 600; i++) {
    const tp = newTraceparent();
    assert.match(tp, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    seen.add(tp.slice(3, 35));
  }
  assert.equal(seen.size, 600);
});

test('framing: forwarded for= round-trips for v4, v6 and with a port', () => {
  const rows: Array<[string | undefined, string | undefined]> = [
    ['for="10.0.0.1"', '10.0.0.1'],
    ['for="10.0.0.1:4567";host=web.ns.svc.cluster.local', '10.0.0.1'],
    ['for="[fd00::1]:80"', 'fd00::1'],
    ['host=x', undefined],
    [undefined, undefined],
  ];
  for (const [h, want] of rows) assert.equal(parseForwardedFor(h), want, String(h));
  const built = buildConnectHeaders({ target: { address: '10.0.0.2', port: 1 }, srcIp: '10.0.0.9' });
  assert.equal(parseForwardedFor(String(built['forwarded'])), '10.0.0.9');
});

test("framing: the client's port travels in for= as ztunnel writes it, and only a valid one is read back", () => {
  const fwd = (srcIp: string, srcPort?: number): string => String(buildConnectHeaders({ target: { address: '10.0.0.2', port: 1 }, srcIp, ...(srcPort === undefined ? {} : { srcPort }) })['forwarded']);
  assert.equal(fwd('10.0.0.9', 40123), 'for="10.0.0.9:40123"');
  assert.equal(fwd('fd00::9', 40123), 'for="[fd00::9]:40123"');
  assert.equal(fwd('10.0.0.9'), 'for="10.0.0.9"');
  assert.deepEqual(parseForwardedSource(fwd('10.0.0.9', 40123)), { address: '10.0.0.9', port: 40123 });
  assert.deepEqual(parseForwardedSource(fwd('fd00::9', 1)), { address: 'fd00::9', port: 1 });
  assert.deepEqual(parseForwardedSource('for="10.0.0.9:65535";host=web.ns.svc.cluster.local'), { address: '10.0.0.9', port: 65535 });
  for (const bad of ['for="10.0.0.9:0"', 'for="10.0.0.9:65536"', 'for="10.0.0.9:99999999999999999999"', 'for="[fd00::9]:0"']) {
    assert.equal(parseForwardedSource(bad)?.port, undefined, bad);
  }
  assert.deepEqual(parseForwardedSource('for="10.0.0.9"'), { address: '10.0.0.9' });
  assert.deepEqual(parseForwardedSource('for="[fd00::9"'), { address: 'fd00::9' }, 'an unclosed bracket');
  assert.equal(parseForwardedSource('for=unknown')?.port, undefined);
  assert.equal(parseForwardedSource(undefined), undefined);
});

test("framing: the destination takes the forwarded port only when for= is the tunnel peer's own address", () => {
  assert.equal(forwardedClientPort(parseForwardedSource('for="10.0.0.9:40123"'), '10.0.0.9'), 40123);
  assert.equal(forwardedClientPort(parseForwardedSource('for="10.0.0.9:40123"'), '::ffff:10.0.0.9'), 40123, 'a v4-mapped peer address is the same address');
  assert.equal(forwardedClientPort(parseForwardedSource('for="[fd00::9]:40123"'), 'fd00::9'), 40123);
  assert.equal(forwardedClientPort(parseForwardedSource('for="10.0.0.7:40123"'), '10.0.0.9'), undefined, "another address's port (a waypoint forwards its client)");
  assert.equal(forwardedClientPort(parseForwardedSource('for="10.0.0.9"'), '10.0.0.9'), undefined);
  assert.equal(forwardedClientPort(parseForwardedSource('for="10.0.0.9:0"'), '10.0.0.9'), undefined);
  assert.equal(forwardedClientPort(undefined, '10.0.0.9'), undefined);
});

test('framing: URI SANs, addresses, status errors', () => {
  assert.deepEqual(uriSans({ subjectaltname: 'DNS:x, URI:spiffe://td/ns/a/sa/b, IP Address:1.2.3.4' }), ['spiffe://td/ns/a/sa/b']);
  assert.deepEqual(uriSans(undefined), []);
  for (const a of [{ address: '10.1.2.3', port: 80 }, { address: 'fd00::1', port: 15008 }]) assert.deepEqual(parseAddress(formatAddress(a)), a);
  assert.equal(parseAddress('10.0.0.1:0'), undefined);
  assert.equal(parseAddress('host:80'), undefined);
  assert.equal(normalizeIp('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(tunnelStatusError(401, { address: '1.1.1.1', port: 1 }, { address: '1.1.1.1', port: 15008 }).code, 'AMBIT_ERR_TUNNEL_REFUSED');
  assert.equal(tunnelStatusError(503, { address: '1.1.1.1', port: 1 }, { address: '1.1.1.1', port: 15008 }).code, 'AMBIT_ERR_UPSTREAM_CONNECT');
  assert.equal(tunnelStatusError(400, { address: '1.1.1.1', port: 1 }, { address: '1.1.1.1', port: 15008 }).code, 'AMBIT_ERR_TUNNEL_CONNECT');
});

test('metrics: every traffic label is present and unknown by default', () => {
  const l = trafficLabels({ reporter: 'destination', mtls: false });
  assert.deepEqual(Object.keys(l), [...TRAFFIC_LABELS]);
  assert.equal(l.source_workload, 'unknown');
  assert.equal(l.connection_security_policy, 'unknown');
  assert.equal(l.request_protocol, 'tcp');
  assert.equal(l.response_flags, '-');
});

test('metrics: a label set is built once per config state and ends, and equals the one built afresh', () => {
  const a = testWorkload({ name: 'a', namespace: 'ns', ip: '10.0.0.1', serviceAccount: 'sa-a' });
  const b = testWorkload({ name: 'b', namespace: 'ns', ip: '10.0.0.2', serviceAccount: 'sa-b' });
  const id = 'spiffe://cluster.local/ns/ns/sa/sa-a';
  const scope = {};
  const input = { reporter: 'destination' as const, src: a, srcIdentity: id, dst: b, mtls: true };
  const first = trafficLabelSet(scope, input);
  assert.equal(trafficLabelSet(scope, { ...input }), first, 'the same ends in the same config state share one set');
  assert.deepEqual(first.labels, trafficLabels(input));
  assert.equal(first.key, trafficKey(trafficLabels(input)));
  assert.notEqual(trafficLabelSet({}, input), first, 'a new config state builds anew');
  const other = trafficLabelSet(scope, { ...input, srcIdentity: 'spiffe://cluster.local/ns/ns/sa/other' });
  assert.equal(other.labels.source_principal, 'spiffe://cluster.local/ns/ns/sa/other', 'another peer identity is another set');
  assert.notEqual(trafficLabelSet(scope, { ...input, mtls: false }).key, first.key);
});

test('copy: counts bytes both ways, carries half-close each way, calls onClose once', { timeout: 10_000 }, async (t) => {
  // app <-> [downstream | copy | upstream] <-> backend, all real loopback sockets.
  const backendGot: Buffer[] = [];
  const backend = net.createServer({ allowHalfOpen: true }, (b) => {
    b.on('data', (d: Buffer) => backendGot.push(d));
    b.once('end', () => b.end('world!'));
  });
  const proxy = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    backend.close();
    proxy.close();
  });
  let closes = 0;
  const result = new Promise<CopyResult>((resolve) => {
    proxy.once('connection', (down: net.Socket) => {
      const up = net.connect({ host: '127.0.0.1', port: (backend.address() as net.AddressInfo).port, allowHalfOpen: true });
      copyBidirectional(down, up, {
        onClose: (r) => {
          closes++;
          resolve(r);
        },
      });
    });
  });
  const app = net.connect({ host: '127.0.0.1', port: (proxy.address() as net.AddressInfo).port, allowHalfOpen: true });
  const appGot: Buffer[] = [];
  app.on('data', (d: Buffer) => appGot.push(d));
  app.once('end', () => app.end());
  app.end('hello');
  const r = await result;
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(closes, 1);
  assert.equal(Buffer.concat(backendGot).toString(), 'hello');
  assert.equal(Buffer.concat(appGot).toString(), 'world!');
  assert.deepEqual([r.bytesFromDownstream, r.bytesFromUpstream, r.clean], [5, 6, true]);
});

test('framing: an :authority is an IPv4 address or a bracketed IPv6 one, with a port 1-65535', () => {
  for (const bad of ['[10.0.0.1]:80', '999.1.1.1:80', '1.2.3:80', '[::1', '[zz::1]:80', 'fd00::1:80', '10.0.0.1:65536', ':80', '']) assert.equal(parseAddress(bad), undefined, bad);
  assert.deepEqual(parseAddress('[::ffff:10.0.0.1]:80'), { address: '::ffff:10.0.0.1', port: 80 });
  assert.deepEqual(parseAddress('10.0.0.1:65535'), { address: '10.0.0.1', port: 65535 });
});
