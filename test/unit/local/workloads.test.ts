import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderHosts, renderResolvConf, selects } from '../../../src/local/workloads.js';
import { renderServiceRules } from '../../../src/local/network.js';
import { addressPlan, blockHolders, planNode, validatePrefix } from '../../../src/local/plan.js';

test('selectors: every key must match; an empty selector selects nothing', () => {
  assert.equal(selects({ app: 'web' }, { app: 'web', version: 'v1' }), true);
  assert.equal(selects({ app: 'web', version: 'v2' }, { app: 'web', version: 'v1' }), false);
  assert.equal(selects({}, { app: 'web' }), false);
  assert.equal(selects(undefined, { app: 'web' }), false);
});

test('kube-proxy rules: random choice among endpoints, hairpin masquerade, reset when none; UDP too; replaced atomically', () => {
  const rules = [
    { vip: '10.96.0.10', protocol: 'tcp' as const, port: 80, endpoints: [{ ip: '10.244.1.2', port: 8080 }, { ip: '10.244.2.2', port: 8080 }] },
    { vip: '10.96.0.11', protocol: 'tcp' as const, port: 5432, endpoints: [] },
    { vip: '10.96.0.12', protocol: 'udp' as const, port: 53, endpoints: [{ ip: '10.240.0.1', port: 53 }] },
    { vip: '10.96.0.12', protocol: 'udp' as const, port: 54, endpoints: [] },
  ];
  const nft = renderServiceRules('t1', rules);
  assert.match(nft, /ip daddr 10\.96\.0\.10 tcp dport 80 numgen random mod 2 vmap \{ 0 : jump s0e0, 1 : jump s0e1 \}/);
  assert.match(nft, /chain s0e1 \{\n\s+ip saddr 10\.244\.2\.2 meta mark set mark or 0x4000\n\s+meta l4proto tcp dnat ip to 10\.244\.2\.2:8080/);
  assert.match(nft, /type nat hook postrouting priority 100; policy accept;\n\s+meta mark & 0x4000 == 0x4000 masquerade/, "a pod reaching itself through its Service is masqueraded");
  assert.match(nft, /ip daddr 10\.96\.0\.11 tcp dport 5432 reject with tcp reset/);
  assert.match(nft, /ip daddr 10\.96\.0\.12 udp dport 53 numgen random mod 1 vmap \{ 0 : jump s2e0 \}/);
  assert.match(nft, /chain s2e0 \{\n\s+ip saddr 10\.240\.0\.1 meta mark set mark or 0x4000\n\s+meta l4proto udp dnat ip to 10\.240\.0\.1:53/);
  assert.match(nft, /ip daddr 10\.96\.0\.12 udp dport 54 reject\n/, 'a UDP port without endpoints gets port unreachable');
  assert.match(nft, /^table ip t1_svc \{\}\ndelete table ip t1_svc\n/, 'the table is replaced atomically');
});

test('hosts file as the kubelet writes it: localhost, IPv6 names, the pod\'s own name; no Service names', () => {
  const hosts = renderHosts({ name: 'p', namespace: 'shop', ip: '10.244.1.2' });
  assert.match(hosts, /^127\.0\.0\.1\tlocalhost$/m);
  assert.match(hosts, /^::1\tlocalhost ip6-localhost ip6-loopback$/m);
  assert.match(hosts, /^fe00::2\tip6-allrouters$/m);
  assert.match(hosts, /^10\.244\.1\.2\tp\n$/m, 'the pod\'s line is last');
  assert.doesNotMatch(hosts, /svc/);
  const sub = renderHosts({ name: 'web-0', namespace: 'shop', ip: '10.244.1.3', hostname: 'h', subdomain: 'web' }, 'example.org');
  assert.match(sub, /^10\.244\.1\.3\th\.web\.shop\.svc\.example\.org\th$/m, 'hostname.subdomain FQDN first, then the hostname');
});

test('resolv.conf as the kubelet writes it for ClusterFirst: namespace search list, the DNS ClusterIP, ndots:5', () => {
  assert.equal(renderResolvConf('shop', '10.99.0.10'), 'search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.99.0.10\noptions ndots:5\n');
  assert.match(renderResolvConf('a', '10.96.0.10', 'corp.internal'), /^search a\.svc\.corp\.internal svc\.corp\.internal corp\.internal$/m);
});

test('address blocks: block K shifts every range, so meshes on different blocks never overlap', () => {
  assert.deepEqual(addressPlan(0), { net: 0, nodeNet: '10.240.0.0/24', podNet: '10.244.0.0/16', serviceNet: '10.96.0.0/16', bridgeIp: '10.240.0.1' });
  assert.deepEqual(addressPlan(3), { net: 3, nodeNet: '10.240.3.0/24', podNet: '10.247.0.0/16', serviceNet: '10.99.0.0/16', bridgeIp: '10.240.3.1' });
  const n = planNode('x', 1, 3);
  assert.deepEqual([n.ip, n.podCidr, n.podGateway], ['10.240.3.11', '10.247.1.0/24', '10.247.1.1']);
  for (const bad of [-1, 8, 1.5, Number.NaN]) assert.throws(() => addressPlan(bad), { code: 'AMBIT_ERR_CLI_USAGE' });
});

test('block holders: which interfaces hold a block\'s bridge address, and whose mesh bridge each is', () => {
  const out = [
    '1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever',
    '885: ambit-br    inet 10.240.0.1/24 scope global ambit-br\\       valid_lft forever preferred_lft forever',
    '1059: ma-br    inet 10.240.1.1/24 scope global ma-br\\       valid_lft forever preferred_lft forever',
    '1062: mb-br    inet 10.240.0.1/24 scope global mb-br\\       valid_lft forever preferred_lft forever',
    '1070: dummy7@NONE    inet 10.240.0.1/32 scope global dummy7\\       valid_lft forever preferred_lft forever',
    '1071: Bad-br    inet 10.240.0.10/24 scope global Bad-br',
  ].join('\n');
  assert.deepEqual(blockHolders(out, 0), [{ iface: 'ambit-br', mesh: 'ambit' }, { iface: 'mb-br', mesh: 'mb' }, { iface: 'dummy7' }]);
  assert.deepEqual(blockHolders(out, 1), [{ iface: 'ma-br', mesh: 'ma' }]);
  assert.deepEqual(blockHolders(out, 2), []);
  assert.deepEqual(blockHolders('', 0), []);
});

test('address plan: documented ranges, short interface names', () => {
  const n = planNode('ambit', 2, 0);
  assert.deepEqual(n, { index: 2, name: 'node2', netns: 'ambit-node2', hostVeth: 'ambit-n2', ip: '10.240.0.12', podCidr: '10.244.2.0/24', podGateway: '10.244.2.1' });
  assert.ok(planNode('abcdefgh', 16, 0).hostVeth.length <= 15);
  assert.throws(() => validatePrefix('Bad_Name'), /invalid local mesh name "Bad_Name"/);
  assert.throws(() => validatePrefix('waytoolongname'), /1-8 lowercase/);
});
