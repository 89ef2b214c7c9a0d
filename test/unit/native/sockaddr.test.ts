/** Address encodings shared by native/netns.ts and the BPF map codecs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bytes16ToIp,
  decodeSockaddr,
  encodeSockaddr,
  formatIPv6,
  ipToBytes16,
  isV4Mapped,
} from '../../../native/sockaddr.js';

test('sockaddr_in is family LE, port BE, address in network order, 16 bytes', () => {
  const sa = encodeSockaddr('10.1.2.3', 8080);
  assert.equal(sa.toString('hex'), '02001f900a0102030000000000000000');
  assert.deepEqual(decodeSockaddr(sa), { address: '10.1.2.3', port: 8080, family: 'IPv4' });
});

test('sockaddr_in6 round-trips and is 28 bytes', () => {
  for (const address of ['::1', 'fd00:1::2', '2001:db8::8:800:200c:417a', '::ffff:10.0.0.1', '::', 'fe80::1:0:0:1']) {
    const sa = encodeSockaddr(address, 443);
    assert.equal(sa.length, 28);
    assert.deepEqual(decodeSockaddr(sa), { address, port: 443, family: 'IPv6' });
  }
});

test('IPv4 goes into maps v4-mapped and comes back as IPv4', () => {
  const b = ipToBytes16('192.168.7.9');
  assert.equal(b.toString('hex'), '00000000000000000000ffffc0a80709');
  assert.ok(isV4Mapped(b));
  assert.deepEqual(bytes16ToIp(b), { address: '192.168.7.9', family: 'IPv4' });
  assert.deepEqual(bytes16ToIp(ipToBytes16('fd00::5')), { address: 'fd00::5', family: 'IPv6' });
});

test('IPv6 text follows RFC 5952: longest zero run compressed, single zeros kept', () => {
  assert.equal(formatIPv6(ipToBytes16('2001:db8:0:0:1:0:0:1')), '2001:db8::1:0:0:1');
  assert.equal(formatIPv6(ipToBytes16('2001:db8:0:1:1:1:1:1')), '2001:db8:0:1:1:1:1:1');
  assert.equal(formatIPv6(ipToBytes16('1:0:0:0:0:0:0:0')), '1::');
});

test('invalid addresses and ports are refused with a clear error', () => {
  assert.throws(() => encodeSockaddr('example.com', 80), { code: 'AMBIT_ERR_NATIVE_CALL', message: /not a valid IPv4 or IPv6/ });
  assert.throws(() => encodeSockaddr('10.0.0.1', 70000), { code: 'AMBIT_ERR_NATIVE_CALL', message: /out of range/ });
  assert.throws(() => decodeSockaddr(Buffer.alloc(16)), { code: 'AMBIT_ERR_NATIVE_CALL' });
});
