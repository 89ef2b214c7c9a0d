/**
 * The capture objects as built, and the per-program decisions of sk_lookup through BPF_PROG_RUN
 * (the only capture program type the kernel can test-run; the cgroup and sockops programs are
 * exercised with real traffic in the other files).
 *
 * Build: one object per attach family, each carrying only the maps its programs use; compiled
 * against uapi headers, so no vmlinux.h, no kernel BTF at build or load time (no CO-RE
 * relocations) and no __TARGET_ARCH.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BpfObject, bpfObjectPath, testRunProgram } from '../../native/bpf.js';
import { steerPortCodec, steerSocketCodec } from '../../src/agent/capture/redirect.js';
import { SkLookupCtxType, decodeStruct, encodeStruct } from '../../native/bindings.js';
import { closeFd, listenInNetns, socketCookie } from '../../native/netns.js';
import { ipToBytes16 } from '../../native/sockaddr.js';
import { BPF_DIR, bpfSkipReason, createFixture, type Pod } from './fixture.js';

const skip = bpfSkipReason();

function hasTool(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const buildSkip = hasTool('clang', ['--version']) && hasTool('bpftool', ['version']) && hasTool('llvm-objcopy', ['--version']) ? undefined : 'requires clang, bpftool and llvm-objcopy';

/** Names of the maps an object file defines (its BTF .maps section). */
function mapsOf(obj: string): string[] {
  const dump = execFileSync('bpftool', ['btf', 'dump', 'file', obj], { encoding: 'utf8' });
  const section = /DATASEC '\.maps'[^\n]*\n((?:\t[^\n]*\n)*)/.exec(dump)?.[1] ?? '';
  return [...section.matchAll(/VAR '([^']+)'/g)].map((m) => m[1]!).sort();
}

/** Bytes of CO-RE relocation records in an object's .BTF.ext (0: libbpf needs no kernel BTF). */
function coreRelocationBytes(obj: string, dir: string): number {
  const out = join(dir, 'btf.ext');
  execFileSync('llvm-objcopy', ['--dump-section', `.BTF.ext=${out}`, obj, join(dir, 'scratch.o')]);
  const ext = readFileSync(out);
  const hdrLen = ext.readUInt32LE(4);
  // struct btf_ext_header: core_relo_off / core_relo_len follow line_info when hdr_len >= 32.
  return hdrLen >= 32 ? ext.readUInt32LE(28) : 0;
}

test('one object per attach family, each with only the maps its programs use', { skip: buildSkip }, () => {
  assert.deepEqual(
    readdirSync(BPF_DIR)
      .filter((f) => f.endsWith('.bpf.c'))
      .sort(),
    ['reuseport.bpf.c', 'sk_lookup.bpf.c', 'sock_addr.bpf.c', 'sockops.bpf.c', 'sockopt.bpf.c'],
  );
  assert.deepEqual(mapsOf(bpfObjectPath('sock_addr')), ['ambit_excluded_ports', 'ambit_pods', 'ambit_sock_orig', 'ambit_stats']);
  assert.deepEqual(mapsOf(bpfObjectPath('sockops')), ['ambit_accept_orig', 'ambit_direct_dials', 'ambit_handshakes', 'ambit_sock_orig', 'ambit_stats']);
  assert.deepEqual(mapsOf(bpfObjectPath('sockopt')), ['ambit_accept_orig', 'ambit_handshakes', 'ambit_pods', 'ambit_stats']);
  // The per-pod object opens one shared map, not the agent's whole set.
  assert.deepEqual(mapsOf(bpfObjectPath('sk_lookup')), ['ambit_stats', 'ambit_steer_direct', 'ambit_steer_excluded', 'ambit_steer_socket']);
  // The workers' spreading program is standalone: no pinned map, not even the stats.
  assert.deepEqual(mapsOf(bpfObjectPath('reuseport')), ['ambit_spread_socks', 'ambit_spread_state']);
});

test('the objects build without the build host kernel: no vmlinux.h, no kernel BTF, no target arch', { skip: buildSkip }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-build-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const dry = execFileSync('make', ['-s', '-B', '-n', '-C', BPF_DIR, `OUT=${dir}`], { encoding: 'utf8' });
  assert.doesNotMatch(dry, /vmlinux|btf dump|__TARGET_ARCH/, 'the build reads nothing from the running kernel');
  execFileSync('make', ['-s', '-C', BPF_DIR, `OUT=${dir}`, 'BTF=/nonexistent'], { stdio: ['ignore', 'ignore', 'pipe'] });
  for (const name of ['sock_addr', 'sockops', 'sockopt', 'sk_lookup']) {
    const obj = join(dir, `${name}.bpf.o`);
    assert.equal(coreRelocationBytes(obj, dir), 0, `${name}: no CO-RE relocations, so loading never parses the kernel BTF`);
  }
});

/** The sk_lookup verdicts (linux/bpf.h enum sk_action). */
const SK_DROP = 0;
const SK_PASS = 1;

interface Lookup {
  family: 'IPv4' | 'IPv6';
  protocol?: number;
  remote: string;
  remotePort: number;
  local: string;
  localPort: number;
}

