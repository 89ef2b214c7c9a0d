/** An optional CPU profile of one phase of the control-plane benchmark (run-size.ts, clients.ts). */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';

/**
 * With AMBIT_BENCH_CP_PROFILE=<dir>: a CPU profile of this process over the changes alone (not
 * the load and the initial sync), written as <dir>/<name>.cpuprofile.
 */
export async function startProfile(): Promise<{ save: (name: string) => Promise<void> } | undefined> {
  const dir = process.env['AMBIT_BENCH_CP_PROFILE'];
  if (!dir) return undefined;
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  await session.post('Profiler.start');
  return {
    save: async (name) => {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
      session.disconnect();
    },
  };
}

