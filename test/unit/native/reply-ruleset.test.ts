/** The in-pod reply routing ruleset for transparent dials (pure). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildReplyRuleset, REPLY_MARK, REPLY_NFT_TABLE } from '../../../src/agent/capture/reply-route.js';

test('the reply table is replaced atomically and runs at mangle priority as a route chain', () => {
  const r = buildReplyRuleset();
  assert.match(r, new RegExp(`^table inet ${REPLY_NFT_TABLE} \\{\\}\\ndelete table inet ${REPLY_NFT_TABLE}\\n`));
  assert.match(r, /type route hook output priority mangle;/);
  assert.equal(REPLY_MARK, 0x111);
});

test("only the agent's new connections to local addresses get the ct mark, and the agent's own packets keep 0x539", () => {
  const lines = buildReplyRuleset().split('\n').map((l) => l.trim());
  const ctMark = lines.findIndex((l) => l.includes('ct mark set'));
  const bypass = lines.indexOf('meta mark 0x539 return');
  const mark = lines.findIndex((l) => l.includes('meta mark set'));
  assert.match(lines[ctMark]!, /^meta mark 0x539 ct state new fib daddr type local ct mark set ct mark and 0xfffff000 or 0x111$/);
  assert.ok(bypass > ctMark && mark > bypass, 'the 0x539 return comes before any packet mark is set');
  assert.match(lines[mark]!, /^ct mark and 0xfff == 0x111 meta mark set meta mark and 0xfffff000 or 0x111$/);
});

test('TCP packets conntrack finds INVALID are dropped on the way out and in, before NAT and routing', () => {
  const r = buildReplyRuleset();
  for (const hook of ['output', 'prerouting']) {
    assert.match(r, new RegExp(`type filter hook ${hook} priority mangle; policy accept;\\n {4}meta l4proto tcp ct state invalid drop\\n`));
  }
});
