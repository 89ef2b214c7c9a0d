import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressBytes, PrefixTable } from '../../../src/shared/state/prefix-table.js';

test('addressBytes: IPv4, IPv6 (compressed, embedded IPv4, v4-mapped), nothing else', () => {
  assert.deepEqual([...addressBytes('192.0.2.1')!], [192, 0, 2, 1]);
  assert.deepEqual([...addressBytes('::ffff:192.0.2.1')!], [192, 0, 2, 1], 'v4-mapped compares as IPv4');
  assert.deepEqual([...addressBytes('2001:db8::1')!], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual([...addressBytes('::')!], new Array(16).fill(0));
  assert.deepEqual([...addressBytes('64:ff9b::192.0.2.1')!].slice(12), [192, 0, 2, 1]);
  assert.deepEqual([...addressBytes('fe80::1:2:3:4:5:6')!].slice(4), [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6]);
  assert.equal(addressBytes('example.com'), undefined);
  assert.equal(addressBytes('192.0.2.0/24'), undefined);
});

test('PrefixTable: the most specific range holding the address on the port wins; families and ports are apart', () => {
  const t = new PrefixTable<string>();
  assert.equal(t.lookup('192.0.2.1', 80), undefined, 'an empty table finds nothing');
  assert.ok(t.add('192.0.0.0/16', 80, 'wide'));
  assert.ok(t.add('192.0.2.0/24', 80, 'narrow'));
  assert.ok(t.add('192.0.2.128/25', 443, 'tls-half'));
  assert.ok(t.add('0.0.0.0/0', 5432, 'any-pg'));
  assert.ok(t.add('2001:db8::/64', 80, 'v6'));
  assert.ok(t.add('2001:db8::/32', 80, 'v6-wide'));
  assert.ok(t.add('198.51.100.7', 80, 'one'), 'a bare address is a /32');
  assert.equal(t.add('192.0.2.0/33', 80, 'x'), false);
  assert.equal(t.add('192.0.2.0/x', 80, 'x'), false);
  assert.equal(t.add('nope/8', 80, 'x'), false);
  assert.ok(t.add('192.0.2.0/24', 80, 'second'), 'a repeated range keeps its first value');
  assert.equal(t.lookup('192.0.2.7', 80), 'narrow');
  assert.equal(t.lookup('::ffff:192.0.2.7', 80), 'narrow');
  assert.equal(t.lookup('192.0.3.7', 80), 'wide');
  assert.equal(t.lookup('192.1.0.1', 80), undefined);
  assert.equal(t.lookup('192.0.2.7', 443), undefined, 'the /25 holds .128 to .255 only');
  assert.equal(t.lookup('192.0.2.200', 443), 'tls-half');
  assert.equal(t.lookup('203.0.113.9', 5432), 'any-pg');
  assert.equal(t.lookup('2001:db8::5', 80), 'v6');
  assert.equal(t.lookup('2001:db8:1::5', 80), 'v6-wide');
  assert.equal(t.lookup('2001:db9::5', 80), undefined);
  assert.equal(t.lookup('198.51.100.7', 80), 'one');
  assert.equal(t.lookup('198.51.100.8', 80), undefined);
  assert.equal(t.lookup('not-an-ip', 80), undefined);
});
