/**
 * native/ against the real kernel: sockets made inside a netns, netns cookies, SO_ORIGINAL_DST
 * on an uncaptured socket, the connect styles the agent proxy can use, BPF load and attach
 * errors (program named, the end of the verifier log kept, libbpf's messages after a load), and
 * the abort when a thread can not leave a pod's netns. Needs root (the BPF part also needs BPF
 * and clang).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  BYPASS_MARK,
  closeFd,
  connectInNetns,
  getOriginalDst,
  listenInNetns,
  netnsCookie,
  sendBufferSize,
  socketFd,
  socketInNetns,
  socketLocalAddress,
} from '../../native/netns.js';
import { BpfObject, bpfObjectPath } from '../../native/bpf.js';
import { bpfSkipReason, buildFixtureObject, closeServer, createFixture, fetchText, isRoot, serveFd } from './fixture.js';

const rootSkip = isRoot() ? undefined : 'requires root';

test('netns helpers create sockets inside the pod and read its cookie', { skip: rootSkip }, async (t) => {
  const fx = createFixture('k', 2);
  const servers: net.Server[] = [];
  t.after(async () => {
    for (const s of servers) await closeServer(s);
    fx.cleanup();
  });
  const [a, b] = fx.pods as [(typeof fx.pods)[0], (typeof fx.pods)[0]];

  await t.test('netns cookies identify a namespace', () => {
    const ca = netnsCookie(a.netnsPath);
    assert.equal(typeof ca, 'bigint');
    assert.equal(netnsCookie(a.netnsPath), ca);
    assert.notEqual(netnsCookie(b.netnsPath), ca);
  });

  await t.test('a listener made with listenInNetns lives in the pod, not in the host', async () => {
    const fd = listenInNetns(a.netnsPath, { address: '127.0.0.1', port: 15001 });
    assert.deepEqual(socketLocalAddress(fd), { address: '127.0.0.1', port: 15001, family: 'IPv4' });
    const server = serveFd(fd, (s) => `pod-a-loopback ${s.remoteAddress}`);
    servers.push(server);
    assert.equal(socketFd(server), fd);
    assert.equal(await fetchText(new net.Socket({ fd: socketInNetns(a.netnsPath, { family: 'IPv4' }) }), 15001, '127.0.0.1'), 'pod-a-loopback 127.0.0.1');
    await assert.rejects(fetchText(new net.Socket({ fd: socketInNetns(b.netnsPath, { family: 'IPv4' }) }), 15001, '127.0.0.1'), {
      code: 'ECONNREFUSED',
    });
  });

  await t.test('socketInNetns + socket.connect() emits connect and sources from the pod address', async () => {
    servers.push(serveFd(listenInNetns(b.netnsPath, { address: '0.0.0.0', port: 8080 }), (s) => `from ${s.remoteAddress}`));
    const sock = new net.Socket({ fd: socketInNetns(a.netnsPath, { family: 'IPv4', mark: BYPASS_MARK }) });
    let connected = false;
    sock.on('connect', () => (connected = true));
    assert.equal(await fetchText(sock, 8080, b.ip), `from ${a.ip}`);
    assert.equal(connected, true);
  });

  await t.test('sendBufferBytes goes past net.core.wmem_max on dials and on accepted sockets', async () => {
    const wmemMax = Number(execFileSync('cat', ['/proc/sys/net/core/wmem_max'], { encoding: 'utf8' }).trim());
    const want = wmemMax + 1024 * 1024;
    const lfd = listenInNetns(b.netnsPath, { address: '0.0.0.0', port: 8443, sendBufferBytes: want });
    const accepted = new Promise<number>((resolve) => {
      const server = net.createServer((s) => {
        resolve(sendBufferSize(socketFd(s)));
        s.end();
      });
      servers.push(server);
      server.listen({ fd: lfd });
    });
    const dfd = socketInNetns(a.netnsPath, { family: 'IPv4', mark: BYPASS_MARK, sendBufferBytes: want });
    // The kernel doubles what it is asked for; an unforced SO_SNDBUF would stop at 2 × wmem_max.
    assert.equal(sendBufferSize(dfd), 2 * want);
    const sock = new net.Socket({ fd: dfd });
    sock.connect(8443, b.ip);
    sock.on('data', () => undefined);
    assert.equal(await accepted, 2 * want, 'the accepted socket inherits the listener\'s send buffer');
    sock.destroy();
  });

  await t.test('connectInNetns returns an fd Node can use as already connected', async () => {
    const fd = connectInNetns(a.netnsPath, { address: b.ip, port: 8080, mark: BYPASS_MARK });
    const sock = new net.Socket({ fd, readable: true, writable: true });
    assert.equal(await fetchText(sock), `from ${a.ip}`);
    const refused = new net.Socket({ fd: connectInNetns(a.netnsPath, { address: b.ip, port: 1 }), readable: true, writable: true });
    await assert.rejects(fetchText(refused), { code: 'ECONNREFUSED' });
  });

  await t.test('getOriginalDst of an uncaptured connection fails with AMBIT_ERR_CAPTURE_FAILED / ENOENT', async () => {
    const fd = listenInNetns(a.netnsPath, { address: '0.0.0.0', port: 7000 });
    let err: unknown;
    servers.push(
      serveFd(fd, (s) => {
        try {
          getOriginalDst(socketFd(s));
        } catch (e) {
          err = e;
        }
        return 'done';
      }),
    );
    assert.equal(await fetchText(new net.Socket(), 7000, a.ip), 'done');
    assert.equal((err as { code?: string }).code, 'AMBIT_ERR_CAPTURE_FAILED');
    assert.equal((err as { details?: { errno?: string } }).details?.errno, 'ENOENT');
  });

  await t.test('a missing netns is a clear AMBIT_ERR_NETNS_ENTER and the thread stays home', () => {
    const home = netnsCookie('/proc/self/ns/net');
    assert.throws(() => listenInNetns('/var/run/netns/does-not-exist-ambit', { address: '0.0.0.0', port: 1 }), {
      code: 'AMBIT_ERR_NETNS_ENTER',
      message: /does the pod still exist/,
    });
    assert.throws(() => listenInNetns(a.netnsPath, { address: 'not-an-ip', port: 1 }), { code: 'AMBIT_ERR_NATIVE_CALL' });
    assert.equal(netnsCookie('/proc/thread-self/ns/net'), home);
  });

  await t.test('a taken port fails with EADDRINUSE', (t) => {
    const fd = listenInNetns(a.netnsPath, { address: '127.0.0.1', port: 15002 });
    t.after(() => closeFd(fd));
    assert.throws(() => listenInNetns(a.netnsPath, { address: '127.0.0.1', port: 15002 }), (e: unknown) => {
      const x = e as { details?: { errno?: string } };
      return x.details?.errno === 'EADDRINUSE';
    });
  });
});

function hasClang(): boolean {
  try {
    execFileSync('clang', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const bpfSkip = bpfSkipReason() ?? (hasClang() ? undefined : 'requires clang');

test('a program the verifier rejects fails with AMBIT_ERR_BPF_LOAD naming the program and the verdict', { skip: bpfSkip }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-reject-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const obj = buildFixtureObject('reject', dir);
  assert.throws(
    () => BpfObject.open(obj),
    (e: unknown) => {
      const x = e as { code?: string; message: string; details?: { log?: string; errno?: string; program?: string } };
      assert.equal(x.code, 'AMBIT_ERR_BPF_LOAD');
      assert.equal(x.details?.errno, 'EACCES');
      assert.equal(x.details?.program, 'ambit_reject');
      assert.match(x.message, /\(program ambit_reject\) failed with EACCES: invalid bpf_context access/);
      assert.match(x.details?.log ?? '', /BEGIN PROG LOAD LOG/);
      return true;
    },
  );
});

test('a verifier log of megabytes keeps its end, where the verdict is', { skip: bpfSkip }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-reject-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const obj = buildFixtureObject('long-reject', dir);
  assert.throws(
    () => BpfObject.open(obj),
    (e: unknown) => {
      const x = e as { code?: string; message: string; details?: { log?: string } };
      assert.equal(x.code, 'AMBIT_ERR_BPF_LOAD');
      assert.match(x.message, /\(program ambit_long_reject\) failed with EACCES: invalid bpf_context access/);
      assert.match(x.details?.log ?? '', /END PROG LOAD LOG/, 'the end of the log is kept');
      return true;
    },
  );
});

test('libbpf keeps talking after a load: a failed attach carries its message', { skip: bpfSkip }, (t) => {
  const pinRoot = `/sys/fs/bpf/ambit-native-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'ambit-attach-'));
  mkdirSync(pinRoot, { recursive: true });
  const obj = BpfObject.open(bpfObjectPath('sock_addr'), { pinRoot });
  t.after(() => {
    obj.close();
    rmSync(pinRoot, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  });
  const notACgroup = join(dir, 'file');
  writeFileSync(notACgroup, '');
  assert.throws(
    () => obj.attachCgroup('ambit_connect4', notACgroup),
    (e: unknown) => {
      const x = e as { code?: string; message: string; details?: { log?: string } };
      assert.equal(x.code, 'AMBIT_ERR_BPF_ATTACH');
      assert.match(x.details?.log ?? '', /prog 'ambit_connect4': failed to attach/);
      return true;
    },
  );
});

test('a missing object file fails with AMBIT_ERR_BPF_LOAD naming ENOENT', { skip: bpfSkip }, () => {
  assert.throws(() => BpfObject.open('/nonexistent/ambit.bpf.o'), { code: 'AMBIT_ERR_BPF_LOAD', message: /ENOENT/ });
  for (const name of ['sock_addr', 'sockops', 'sockopt', 'sk_lookup']) assert.match(bpfObjectPath(name), new RegExp(`bpf/${name}\\.bpf\\.o$`));
});

test('a thread that can not switch back from a pod netns aborts the process instead of running on there', { skip: rootSkip }, async (t) => {
  const fx = createFixture('x', 1);
  t.after(() => fx.cleanup());
  const netnsJs = fileURLToPath(new URL('../../native/netns.js', import.meta.url));
  // Inside the pod's netns, close every fd of the thread's own (home) netns: setns back then fails.
  const script = `
    const fs = await import('node:fs');
    const { inNetns, netnsCookie } = await import(${JSON.stringify(netnsJs)});
    netnsCookie('/proc/self/ns/net');
    const home = fs.readlinkSync('/proc/self/ns/net');
    inNetns(${JSON.stringify(fx.pods[0]!.netnsPath)}, () => {
      for (const fd of fs.readdirSync('/proc/self/fd')) {
        try { if (fs.readlinkSync('/proc/self/fd/' + fd) === home) fs.closeSync(Number(fd)); } catch {}
      }
    });
    console.log('still running');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.signal, 'SIGABRT', `the process aborted (status ${r.status}, stderr ${r.stderr})`);
  assert.doesNotMatch(r.stdout, /still running/);
  assert.match(r.stderr, /setns back from .* failed with EBADF; aborting rather than run on in a pod's network namespace/);
});
