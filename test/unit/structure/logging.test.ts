/**
 * Logged errors keep their code and cause: a pino logger gets the error itself under `err` (its
 * serializer, shared/log.ts, writes type, message, code and cause chain), never its message alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

/** Files allowed the message form, and why. */
const EXEMPT: Record<string, string> = {
  'src/cni/plugin.ts': 'the CNI plugin logs through its own JSON writer (src/cni/log.ts), not pino',
};

function exempt(file: string): boolean {
  return Object.keys(EXEMPT).some((e) => (e.endsWith('/') ? file.startsWith(e) : file === e));
}

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir)).sort()) {
    const rel = join(dir, name);
    if (statSync(join(root, rel)).isDirectory()) out.push(...listTs(rel));
    else if (name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** `err: errorMessage(x)` or `err: String(x)` in a log call's fields. */
export const MESSAGE_ONLY = /\berr:\s*(errorMessage|String)\(/;

test('logging: the pattern is recognised (so the tree check can fail)', () => {
  assert.ok(MESSAGE_ONLY.test("log.warn({ err: errorMessage(e) }, 'x')"));
  assert.ok(MESSAGE_ONLY.test('log.warn({ id, err: String(e) }, "x")'));
  assert.ok(!MESSAGE_ONLY.test("log.warn({ err: e }, 'x')"));
});

test('logging: every logged error is passed whole under err', () => {
  const offenders = listTs('src')
    .filter((f) => !exempt(f))
    .flatMap((f) => readFileSync(join(root, f), 'utf8').split('\n').map((line, i) => [f, i + 1, line] as const))
    .filter(([, , line]) => MESSAGE_ONLY.test(line))
    .map(([f, n, line]) => `${f}:${n}: ${line.trim()}`);
  assert.deepEqual(offenders, []);
});
