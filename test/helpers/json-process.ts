/** A child Node process whose JSON log lines (pino, one object a line) tests read as they come. */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';

export interface JsonLogProcess {
  child: ChildProcess;
  /** Every line so far, parsed; a line that is not JSON becomes `{ msg: line }`. */
  lines: Array<Record<string, unknown>>;
  exited: Promise<number | null>;
}

/**
 * Runs `script` with the pinned Node (process.execPath) in an environment of PATH plus `env` only,
 * collecting the lines of `streams` (default both).
 */
export function spawnJsonLogged(script: string, env: Record<string, string>, streams: ReadonlyArray<'stdout' | 'stderr'> = ['stdout', 'stderr']): JsonLogProcess {
  const child = spawn(process.execPath, [script], { env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Array<Record<string, unknown>> = [];
  for (const name of streams) {
    const stream = child[name] as Readable;
    let buf = '';
    stream.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          lines.push({ msg: line });
        }
      }
    });
  }
  // Unread pipes must not fill up and stall the child.
  for (const name of ['stdout', 'stderr'] as const) if (!streams.includes(name)) child[name]?.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, lines, exited };
}
