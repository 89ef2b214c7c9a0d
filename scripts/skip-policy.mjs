// Which skipped tests a run may accept, and the banner that lists them (used by run-tests.mjs).
import { relative } from 'node:path';

/** Root-dependent skips say so: their reason starts with "requires root" (test/helpers/local-mesh.ts requiresRoot). */
export function needsRoot(skip) {
  return /^requires root/i.test(skip.reason);
}

/**
 * Skips that fail the run: every skip when CI is set, the root-dependent ones when running as
 * root. Returns them and the banner text (empty when nothing was skipped).
 */
export function skipVerdict(skips, { ci, root, cwd = process.cwd() }) {
  const forbidden = skips.filter((s) => ci || (root && needsRoot(s)));
  if (skips.length === 0) return { forbidden, banner: '' };
  const bar = '='.repeat(100);
  const lines = skips.map((s) => `  - ${relative(cwd, s.file) || '?'} › ${s.name}: ${s.reason || '(no reason given)'}`);
  const tail =
    forbidden.length > 0
      ? `  FAILING THE RUN: ${forbidden.length} skip(s) not allowed ${ci ? 'when CI is set' : 'when running as root'}.`
      : '  Run as root on a kernel with BPF to run them; with CI set, any skip fails the run.';
  return { forbidden, banner: `\n${bar}\n  ${skips.length} TEST(S) SKIPPED: this run did not test what they cover.\n${lines.join('\n')}\n${tail}\n${bar}` };
}
