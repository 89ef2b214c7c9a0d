/** readJsonLines and readAnswerText: the response readers Ambit's Kubernetes clients share (agent, controller, local mode). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { readAnswerText, readJsonLines } from '../../../src/shared/json-http.js';

function stream(): PassThrough & IncomingMessage {
  return new PassThrough() as PassThrough & IncomingMessage;
}

test('values split across chunks arrive whole, in order; blank and non-JSON lines are skipped', async () => {
  const m = stream();
  const got: unknown[] = [];
  readJsonLines(m, (v) => got.push(v), { active: () => true, maxLineBytes: 1024 });
  m.write('{"type":"ADDED","n":1}\n{"type":"MOD');
  m.write('IFIED","n":2}\n\n  \nnot json\n{"type":"DELETED","n":3}\n{"partial":');
  m.end();
  await once(m, 'end');
  assert.deepEqual(got, [
    { type: 'ADDED', n: 1 },
    { type: 'MODIFIED', n: 2 },
    { type: 'DELETED', n: 3 },
  ]);
});

test('nothing more is handed on once the reader is no longer active', async () => {
  const m = stream();
  const got: unknown[] = [];
  readJsonLines(m, (v) => got.push(v), { active: () => got.length < 2, maxLineBytes: 1024 });
  m.end('{"n":1}\n{"n":2}\n{"n":3}\n');
  await once(m, 'end');
  assert.deepEqual(got, [{ n: 1 }, { n: 2 }]);
});

test('a line longer than the limit ends the response with an error', async () => {
  const m = stream();
  const got: unknown[] = [];
  readJsonLines(m, (v) => got.push(v), { active: () => true, maxLineBytes: 64 });
  const failed = once(m, 'error');
  m.write('{"n":1}\n' + 'x'.repeat(100));
  const [err] = (await failed) as [Error];
  assert.match(err.message, /longer than 64 bytes/);
  assert.deepEqual(got, [{ n: 1 }]);
  assert.equal(m.destroyed, true);
});

test('readAnswerText: the whole answer within the limit; past it the answer is destroyed and rejects', async () => {
  const ok = stream();
  const text = readAnswerText(ok, 16);
  ok.write('{"a":');
  ok.end('1}');
  assert.equal(await text, '{"a":1}');
  const big = stream();
  const refused = readAnswerText(big, 16);
  big.write('x'.repeat(10));
  big.write('x'.repeat(10));
  await assert.rejects(refused, /answer larger than 16 bytes/);
  assert.equal(big.destroyed, true);
});
