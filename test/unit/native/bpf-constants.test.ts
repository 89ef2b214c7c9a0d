/** The fixed values bpf/include/config.h shares with the TypeScript side agree (no build step links them). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BYPASS_MARK, DIAL_PRIORITY } from '../../../native/netns.js';
import { MAX_WORKERS } from '../../../src/agent/config.js';

const configH = readFileSync(fileURLToPath(new URL('../../../../bpf/include/config.h', import.meta.url)), 'utf8');

function define(name: string): number {
  const m = new RegExp(`^#define ${name} (0x[0-9a-fA-F]+|\\d+)`, 'm').exec(configH);
  assert.ok(m, `config.h defines ${name}`);
  return Number(m[1]);
}

test('config.h and the TypeScript side use the same mark, dial priority and worker limit', () => {
  assert.equal(define('AMBIT_BYPASS_MARK'), BYPASS_MARK);
  assert.equal(define('AMBIT_DIAL_PRIORITY'), DIAL_PRIORITY);
  assert.equal(define('AMBIT_MAX_WORKERS'), MAX_WORKERS);
});
