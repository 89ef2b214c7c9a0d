/**
 * Agent per-connection micro-benchmark on loopback (no mesh, no root): what one new connection
 * costs the agent's data path, both ends of it in one process (test/helpers/loopback-net.ts,
 * 127.0.0.0/8): app socket → outbound (15001) → pooled HBONE tunnel (mTLS, HTTP/2) → inbound
 * (15008: policy, dial) → echo app, a 1-byte exchange, close; `--parallel` such loops at once.
 *   node dist/bench/agent-micro.js [--connections 3000] [--parallel 4] [--rounds 3] [--warmup 300]
 * Prints one JSON line per round (connections/s and CPU µs per connection: this process's user +
 * system time, which includes the app and echo sockets' share, so compare runs of this tool with
 * each other, not with the L4 section) and a summary line with the medians. Logging is at warn
 * (AMBIT_TEST_LOG_LEVEL=info adds the access log, parsed by the test sink). Profile it with
 * `node --cpu-prof --cpu-prof-dir=DIR dist/bench/agent-micro.js`. Bounded: every round stops after
 * its connections or 60 s. Each round (and the warm-up) builds its own loopback mesh on addresses
 * of its own (127.91-190.200-249.x), so the TIME_WAIT sockets of one round do not slow the next.
 */
import * as net from 'node:net';
import { parseArgs } from 'node:util';
import { createLoopbackMesh, testWorkload } from '../test/helpers/loopback-net.js';
import { startEchoServer } from '../test/helpers/echo.js';

interface Round {
  connections: number;
  failed: number;
  seconds: number;
  perSec: number;
  cpuUsPerConnection: number;
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      connections: { type: 'string', default: '3000' },
      parallel: { type: 'string', default: '4' },
      rounds: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '300' },
    },
  });
  const count = Number(values.connections);
  const parallel = Number(values.parallel);
  const rounds = Number(values.rounds);
  const warmup = Number(values.warmup);
  for (const [k, v] of Object.entries({ count, parallel, rounds, warmup })) if (!Number.isInteger(v) || v < (k === 'warmup' ? 0 : 1)) throw new Error(`--${k}: a whole number, got ${String(v)}`);

  // The loopback mesh logs into a test sink that parses every line; at warn the per-connection
  // access lines are not built, so this measures the data path without the access log.
  process.env['AMBIT_TEST_LOG_LEVEL'] ??= 'warn';
  // Each round gets a fresh pair of pod addresses: the source-preserving dial binds the client's
  // address with port 0, and the TIME_WAIT sockets an earlier round left on an address make the
  // kernel's port search slower (round after round the rate halved on fixed addresses).
  const round = async (r: number, n: number): Promise<Round> => {
    const mesh = await createLoopbackMesh();
    const base = `127.${91 + (r % 100)}.${200 + (Math.floor(r / 100) % 50)}.`;
    const echo = await startEchoServer(base + '2');
    try {
      const wa = testWorkload({ name: 'client', namespace: 'frontend', ip: base + '1', serviceAccount: 'fe' });
      const wb = testWorkload({ name: 'server', namespace: 'backend', ip: base + '2', serviceAccount: 'be' });
      mesh.setConfig({ workloads: [wa, wb] });
      const a = await mesh.addPod(wa);
      await mesh.addPod(wb);
      const dst = { address: wb.addresses[0]!, port: echo.port };
      const one = (): Promise<boolean> =>
        new Promise((resolve) => {
          const s: net.Socket = mesh.appConnect(a, dst);
          const timer = setTimeout(() => s.destroy(new Error('no echo within 10 s')), 10_000);
          s.once('connect', () => s.write('x'));
          s.once('data', () => s.end());
          s.once('error', () => undefined);
          s.once('close', (hadError) => {
            clearTimeout(timer);
            resolve(!hadError);
          });
          s.resume();
        });
      // A few connections first: the pooled tunnel and the JIT warm up outside the count.
      for (let i = 0; i < Math.min(warmup, 50); i++) await one();
      let started = 0;
      let failed = 0;
      const deadline = Date.now() + 60_000;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: parallel }, async () => {
          while (started < n && Date.now() < deadline) {
            started++;
            if (!(await one())) failed++;
          }
        }),
      );
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      return { connections: started, failed, seconds, perSec: started / seconds, cpuUsPerConnection: (cpu.user + cpu.system) / started };
    } finally {
      await mesh.close();
      await echo.close();
    }
  };
  if (warmup > 0) await round(0, warmup);
  const results: Round[] = [];
  for (let r = 1; r <= rounds; r++) {
    const res = await round(r, count);
    results.push(res);
    process.stdout.write(JSON.stringify({ round: r, ...res }) + '\n');
  }
  process.stdout.write(
    JSON.stringify({ summary: true, parallel, connections: count, perSec: median(results.map((x) => x.perSec)), cpuUsPerConnection: median(results.map((x) => x.cpuUsPerConnection)), failed: results.reduce((n, x) => n + x.failed, 0) }) + '\n',
  );
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`agent-micro: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
