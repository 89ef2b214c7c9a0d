/** File-descriptor accounting for readiness: /proc parsing and the exhaustion threshold. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, closeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fdExhaustion, readFdUsage, FD_RESERVE } from '../../../src/agent/fd-usage.js';
import { Agent } from '../../../src/agent/agent.js';
import { createLogger } from '../../../src/shared/log.js';
import { createRegistry } from '../../../src/shared/metrics.js';

test('readFdUsage counts this process\'s open descriptors and reads its soft limit', () => {
  const before = readFdUsage()!;
  const fds = Array.from({ length: 10 }, () => openSync('/dev/null', 'r'));
  const during = readFdUsage()!;
  for (const fd of fds) closeSync(fd);
  assert.equal(during.open - before.open, 10);
  const shell = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim());
  // The child inherits our soft limit.
  assert.equal(before.limit, Number.isNaN(shell) ? Number.POSITIVE_INFINITY : shell);
  assert.equal(readFdUsage('/proc/does-not-exist'), undefined);
});

test('fdExhaustion: unready within max(64, 5% of the limit) of the limit', () => {
  const cases: Array<[number, number, boolean]> = [
    [100, 1024, false],
    [1024 - FD_RESERVE - 1, 1024, false],
    [1024 - FD_RESERVE, 1024, true],
    [1024, 1024, true],
    [18_999, 20_000, false],
    [19_000, 20_000, true],
    [10, Number.POSITIVE_INFINITY, false],
  ];
  for (const [open, limit, exhausted] of cases) assert.equal(fdExhaustion({ open, limit }) !== undefined, exhausted, `${open} of ${limit}`);
  assert.equal(fdExhaustion(undefined), undefined);
  assert.equal(fdExhaustion({ open: 19_990, limit: 20_000 }), 'out of file descriptors: 19990 of 20000 open');
});

test('agent readiness says unready, with the reason, when out of file descriptors', async () => {
  let usage = { open: 100, limit: 20_000 };
  const agent = new Agent({
    nodeName: 'node1',
    log: createLogger({ level: 'silent' }),
    registry: createRegistry(),
    certs: { getCertificate: () => Promise.reject(new Error('unused')) },
    podSockets: () => {
      throw new Error('unused');
    },
    originalDestination: () => ({ address: '127.0.0.1', port: 1 }),
    fdUsage: () => usage,
  });
  await agent.applyConfig({ workloads: new Map(), services: new Map(), authorizations: new Map() });
  assert.deepEqual(agent.readiness(), { ready: true, reasons: [] });
  usage = { open: 19_998, limit: 20_000 };
  assert.deepEqual(agent.readiness(), { ready: false, reasons: ['out of file descriptors: 19998 of 20000 open'] });
  await agent.close(0);
});
