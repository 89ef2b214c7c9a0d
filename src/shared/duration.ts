/** Durations as config writes them ("1.5s", "250ms", "24h", "1h30m") parsed once into milliseconds. */
import { AmbitError } from './errors.js';

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;

/** Returns milliseconds, or undefined when `text` is not a duration. Go/Istio syntax; no sign. */
export function tryParseDuration(text: string): number | undefined {
  if (typeof text !== 'string' || text.length === 0) return undefined;
  if (text === '0') return 0;
  PART.lastIndex = 0;
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    PART.lastIndex = pos;
    const m = PART.exec(text);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = PART.lastIndex;
  }
  return total;
}

/** Like tryParseDuration but throws AMBIT_ERR_DURATION_INVALID naming `where`. */
export function parseDuration(text: string, where: string): number {
  const ms = tryParseDuration(text);
  if (ms === undefined) {
    throw new AmbitError(
      'AMBIT_ERR_DURATION_INVALID',
      `${where}: invalid duration ${JSON.stringify(text)}; use a number with a unit such as "250ms", "1.5s", "24h"`,
    );
  }
  return ms;
}

/** Formats milliseconds back into the shortest duration string that parses to the same value. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