function lookupCtx(l: Lookup): Buffer {
  const b4 = (a: string): Uint8Array => (l.family === 'IPv4' ? ipToBytes16(a).subarray(12) : new Uint8Array(4));
  const b16 = (a: string): Uint8Array => (l.family === 'IPv6' ? ipToBytes16(a) : new Uint8Array(16));
  const port = Buffer.alloc(2);
  port.writeUInt16BE(l.remotePort);
  return encodeStruct(SkLookupCtxType, {
    cookie: 0n,
    family: l.family === 'IPv4' ? 2 : 10,
    protocol: l.protocol ?? 6,
    remote_ip4: b4(l.remote),
    remote_ip6: b16(l.remote),
    remote_port: port,
    pad: 0,
    local_ip4: b4(l.local),
    local_ip6: b16(l.local),
    local_port: l.localPort,
    ingress_ifindex: 0,
  });
}

test('sk_lookup decisions (BPF_PROG_RUN): steered, left to the app, or refused', { skip }, (t) => {
  const fx = createFixture('p', 1);
  const pinRoot = `/sys/fs/bpf/${fx.prefix}-prog`;
  mkdirSync(pinRoot, { recursive: true });
  const fds: number[] = [];
  const objs: BpfObject[] = [];
  t.after(() => {
    for (const o of objs) o.close();
    for (const fd of fds) closeFd(fd);
    rmSync(pinRoot, { recursive: true, force: true });
    fx.cleanup();
  });
  const [pod] = fx.pods as [Pod];
  const open = (): BpfObject => {
    const o = BpfObject.open(bpfObjectPath('sk_lookup'), { pinRoot });
    objs.push(o);
    return o;
  };
  const run = (o: BpfObject, l: Lookup): { verdict: string; cookie: bigint } => {
    const r = testRunProgram(o, 'ambit_steer', lookupCtx(l));
    const cookie = BigInt(decodeStruct(r.ctx, SkLookupCtxType)['cookie'] as bigint | number);
    return { verdict: r.retval === SK_PASS ? 'pass' : r.retval === SK_DROP ? 'drop' : `retval ${r.retval}`, cookie };
  };
  const v4 = (remote: string, localPort: number, protocol?: number): Lookup => ({ family: 'IPv4', remote, remotePort: 40000, local: pod.ip, localPort, ...(protocol ? { protocol } : {}) });
  const v6 = (remote: string, localPort: number): Lookup => ({ family: 'IPv6', remote, remotePort: 40000, local: pod.ip6, localPort });

  // An instance whose pod has no listener: the agent is down, or the pod is pending.
  const empty = open();
  assert.deepEqual(run(empty, v4('10.9.9.9', 8080)), { verdict: 'drop', cookie: 0n }, 'no listener: refused, never handed to the app');
  assert.deepEqual(run(empty, v6('fd00:9::9', 8080)), { verdict: 'drop', cookie: 0n });
  assert.deepEqual(run(empty, v4('127.0.0.1', 8080)), { verdict: 'pass', cookie: 0n }, 'pod-local traffic is the app\'s');
  assert.deepEqual(run(empty, v4(pod.ip, 8080)), { verdict: 'pass', cookie: 0n }, 'the pod talking to itself');
  assert.deepEqual(run(empty, v4('10.9.9.9', 15008)), { verdict: 'pass', cookie: 0n }, 'HBONE goes to the agent\'s own listener');
  assert.deepEqual(run(empty, v4('10.9.9.9', 53, 17)), { verdict: 'pass', cookie: 0n }, 'UDP is not captured');

  // An enrolled pod's instance with a dual-stack listener.
  const dual = listenInNetns(pod.netnsPath, { address: '::', port: 15006 });
  fds.push(dual);
  const steer = open();
  steer.map('ambit_steer_socket', steerSocketCodec).update(0, BigInt(dual));
  steer.map('ambit_steer_excluded', steerPortCodec).update(9090, 1);
  const cookie = socketCookie(dual);
  assert.deepEqual(run(steer, v4('10.9.9.9', 8080)), { verdict: 'pass', cookie }, 'IPv4 is steered to the listener');
  assert.deepEqual(run(steer, v6('fd00:9::9', 8080)), { verdict: 'pass', cookie }, 'IPv6 is steered to the listener');
  assert.deepEqual(run(steer, v4('10.9.9.9', 9090)), { verdict: 'pass', cookie: 0n }, 'an excluded port is the app\'s');

  // An IPv4-only listener can not take IPv6: refused, not passed.
  const only4 = listenInNetns(pod.netnsPath, { address: '0.0.0.0', port: 15016 });
  fds.push(only4);
  const steer4 = open();
  steer4.map('ambit_steer_socket', steerSocketCodec).update(0, BigInt(only4));
  assert.deepEqual(run(steer4, v4('10.9.9.9', 8080)), { verdict: 'pass', cookie: socketCookie(only4) });
  assert.deepEqual(run(steer4, v6('fd00:9::9', 8080)), { verdict: 'drop', cookie: 0n });
});
