/** Agent worker threads: the default count from the CPU limit, AMBIT_WORKERS, and the main/worker message mechanism. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { defaultWorkerCount } from '../../../src/agent/workers/pool.js';
import { cpuQuota } from '../../../src/shared/cpu-limit.js';
import { Rpc } from '../../../src/agent/workers/rpc.js';
import { loadConfig } from '../../../src/agent/config.js';

const minimal = {
  AMBIT_NODE_NAME: 'node-1',
  AMBIT_CONTROLLER_ADDR: 'ambit-controller.ambit-system:15012',
  AMBIT_CA_ROOT_FILE: '/var/run/ambit/root-cert.pem',
  AMBIT_TOKEN_FILE: '/var/run/ambit/token',
};

test('workers: the cgroup cpu.max quota rounds up to whole CPUs; "max" or a malformed line is no limit', () => {
  assert.equal(cpuQuota('max 100000\n'), undefined);
  assert.equal(cpuQuota('150000 100000\n'), 2);
  assert.equal(cpuQuota('50000 100000'), 1);
  assert.equal(cpuQuota('400000 100000'), 4);
  assert.equal(cpuQuota('garbage'), undefined);
  assert.equal(cpuQuota('100000 0'), undefined);
});

test('workers: the default count is the quota, capped by the CPUs available, at least 1', () => {
  const cpus = availableParallelism();
  assert.equal(defaultWorkerCount('max 100000'), cpus);
  assert.equal(defaultWorkerCount('100000 100000'), 1);
  assert.equal(defaultWorkerCount(`${(cpus + 4) * 100000} 100000`), cpus);
  assert.equal(defaultWorkerCount(undefined), cpus);
});

test('workers: AMBIT_WORKERS is a whole number from 1 to 256; unset takes the default', () => {
  assert.equal(loadConfig({ ...minimal, AMBIT_WORKERS: '3' }).workers, 3);
  assert.equal(loadConfig(minimal).workers, defaultWorkerCount());
  for (const bad of ['0', '257', '1.5', 'two', '-1']) {
    assert.throws(
      () => loadConfig({ ...minimal, AMBIT_WORKERS: bad }),
      (e: Error & { code?: string }) => e.code === 'AMBIT_ERR_CONFIG_INVALID' && e.message.includes('AMBIT_WORKERS') && e.message.includes(bad),
      `AMBIT_WORKERS=${bad}`,
    );
  }
});

test('workers rpc: replies in order, errors keep their message and code, notes arrive before later requests, close rejects what waits', async () => {
  const { port1, port2 } = new MessageChannel();
  const main = new Rpc(port1);
  const worker = new Rpc(port2);
  const seen: string[] = [];
  worker.handle('config', (v: string) => void seen.push(`config ${v}`));
  worker.handle('enroll', (uid: string) => {
    seen.push(`enroll ${uid}`);
    return { uid, fd: 7 };
  });
  worker.handle('fail', () => Promise.reject(Object.assign(new Error('no netns'), { code: 'AMBIT_ERR_NETNS_ENTER' })));
  worker.handle('hang', () => new Promise(() => undefined));
  main.note('config', 'v1');
  assert.deepEqual(await main.call('enroll', 'pod-a'), { uid: 'pod-a', fd: 7 });
  assert.deepEqual(seen, ['config v1', 'enroll pod-a'], 'the note was handled before the request that followed it');
  await assert.rejects(main.call('fail'), { message: 'no netns', code: 'AMBIT_ERR_NETNS_ENTER' });
  await assert.rejects(main.call('nothing'), /no handler for nothing/);
  const waiting = main.call('hang');
  main.close('worker gone');
  await assert.rejects(waiting, /worker gone/);
  await assert.rejects(main.call('enroll', 'pod-b'), /worker gone/);
  worker.close('done');
  port1.close();
});
