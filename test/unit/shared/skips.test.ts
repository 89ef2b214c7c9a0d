/** Skip accounting of `npm test` (scripts/skip-reporter.mjs, scripts/skip-policy.mjs). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot } from '../../helpers/local-mesh.js';

interface Skip {
  name: string;
  file: string;
  reason: string;
}
interface SkipPolicy {
  skipVerdict(skips: Skip[], o: { ci: boolean; root: boolean; cwd?: string }): { forbidden: Skip[]; banner: string };
}

test('the skip reporter writes one line per skipped test with its reason', () => {
  const r = spawnSync(process.execPath, ['--test', `--test-reporter=${join(repoRoot, 'scripts/skip-reporter.mjs')}`, '--test-reporter-destination=stdout', join(repoRoot, 'test/fixtures/skips/skipped.mjs')], {
    encoding: 'utf8',
    env: { ...process.env, NODE_TEST_CONTEXT: undefined },
  });
  const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Skip);
  assert.deepEqual(
    lines.map((l) => [l.name, l.reason]),
    [
      ['needs root', 'requires root (network namespaces)'],
      ['needs a tool', 'requires the nft binary'],
    ],
  );
  assert.ok(lines.every((l) => l.file.endsWith('skipped.mjs')));
});

test('skips fail the run with CI set (all) or as root (root-dependent ones), and are always listed', async () => {
  const { skipVerdict } = (await import(pathToFileURL(join(repoRoot, 'scripts/skip-policy.mjs')).href)) as SkipPolicy;
  const skips: Skip[] = [
    { name: 'a', file: '/r/dist/test/netns/a.test.js', reason: 'requires root (network namespaces)' },
    { name: 'b', file: '/r/dist/test/bpf/b.test.js', reason: 'requires the nft binary' },
  ];
  assert.deepEqual(skipVerdict([], { ci: true, root: true }), { forbidden: [], banner: '' });
  assert.equal(skipVerdict(skips, { ci: false, root: false }).forbidden.length, 0);
  assert.deepEqual(skipVerdict(skips, { ci: false, root: true }).forbidden.map((s) => s.name), ['a']);
  assert.deepEqual(skipVerdict(skips, { ci: true, root: false }).forbidden.map((s) => s.name), ['a', 'b']);
  const { banner } = skipVerdict(skips, { ci: false, root: false, cwd: '/r' });
  assert.match(banner, /2 TEST\(S\) SKIPPED/);
  assert.match(banner, /dist\/test\/netns\/a\.test\.js › a: requires root \(network namespaces\)/);
  assert.match(skipVerdict(skips, { ci: true, root: false }).banner, /FAILING THE RUN: 2 skip\(s\) not allowed when CI is set/);
});
