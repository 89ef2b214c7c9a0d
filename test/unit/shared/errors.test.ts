import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AmbitError, ErrorCodes, errorCode, errorMessage, isAmbitError } from '../../../src/shared/errors.js';

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
