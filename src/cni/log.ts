/**
 * The plugin's log: one JSON line per event (pino's field names: level, time, msg) on stderr, and
 * appended to a file when configured, since runtimes show a plugin's stderr only on failure.
 * Never stdout: stdout carries the CNI result. Synchronous, because the process exits right after
 * its answer. Not pino: its loading cost is paid on every pod start, for a handful of lines.
 */
import { appendFileSync, renameSync, statSync } from 'node:fs';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50 };

/** A log file is moved to `<file>.1` past this size, so it stays bounded. */
export const LOG_FILE_MAX_BYTES = 1024 * 1024;

export interface PluginLog {
  debug(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

export interface PluginLogOptions {
  level: LogLevel;
  file?: string;
  /** Where lines go besides the file; stderr by default. */
  write?: (line: string) => void;
  /** Fields on every line (command, container id, pod). */
  bindings?: Record<string, unknown>;
}

export function createPluginLog(opts: PluginLogOptions): PluginLog {
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const emit = (level: LogLevel, fields: Record<string, unknown>, msg: string): void => {
    if (RANK[level] < RANK[opts.level]) return;
    const line = JSON.stringify({ level: RANK[level], time: new Date().toISOString(), pid: process.pid, name: 'ambit-cni', ...opts.bindings, ...fields, msg }) + '\n';
    write(line);
    if (opts.file) appendToFile(opts.file, line);
  };
  return {
    debug: (f, m) => emit('debug', f, m),
    info: (f, m) => emit('info', f, m),
    warn: (f, m) => emit('warn', f, m),
    error: (f, m) => emit('error', f, m),
  };
}

function appendToFile(file: string, line: string): void {
  try {
    if ((statSync(file, { throwIfNoEntry: false })?.size ?? 0) > LOG_FILE_MAX_BYTES) renameSync(file, `${file}.1`);
    appendFileSync(file, line, { mode: 0o600 });
  } catch {
    // A log file that cannot be written must not fail the pod's start; stderr still has the line.
  }
}
