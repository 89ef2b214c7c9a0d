#!/usr/bin/env node
// Entry point of the `ambit` command. Runs on the Node 24 the project pins (node_modules/.bin/node);
// when started by an older Node it re-executes itself there.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  const pinned = join(here, '..', 'node_modules', '.bin', 'node');
  if (!existsSync(pinned)) {
    process.stderr.write('ambit: Node 24 is missing; run scripts/setup.sh first\n');
    process.exit(1);
  }
  const r = spawnSync(pinned, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
const entry = join(here, '..', 'dist', 'src', 'cli', 'main.js');
if (!existsSync(entry)) {
  process.stderr.write('ambit: not built yet; run scripts/setup.sh first\n');
  process.exit(1);
}
const { main } = await import(entry);
process.exitCode = await main(process.argv.slice(2));
