/**
 * The image build's pieces, checked without building (a build takes minutes): the script parses,
 * its staging holds every file the manifests' commands and the programs load at run time, and
 * the Containerfile copies exactly what the script stages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { PLUGIN_MAIN, importClosure } from '../../../src/cni/install.js';

const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
const SCRIPT = join(REPO, 'scripts', 'build-image.sh');
const hasKubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;

function listed(): Set<string> {
  return new Set(execFileSync('bash', [SCRIPT, '--list'], { cwd: REPO, encoding: 'utf8' }).trim().split('\n'));
}

function protoFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...protoFiles(dir, p));
    else if (e.name.endsWith('.proto')) out.push(p);
  }
  return out;
}

test('build-image.sh parses and documents its use', () => {
  execFileSync('bash', ['-n', SCRIPT]);
  const help = execFileSync('bash', [SCRIPT, '--help'], { encoding: 'utf8' });
  assert.match(help, /--docker-archive/);
  assert.match(help, /--list/);
  assert.doesNotMatch(help, /set -euo/, 'the help is the header comment only');
  const bad = spawnSync('bash', [SCRIPT, '--frobnicate'], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /unknown argument --frobnicate/);
});

test('/app holds the programs, the plugin\'s payload, the .proto files, the BPF objects and the native shim', () => {
  const files = listed();
  for (const f of ['package.json', 'bin/ambit.mjs', 'native/libambit-shim.so', 'dist/src/agent/main.js', 'dist/src/controller/main.js', 'dist/src/cni/install-main.js', 'dist/native/bindings.js']) {
    assert.ok(files.has(f), `${f} is in the image`);
  }
  for (const o of readdirSync(join(REPO, 'bpf')).filter((f) => f.endsWith('.bpf.o'))) assert.ok(files.has(`bpf/${o}`), `bpf/${o}`);
  for (const p of protoFiles(join(REPO, 'src'))) assert.ok(files.has(`src/${p}`), `src/${p} is read at run time`);
  for (const f of importClosure(REPO, PLUGIN_MAIN)) assert.ok(files.has(f), `${f} (the CNI plugin's payload) is in the image`);
  assert.ok(![...files].some((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/') || f.endsWith('.map') || f.endsWith('.ts')), 'no tests, benchmarks, maps or sources');
  assert.equal(JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).type, 'module', 'the copied package.json makes dist/ ES modules');
});

test('every command the manifests run exists in the image, with node on PATH from the pinned npm package', { skip: hasKubectl ? false : 'kubectl is not installed' }, () => {
  const files = listed();
  const objects = parseAllDocuments(execFileSync('kubectl', ['kustomize', join(REPO, 'daemonset', 'core')], { encoding: 'utf8' })).map((d) => d.toJS() as Record<string, any>);
  let commands = 0;
  for (const o of objects) {
    const spec = o['spec']?.['template']?.['spec'];
    if (!spec) continue;
    for (const c of [...(spec['containers'] ?? []), ...(spec['initContainers'] ?? [])]) {
      assert.equal(c['command'][0], 'node', `${o['metadata']['name']}/${c['name']} starts node from PATH`);
      for (const arg of c['command'].filter((a: string) => a.startsWith('/app/'))) assert.ok(files.has(arg.slice(5)), `${arg} is in the image`);
      commands++;
    }
  }
  assert.equal(commands, 3, 'controller, agent, installer');
  const script = readFileSync(SCRIPT, 'utf8');
  assert.match(script, /ln -s \/app\/node_modules\/node\/bin\/node "\$CTX\/links\/usr\/local\/bin\/node"/);
  assert.ok(existsSync(join(REPO, 'node_modules', 'node', 'bin', 'node')), 'the pinned Node binary is where the link points once node_modules is copied');
});

test('the Containerfile builds from scratch and copies exactly what the script stages', () => {
  const text = readFileSync(join(REPO, 'Containerfile'), 'utf8');
  const instructions = text.split('\n').filter((l) => /^[A-Z]+ /.test(l));
  assert.equal(instructions[0], 'FROM scratch', 'nothing is pulled from a registry');
  const sources = instructions.filter((l) => /^(ADD|COPY) /.test(l)).map((l) => l.split(/\s+/)[1]!);
  assert.deepEqual(sources, ['rootfs.tar', 'node_modules/', 'app/', 'links/']);
  const script = readFileSync(SCRIPT, 'utf8');
  for (const s of sources) assert.ok(script.includes(`"$CTX/${s.replace(/\/$/, '')}`), `the script stages ${s}`);
  assert.match(text, /CMD \["node", "\/app\/bin\/ambit\.mjs", "help"\]/);
  assert.ok(listed().has('bin/ambit.mjs'));
});
