// Runs the whole suite with Node's built-in test runner on the compiled tests, so the run ends
// with its pass/fail summary. Called by `npm test` (which puts the pinned Node 24 first on PATH).
// Skips are accounted for: a skipped test is listed in a banner at the end, and when CI is set
// (every skip) or when running as root (skips that need root) the run fails.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { skipVerdict } from './skip-policy.mjs';

function findTests(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const build = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', '.'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const filter = process.argv.slice(2);
let files = findTests('dist/test');
if (filter.length > 0) files = files.filter((f) => filter.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
// Test meshes use address block 1 (`ambit local up --net`), so a mesh the user left running on the
// default block 0 (the README demo keeps its mesh up) neither blocks the tests nor is touched.
const skipDir = mkdtempSync(join(tmpdir(), 'ambit-test-skips-'));
const skipLog = join(skipDir, 'skips.jsonl');
const r = spawnSync(
  process.execPath,
  [
    '--test',
    '--test-concurrency=2',
    '--test-timeout=300000',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=./scripts/skip-reporter.mjs',
    `--test-reporter-destination=${skipLog}`,
    ...files,
  ],
  { stdio: 'inherit', env: { ...process.env, AMBIT_TEST: '1', AMBIT_LOCAL_NET: process.env.AMBIT_LOCAL_NET ?? '1' } },
);
const skips = existsSync(skipLog)
  ? readFileSync(skipLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
  : [];
rmSync(skipDir, { recursive: true, force: true });
const root = typeof process.getuid === 'function' && process.getuid() === 0;
const { forbidden, banner } = skipVerdict(skips, { ci: Boolean(process.env.CI), root });
if (banner) console.error(banner);
process.exit(forbidden.length > 0 ? 1 : (r.status ?? 1));
