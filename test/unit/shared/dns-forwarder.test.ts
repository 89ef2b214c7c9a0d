/** The DNS proxy's upstream list: resolv.conf nameservers, and the fallback when there are none. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseResolvConf, DnsForwarder } from '../../../src/shared/dns/forwarder.js';
import { dnsUpstreams } from '../../../src/agent/dns/netns-proxy.js';
import { silentLogger } from '../../../src/shared/log.js';

test('resolv.conf: nameserver lines in order, IP literals only, zone ids dropped', () => {
  const text = ['# comment', 'search demo.svc.cluster.local svc.cluster.local', 'nameserver 10.96.0.10', '  nameserver   fd00::a  ', 'nameserver fe80::1%eth0', 'nameserver not-an-ip', 'options ndots:5'].join('\n');
  assert.deepEqual(parseResolvConf(text), [
    { host: '10.96.0.10', port: 53 },
    { host: 'fd00::a', port: 53 },
    { host: 'fe80::1', port: 53 },
  ]);
  assert.deepEqual(parseResolvConf(''), []);
});

test('upstreams: given ones win; else the file; an unreadable file gives none (forwards then fail with a clear error)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-dns-'));
  try {
    const file = join(dir, 'resolv.conf');
    writeFileSync(file, 'nameserver 10.0.0.2\n');
    const log = silentLogger();
    assert.deepEqual(dnsUpstreams({ log, upstreams: [{ host: '127.0.0.9', port: 5353 }], resolvConf: file }), [{ host: '127.0.0.9', port: 5353 }]);
    assert.deepEqual(dnsUpstreams({ log, resolvConf: file }), [{ host: '10.0.0.2', port: 53 }]);
    assert.deepEqual(dnsUpstreams({ log, resolvConf: join(dir, 'missing') }), []);
    await assert.rejects(new DnsForwarder({ servers: [], timeoutMs: 100 }).forward(Buffer.alloc(12), 'udp'), { code: 'AMBIT_ERR_DNS_UPSTREAM', message: /no upstream DNS resolver is configured/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
