/** src/shared/reasons.ts must mirror bpf/include/reasons.h exactly. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CAPTURE_REASON_COUNT, CaptureReasons, captureReasonLabel } from '../../../src/shared/reasons.js';

const header = readFileSync(fileURLToPath(new URL('../../../../bpf/include/reasons.h', import.meta.url)), 'utf8');

function parseHeader(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^#define AMBIT_REASON_([A-Z0-9_]+) (\d+)$/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

test('every reason in reasons.h has the same number in reasons.ts and vice versa', () => {
  const c = parseHeader(header);
  const count = c.get('COUNT');
  c.delete('COUNT');
  assert.equal(count, CAPTURE_REASON_COUNT);
  assert.deepEqual(Object.fromEntries(c), { ...CaptureReasons });
});

test('reason numbers are unique and dense below the count', () => {
  const values = Object.values(CaptureReasons).sort((a, b) => a - b);
  assert.deepEqual(values, [...Array(CAPTURE_REASON_COUNT).keys()]);
});

test('reason labels are lowercase snake case', () => {
  assert.equal(captureReasonLabel('CONNECT_REDIRECTED'), 'connect_redirected');
});
