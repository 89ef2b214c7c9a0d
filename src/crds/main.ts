/**
 * `npm run gen:crds`: writes daemonset/crds/ from src/crds/ (`--check` only compares and exits 1
 * when the committed files differ).
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errorMessage } from '../shared/errors.js';
import { renderCrdFiles } from './index.js';
import { CRD_DIR, diffCrdDir } from './files.js';

async function main(argv: string[]): Promise<number> {
  const files = renderCrdFiles();
  if (argv.includes('--check')) {
    const differ = await diffCrdDir(CRD_DIR, files);
    if (differ.length > 0) {
      process.stderr.write(`daemonset/crds/ is out of date (run npm run gen:crds): ${differ.join(', ')}\n`);
      return 1;
    }
    return 0;
  }
  await rm(CRD_DIR, { recursive: true, force: true });
  for (const [path, text] of files) {
    await mkdir(dirname(join(CRD_DIR, path)), { recursive: true });
    await writeFile(join(CRD_DIR, path), text);
  }
  process.stderr.write(`wrote ${files.size} files under ${CRD_DIR}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`gen:crds: ${errorMessage(e)}\n`);
    process.exitCode = 1;
  },
);
