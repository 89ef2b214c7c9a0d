import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AmbitError, ErrorCodes, errorCode, errorMessage, isAmbitError } from '../../../src/shared/errors.js';
import { createLogger, serializeError } from '../../../src/shared/log.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

test('error catalogue: keys equal codes, codes are unique and well-formed', () => {
  const values = Object.values(ErrorCodes);
  assert.equal(new Set(values).size, values.length);
  for (const [k, v] of Object.entries(ErrorCodes)) {
    assert.equal(k, v);
    assert.match(v, /^AMBIT_ERR_[A-Z0-9]+(_[A-Z0-9]+)+$/);
  }
});

test('every error code is documented in README.md under "Error codes", and nothing else is', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('## Error codes');
  assert.ok(start >= 0, 'README.md has an "## Error codes" section');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const documented = new Set(section.match(/AMBIT_ERR_[A-Z0-9_]+/g) ?? []);
  for (const code of Object.values(ErrorCodes)) assert.ok(documented.has(code), `${code} is documented`);
  for (const code of documented) assert.ok(code in ErrorCodes, `${code} in README exists in the catalogue`);
});

test('AmbitError keeps code, cause and details; helpers read unknown throwables', () => {
  const cause = Object.assign(new Error('boom'), { code: 'ECONNRESET' });
  const e = new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', 'tunnel connect to 10.0.0.1:15008 failed', { cause, details: { addr: '10.0.0.1' } });
  assert.equal(e.code, 'AMBIT_ERR_TUNNEL_CONNECT');
  assert.equal(e.cause, cause);
  assert.deepEqual(e.details, { addr: '10.0.0.1' });
  assert.equal(isAmbitError(e, 'AMBIT_ERR_TUNNEL_CONNECT'), true);
  assert.equal(isAmbitError(e, 'AMBIT_ERR_NO_ROUTE'), false);
  assert.equal(errorCode(cause), 'ECONNRESET');
  assert.equal(errorCode('text'), undefined);
  assert.equal(errorMessage({ a: 1 }), '{"a":1}');
  assert.equal(errorMessage('plain'), 'plain');
});

test('logged errors keep their code and cause under err; only uncoded errors carry a stack', () => {
  const cause = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:15008'), { code: 'ECONNREFUSED' });
  const wrapped = new AmbitError('AMBIT_ERR_TUNNEL_CONNECT', 'tunnel connect to 10.0.0.7:15008 failed', { cause, details: { status: 503 } });
  assert.deepEqual(serializeError(wrapped), {
    type: 'AmbitError',
    message: 'tunnel connect to 10.0.0.7:15008 failed',
    code: 'AMBIT_ERR_TUNNEL_CONNECT',
    cause: { type: 'Error', message: 'connect ECONNREFUSED 10.0.0.7:15008', code: 'ECONNREFUSED' },
  });
  const bug = serializeError(new TypeError('x is undefined'));
  assert.equal(bug.type, 'TypeError');
  assert.match(bug.stack ?? '', /TypeError: x is undefined/);
  assert.deepEqual(serializeError('plain text'), { type: 'string', message: 'plain text' });
  const loop = new Error('a', { cause: undefined }) as Error & { cause?: unknown };
  loop.cause = loop;
  let depth = 0;
  for (let e: { cause?: unknown } | undefined = serializeError(loop); e; e = e.cause as typeof e) depth++;
  assert.equal(depth, 5, 'a cycle of causes stops at the depth limit');

  const lines: string[] = [];
  const log = createLogger({ destination: { write: (l: string) => void lines.push(l) } });
  log.warn({ err: wrapped }, 'tunnel failed');
  const line = JSON.parse(lines[0]!) as { err: { code: string; cause: { code: string } } };
  assert.equal(line.err.code, 'AMBIT_ERR_TUNNEL_CONNECT');
  assert.equal(line.err.cause.code, 'ECONNREFUSED');
});
