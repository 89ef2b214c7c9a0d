/**
 * The environment catalogue: every variable src/shared/env.ts declares is documented in the
 * README's Configuration table and nothing else is; the shared parsers mean the same in every
 * binary and report every problem at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENV_NAMES, EnvReader } from '../../../src/shared/env.js';
import { isAmbitError } from '../../../src/shared/errors.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

test('env: every declared variable is in the README Configuration table, and the table declares nothing else', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('## Configuration');
  assert.ok(start >= 0, 'README.md has a "## Configuration" section');
  const end = readme.indexOf('\n## ', start + 1);
  const rows = readme.slice(start, end < 0 ? undefined : end).split('\n').filter((l) => l.startsWith('| `'));
  const documented = new Set(rows.flatMap((r) => r.split('|')[1]!.match(/`([A-Z_]+)`/g)?.map((n) => n.slice(1, -1)) ?? []));
  assert.equal(new Set(ENV_NAMES).size, ENV_NAMES.length, 'each variable declared once');
  for (const name of ENV_NAMES) assert.ok(documented.has(name), `${name} is documented`);
  for (const name of documented) assert.ok((ENV_NAMES as readonly string[]).includes(name), `${name} in the README is declared in env.ts`);
});

test('env: shared settings parse the same way and collect every problem', () => {
  const ok = new EnvReader({ AMBIT_TRUST_DOMAIN: ' example.org ', AMBIT_LOG_LEVEL: 'debug', AMBIT_CERT_TTL: '2h', AMBIT_MANIFESTS: '/a, /b' });
  assert.equal(ok.trustDomain(), 'example.org', 'values are trimmed');
  assert.equal(ok.logLevel(), 'debug');
  assert.equal(ok.certTtlMs(), 7_200_000);
  assert.deepEqual(ok.list('AMBIT_MANIFESTS', 'paths'), ['/a', '/b']);
  assert.equal(ok.clusterId(), 'Kubernetes', 'default');
  assert.deepEqual(ok.finish('test', { a: 1 }), { a: 1 });

  const bad = new EnvReader({
    AMBIT_TRUST_DOMAIN: 'Upper',
    AMBIT_LOG_LEVEL: 'loud',
    AMBIT_CERT_TTL: '30s',
    AMBIT_CONTROLLER_ADDR: '[10.0.0.1]:99999',
    AMBIT_CA_ROOT_FILE: 'relative.pem',
    AMBIT_METRICS_ADDR: '127.0.0.1:1',
    AMBIT_READY_ADDR: '127.0.0.1:1',
  });
  bad.trustDomain();
  bad.logLevel();
  bad.certTtlMs(3_600_000);
  bad.controllerClient();
  bad.distinctListeners([
    ['AMBIT_METRICS_ADDR', bad.hostPort('AMBIT_METRICS_ADDR', '0.0.0.0:0')],
    ['AMBIT_READY_ADDR', bad.hostPort('AMBIT_READY_ADDR', '0.0.0.0:0')],
  ]);
  assert.throws(
    () => bad.finish('test', {}),
    (e: unknown) => {
      assert.ok(isAmbitError(e, 'AMBIT_ERR_CONFIG_INVALID'));
      const m = e.message;
      assert.match(m, /^invalid test environment: 8 problem\(s\)/);
      assert.match(m, /AMBIT_TRUST_DOMAIN: must be a lowercase trust domain.*\(got "Upper"\)/);
      assert.match(m, /AMBIT_LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent \(got "loud"\)/);
      assert.match(m, /AMBIT_CERT_TTL: must be between 60s and 1h \(got "30s"\)/);
      assert.match(m, /AMBIT_CONTROLLER_ADDR: brackets must hold an IPv6 address/);
      assert.match(m, /AMBIT_CONTROLLER_ADDR: port must be between 0 and 65535/, 'both problems of one value are reported');
      assert.match(m, /AMBIT_CA_ROOT_FILE: must be an absolute path \(got "relative.pem"\)/);
      assert.match(m, /AMBIT_TOKEN_FILE: is required/);
      assert.match(m, /AMBIT_READY_ADDR: must differ from AMBIT_METRICS_ADDR/);
      return true;
    },
  );
});
