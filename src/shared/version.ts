/** The package root (the folder holding package.json, from src/ or dist/src/) and Ambit's version. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AmbitError } from './errors.js';

let cachedRoot: string | undefined;

/** The folder holding Ambit's package.json, found by walking up from this module (at most 10 levels). */
export function packageRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 10; i++) {
    if (existsSync(join(dir, 'package.json'))) return (cachedRoot = dir);
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `cannot find package.json above ${fileURLToPath(import.meta.url)}; is the install complete?`);
}

let cachedVersion: string | undefined;

/** Ambit's version, from package.json. */
export function ambitVersion(): string {
  cachedVersion ??= (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  return cachedVersion;
}
