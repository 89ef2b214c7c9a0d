/** The nftables fallback ruleset for one pod (pure). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildNftRuleset, buildPendingRuleset, NFT_TABLE } from '../../../src/agent/capture/nft.js';

const base = { uid: 'pod-1', netnsPath: '/var/run/netns/x', inboundListenerFd: 3 };

test('redirects outbound TCP to 15001 and inbound to 15006, skipping the bypass mark, loopback and 15008', () => {
  const r = buildNftRuleset(base);
  assert.match(r, new RegExp(`^table inet ${NFT_TABLE} \\{\\}\\ndelete table inet ${NFT_TABLE}\\n`));
  assert.match(r, /meta mark 0x539 return/);
  assert.match(r, /ip daddr 127\.0\.0\.0\/8 return/);
  assert.match(r, /\n {4}meta l4proto tcp redirect to :15001/);
  assert.match(r, /tcp dport \{ 15006, 15008 \} return/);
  assert.match(r, /\n {4}meta l4proto tcp redirect to :15006/);
});

test('IPv6 is redirected too, with or without an IPv6 listener: refused there, never direct', () => {
  for (const ipv6 of [false, true]) assert.doesNotMatch(buildNftRuleset({ ...base, ipv6 }), /nfproto ipv4/);
});

test('a pending pod rejects connection attempts both ways, except loopback and the agent\'s own sockets', () => {
  const r = buildPendingRuleset('pod-1');
  assert.match(r, new RegExp(`^table inet ${NFT_TABLE} \\{\\}\\ndelete table inet ${NFT_TABLE}\\n`), 'it replaces (and is replaced by) the capture table in one transaction');
  assert.match(r, /chain output \{\n {4}type filter hook output priority 0; policy accept;\n {4}meta mark 0x539 return\n {4}meta l4proto != tcp return\n {4}oifname "lo" return\n {4}tcp flags & \(syn \| ack\) == syn reject with tcp reset\n/);
  assert.match(r, /chain input \{\n {4}type filter hook input priority 0; policy accept;\n {4}iifname "lo" return\n {4}meta l4proto != tcp return\n {4}tcp flags & \(syn \| ack\) == syn reject with tcp reset\n/);
});

test('excluded ports, custom ports and ipv6 are honoured', () => {
  const r = buildNftRuleset({
    ...base,
    excludeInboundPorts: [9090, 15008],
    excludeOutboundPorts: [5432],
    outboundPort: 16001,
    inboundPort: 16006,
    ipv6: true,
  });
  assert.match(r, /tcp dport \{ 5432 \} return/);
  assert.match(r, /tcp dport \{ 9090, 15008, 16006 \} return/);
  assert.match(r, /\n {4}meta l4proto tcp redirect to :16001/);
  assert.doesNotMatch(r, /nfproto ipv4/);
});

test('an invalid port is refused before nft runs', () => {
  assert.throws(() => buildNftRuleset({ ...base, excludeInboundPorts: [0] }), { code: 'AMBIT_ERR_CAPTURE_FAILED' });
});

test('TCP packets conntrack finds INVALID are dropped on the way out and in, before NAT and routing', () => {
  const r = buildNftRuleset(base);
  for (const hook of ['output', 'prerouting']) {
    assert.match(r, new RegExp(`type filter hook ${hook} priority mangle; policy accept;\\n {4}meta l4proto tcp ct state invalid drop\\n`));
  }
});
