/**
 * The data plane end to end, in real network namespaces with capture really attached: two nodes,
 * pods on both, traffic through both agents' HBONE tunnels; policy, enrollment, restarts, metrics
 * scraped by a real Prometheus, and the nft fallback.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ambit, destroyMesh, freePort, isRoot, leftovers, lockLocalMesh, meshLogTail, meshName, metricSum, repoRoot, waitFor } from '../helpers/local-mesh.js';
import { callControl } from '../../src/local/control.js';
import { RAISE_NOFILE } from '../../src/local/exec.js';
import { stateDirFor, type LocalStatus } from '../../src/local/mesh.js';

const fx = (f: string): string => join(repoRoot, 'test/fixtures/mesh', f);
const netload = join(repoRoot, 'dist/test/helpers/netload.js');
const skip = isRoot() ? false : 'requires root (network namespaces, BPF, nftables)';

interface Mesh {
  name: string;
  status(): Promise<LocalStatus>;
  exec(pod: string, argv: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  load<T = Record<string, unknown>>(pod: string, args: string[]): Promise<T>;
  apply(file: string): Promise<void>;
  remove(file: string): Promise<void>;
}

async function startMesh(t: TestContext, tag: string, capture: 'bpf' | 'nft'): Promise<Mesh> {
  const unlock = await lockLocalMesh();
  const name = meshName(tag);
  t.after(async () => {
    await destroyMesh(name);
    unlock();
  });
  const up = await ambit(['local', 'up', '-f', fx('base.yaml'), '--name', name, '--capture', capture, '--timeout', '90s']);
  assert.equal(up.code, 0, `local up failed:\n${up.stderr}`);
  const exec = (pod: string, argv: string[], input?: string) => ambit(['local', 'exec', '--name', name, pod, '--', ...argv], input === undefined ? {} : { input });
  return {
    name,
    status: async () => JSON.parse((await ambit(['local', 'status', '--name', name, '-o', 'json'])).stdout) as LocalStatus,
    exec,
    load: async <T>(pod: string, args: string[]) => {
      const r = await exec(pod, ['sh', '-c', `${RAISE_NOFILE} exec "$0" "$@"`, process.execPath, netload, ...args]);
      const last = r.stdout.trim().split('\n').pop() ?? '';
      try {
        return JSON.parse(last) as T;
      } catch {
        throw new Error(`netload ${args.join(' ')} in ${pod} printed ${JSON.stringify(r.stdout)} (stderr ${r.stderr})\n${meshLogTail(name)}`);
      }
    },
    apply: async (file) => {
      const r = await ambit(['local', 'apply', '--name', name, '-f', fx(file)]);
      assert.equal(r.code, 0, `apply ${file}: ${r.stderr}`);
    },
    remove: async (file) => {
      const r = await ambit(['local', 'delete', '--name', name, '-f', fx(file)]);
      assert.equal(r.code, 0, `delete ${file}: ${r.stderr}`);
    },
  };
}

/** GET `url` with curl in `pod`; `localPort` is the port curl connected from. */
async function httpFrom(m: Mesh, pod: string, url: string): Promise<{ ok: boolean; localPort?: number; body?: { text: string; client: string; clientPort: number; pod: string } }> {
  const r = await m.exec(pod, ['curl', '-s', '-m', '5', '-w', '\n%{local_port}', url]);
  if (r.code !== 0) return { ok: false };
  try {
    const cut = r.stdout.lastIndexOf('\n');
    return { ok: true, body: JSON.parse(r.stdout.slice(0, cut)), localPort: Number(r.stdout.slice(cut + 1)) };
  } catch {
    return { ok: false };
  }
}

/**
 * Asserts a refusal as the app sees it and as the destination counts it: the connection is reset
 * (netload's probe tells a reset from a refused connect or an orderly close, which curl cannot)
 * and node2's agent (the server's) counts exactly one more policy denial with `reason`.
 */
async function assertDenied(m: Mesh, st: LocalStatus, from: string, port: string, reason: string, what: string): Promise<void> {
  const denials = async (): Promise<number> => metricSum(await fetch(st.nodes.find((n) => n.name === 'node2')!.metrics).then((r) => r.text()), 'ambit_policy_denials_total', { reason });
  const before = await denials();
  const r = await m.load<{ outcome: string }>(from, ['probe', 'server.mesh-b', port]);
  assert.equal(r.outcome, 'reset', `${what}: the connection is reset`);
  assert.equal((await denials()) - before, 1, `${what}: the destination counted one ${reason} denial`);
}

function podIp(st: LocalStatus, ns: string, name: string): string {
  const p = st.pods.find((x) => x.namespace === ns && x.name === name);
  assert.ok(p, `pod ${ns}/${name} exists`);
  return p.ip;
}

/** The same core checks for both capture modes (the nft fallback is enabled by `--capture nft`). */
for (const capture of ['bpf', 'nft'] as const) {
  test(`mesh data plane with ${capture === 'bpf' ? 'BPF capture' : 'the nftables fallback'}`, { skip, timeout: 600_000 }, async (t) => {
    const m = await startMesh(t, capture === 'bpf' ? 'tm' : 'tn', capture);
    let st = await m.status();
    assert.ok(st.pods.filter((p) => p.enrolled).every((p) => p.captured && p.captureMode === capture), JSON.stringify(st.pods));
    const clientIp = podIp(st, 'mesh-a', 'client');
    const serverIp = podIp(st, 'mesh-b', 'server');

    await t.test('a plain client reaches the server by pod IP and by Service name; the server sees the client pod IP and port', async () => {
      for (const url of [`http://${serverIp}:8080/ip`, 'http://server.mesh-b:8080/svc', 'http://server.mesh-b.svc.cluster.local:8080/fqdn']) {
        const r = await httpFrom(m, 'mesh-a/client', url);
        assert.ok(r.ok, `GET ${url}`);
        assert.equal(r.body!.client.replace('::ffff:', ''), clientIp, `source preserved for ${url}`);
        assert.ok(r.localPort! > 0);
        assert.equal(r.body!.clientPort, r.localPort, `source port preserved for ${url}`);
      }
      const metrics = await fetch(st.nodes.find((n) => n.name === 'node1')!.metrics).then((r) => r.text());
      assert.ok(metricSum(metrics, 'istio_tcp_connections_opened_total', { reporter: 'source', source_workload_namespace: 'mesh-a', destination_workload_namespace: 'mesh-b' }) >= 3);
      const dst = await fetch(st.nodes.find((n) => n.name === 'node2')!.metrics).then((r) => r.text());
      assert.ok(metricSum(dst, 'istio_tcp_connections_opened_total', { reporter: 'destination', source_principal: 'spiffe://cluster.local/ns/mesh-a/sa/client' }) >= 3);
      // Each agent writes its access log to its log file; a line names its pod once (one "pod" key).
      for (const [node, direction, pod] of [['node1', 'outbound', 'mesh-a/client'], ['node2', 'inbound', 'mesh-b/server']] as const) {
        const file = join(stateDirFor(m.name), 'logs', `agent-${node}.log`);
        let lines: string[] = [];
        for (let i = 0; i < 50; i++) {
          lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('"scope":"access"') && l.includes(`"direction":"${direction}"`));
          if (lines.length >= 3) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(lines.length >= 3, `${file} holds the ${direction} access lines (found ${lines.length})`);
        for (const l of lines) {
          assert.equal(l.match(/"pod":/g)?.length, 1, `one "pod" key in ${l}`);
          const parsed = JSON.parse(l) as { pod: string; msg: string; src: { addr: string } };
          assert.equal(parsed.pod, pod);
          assert.equal(parsed.msg, 'connection complete');
          assert.equal(parsed.src.addr, clientIp);
        }
      }
    });

    await t.test('between nodes the wire carries only TLS on port 15008, never the payload', async () => {
      // node1's veth in the root namespace: the bridge device itself does not see frames it switches between ports.
      // The root namespace's own calls to the node (controller 15012, metrics 15020, readiness 15021) are not between nodes.
      const dir = mkdtempSync(join(tmpdir(), 'ambit-pcap-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const pcap = join(dir, 'bridge.pcap');
      const dump = spawn('tcpdump', ['-i', `${m.name}-n1`, '--immediate-mode', '-nn', '-U', '-s', '0', '-w', pcap, 'tcp and not port 15012 and not port 15020 and not port 15021'], { stdio: ['ignore', 'ignore', 'pipe'] });
      // Capturing starts when tcpdump says "listening on": wait for that, not for a guessed second.
      await new Promise<void>((resolve, reject) => {
        let err = '';
        const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 30_000);
        dump.stderr!.setEncoding('utf8').on('data', (d: string) => {
          err += d;
          if (err.includes('listening on')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const marker = `AMBIT-SECRET-${process.pid}-${Date.now()}`;
      const r = await m.load<{ reply: string }>('mesh-a/client', ['send', 'server.mesh-b', '9000', marker]);
      await new Promise((r2) => setTimeout(r2, 500));
      dump.kill('SIGINT');
      await new Promise((r2) => dump.once('exit', r2));
      assert.equal(r.reply, marker, 'the echo came back through the mesh');
      const text = spawnSync('tcpdump', ['-r', pcap, '-nn', '-A'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).stdout;
      const headers = text.split('\n').filter((l) => / IP \d+\.\d+\.\d+\.\d+\.\d+ > /.test(l));
      assert.ok(headers.length > 0, 'packets between the nodes were captured');
      for (const h of headers) assert.match(h, /\.15008[ :]/, `every packet on the bridge is HBONE: ${h}`);
      assert.ok(!text.includes(marker), 'the payload never appears in clear on the wire');
    });

    await t.test('64 MiB each way on 20 parallel connections arrive intact', async () => {
      const r = await m.load<{ ok: boolean; intact: number; conns: number }>('mesh-a/client', ['bulk', 'server.mesh-b', '9000', '20', '64']);
      assert.deepEqual({ ok: r.ok, intact: r.intact }, { ok: true, intact: 20 }, `${JSON.stringify(r)}\n${meshLogTail(m.name)}`);
    });

    await t.test('1000 concurrent connections are held open and closed cleanly; half-close works', async () => {
      const r = await m.load<{ opened: number; failed: number; echoed: number; stillOpen: number; closedCleanly: number }>('mesh-a/client', ['hold', 'server.mesh-b', '9000', '1000', '500']);
      assert.deepEqual(r, { opened: 1000, failed: 0, echoed: 1000, stillOpen: 1000, closedCleanly: 1000 }, meshLogTail(m.name));
      const h = await m.load<{ ok: boolean }>('mesh-a/client', ['halfclose', 'server.mesh-b', '9000']);
      assert.equal(h.ok, true);
    });

    await t.test('STRICT refuses plaintext from a pod outside the mesh; PERMISSIVE accepts it', async () => {
      assert.equal((await httpFrom(m, 'outside/plain', 'http://server.mesh-b:8080/')).ok, true, 'PERMISSIVE (default) accepts plaintext');
      await m.apply('strict.yaml');
      await assertDenied(m, st, 'outside/plain', '8080', 'strict_mtls', 'STRICT refuses plaintext');
      assert.equal((await httpFrom(m, 'mesh-a/client', 'http://server.mesh-b:8080/')).ok, true, 'mesh traffic still flows under STRICT');
    });

    await t.test('enrolling a running pod by label captures it; unenrolling restores direct traffic', async () => {
      const before = await m.status();
      const plain = before.pods.find((p) => p.name === 'plain')!;
      assert.equal(plain.enrolled, false);
      const started = Date.now();
      await m.apply('enroll-outside.yaml');
      t.diagnostic(`enrollment took effect ${Date.now() - started} ms after apply started`);
      const after = await m.status();
      const p2 = after.pods.find((p) => p.name === 'plain')!;
      assert.deepEqual({ enrolled: p2.enrolled, captured: p2.captured, restarts: p2.restarts }, { enrolled: true, captured: true, restarts: 0 }, 'captured without a restart');
      const r = await httpFrom(m, 'outside/plain', 'http://server.mesh-b:8080/');
      assert.equal(r.ok, true, 'now in the mesh, STRICT accepts it');
      await m.apply('unenroll-outside.yaml');
      assert.equal((await m.status()).pods.find((p) => p.name === 'plain')!.enrolled, false);
      await assertDenied(m, st, 'outside/plain', '8080', 'strict_mtls', 'direct plaintext again, refused by STRICT');
      await m.apply('permissive.yaml');
      assert.equal((await httpFrom(m, 'outside/plain', 'http://server.mesh-b:8080/')).ok, true, 'direct plaintext accepted under PERMISSIVE');
    });

    await t.test('AuthorizationPolicy: DENY by principal, ALLOW by namespace and port', async () => {
      await m.apply('deny-other.yaml');
      await assertDenied(m, st, 'mesh-a/other', '8080', 'deny_match', 'other is denied by principal');
      assert.equal((await httpFrom(m, 'mesh-a/client', 'http://server.mesh-b:8080/')).ok, true, 'client is not');
      await m.remove('deny-other.yaml');
      await m.apply('allow-client-http.yaml');
      assert.equal((await httpFrom(m, 'mesh-a/other', 'http://server.mesh-b:8080/')).ok, true, 'namespace mesh-a is allowed on 8080');
      await assertDenied(m, st, 'mesh-a/client', '9000', 'no_allow_match', 'port 9000 is not in the ALLOW rule');
      await assertDenied(m, st, 'outside/plain', '8080', 'no_allow_match', 'a namespace outside the ALLOW rule is denied');
      await m.remove('allow-client-http.yaml');
    });

    await t.test('a new DENY closes a live connection', async () => {
      const stateDir = stateDirFor(m.name);
      const target = await callControl<{ netns: string; cgroupProcs: string; env: Record<string, string> }>(stateDir, 'GET', '/exec-target?namespace=mesh-a&name=client');
      const child = spawn('sh', ['-c', 'echo $$ > "$1" && shift && exec ip netns exec "$@"', 'sh', target.cgroupProcs, target.netns, process.execPath, netload, 'wait', 'server.mesh-b', '9000', '30000'], { stdio: ['ignore', 'pipe', 'ignore'] });
      t.after(() => {
        if (child.exitCode === null) child.kill('SIGKILL');
      });
      const exited = new Promise((r) => child.once('exit', r));
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      await waitFor('the live connection', async () => (out.includes('"connected":true') ? true : undefined), 10_000);
      await m.apply('deny-client.yaml');
      await exited;
      const result = JSON.parse(out.trim().split('\n').pop()!) as { outcome: string };
      assert.equal(result.outcome, 'closed', 'the agent closed the now-denied connection');
      await m.remove('deny-client.yaml');
      assert.equal((await httpFrom(m, 'mesh-a/client', 'http://server.mesh-b:8080/')).ok, true);
    });

    if (capture === 'bpf') await t.test('Prometheus scrapes both agents', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ambit-prom-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const port = await freePort();
      const targets = st.nodes.map((n) => `'${n.ip}:15020'`).join(', ');
      writeFileSync(join(dir, 'prometheus.yml'), `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ambit-agents\n    static_configs:\n      - targets: [${targets}]\n`);
      const prom = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
      t.after(() => {
        if (prom.exitCode === null) prom.kill('SIGKILL');
      });
      const query = async (q: string): Promise<Array<{ value: [number, string] }>> => {
        const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`).catch(() => undefined);
        if (!r?.ok) return [];
        return ((await r.json()) as { data: { result: Array<{ value: [number, string] }> } }).data.result;
      };
      const up = await waitFor('both agents up in Prometheus', async () => {
        const res = await query('sum(up{job="ambit-agents"})');
        return res.length && Number(res[0]!.value[1]) === 2 ? 2 : undefined;
      });
      assert.equal(up, 2);
      const opened = await waitFor('istio_tcp_connections_opened_total in Prometheus', async () => {
        const res = await query('sum(istio_tcp_connections_opened_total{reporter="destination",destination_workload_namespace="mesh-b"})');
        return res.length && Number(res[0]!.value[1]) > 0 ? Number(res[0]!.value[1]) : undefined;
      });
      assert.ok(opened > 0);
    });

    await t.test('while an agent is killed and until it has restarted, nothing goes around the mesh', async () => {
      /**
       * Kills `node`'s agent (kill -9) while `pod` keeps fetching `url`, until the supervisor has
       * restarted it and every enrolled pod is captured again, then a little longer. Returns the
       * attempts and how many got an HTTP 200.
       */
      const hammerThroughRestart = async (node: string, pod: string, url: string): Promise<{ attempts: number; ok: number }> => {
        const stopFile = join(mkdtempSync(join(tmpdir(), 'ambit-hammer-')), 'stop');
        t.after(() => rmSync(join(stopFile, '..'), { recursive: true, force: true }));
        const loop = `ok=0; n=0; while [ ! -e ${stopFile} ] && [ $n -lt 600 ]; do n=$((n+1)); c=$(curl -s -m 1 -o /dev/null -w '%{http_code}' ${url}); [ "$c" = 200 ] && ok=$((ok+1)); sleep 0.05; done; echo "$n $ok"`;
        const running = m.exec(pod, ['sh', '-c', loop]);
        const before = (await m.status()).nodes.find((n) => n.name === node)!;
        assert.ok(before.agentPid, `${node}'s agent runs`);
        await new Promise((r) => setTimeout(r, 300));
        process.kill(before.agentPid, 'SIGKILL');
        await waitFor(`${node}'s agent restarted and every enrolled pod captured`, async () => {
          const s = await m.status();
          const n = s.nodes.find((x) => x.name === node)!;
          const ok = n.agentPid !== undefined && n.agentPid !== before.agentPid && n.connected && s.pods.filter((p) => p.enrolled).every((p) => p.captured && p.captureMode === capture);
          return ok ? true : undefined;
        }, 60_000);
        await new Promise((r) => setTimeout(r, 1000));
        writeFileSync(stopFile, '');
        const out = (await running).stdout.trim().split(' ').map(Number);
        return { attempts: out[0]!, ok: out[1]! };
      };
      const serverUrl = `http://${serverIp}:8080/`;

      // The server's agent dies: a plaintext client outside the mesh must never get an answer from the STRICT server.
      await m.apply('strict.yaml');
      const plain = await hammerThroughRestart('node2', 'outside/plain', serverUrl);
      t.diagnostic(`plaintext client: ${plain.attempts} attempts through node2's agent restart`);
      assert.ok(plain.attempts >= 10, `the client kept trying (${plain.attempts})`);
      assert.equal(plain.ok, 0, 'zero plaintext successes against the STRICT pod');

      // The client's agent dies: under PERMISSIVE a connection that went around the mesh would be
      // accepted by the server's agent as plaintext. None may arrive; the mesh ones are mTLS.
      await m.apply('permissive.yaml');
      const node2 = st.nodes.find((n) => n.name === 'node2')!;
      const plaintextIn = async (): Promise<number> =>
        metricSum(await fetch(node2.metrics).then((r) => r.text()), 'istio_tcp_connections_opened_total', {
          reporter: 'destination',
          source_workload: 'client',
          connection_security_policy: 'unknown',
        });
      const plainBefore = await plaintextIn();
      const client = await hammerThroughRestart('node1', 'mesh-a/client', serverUrl);
      t.diagnostic(`enrolled client: ${client.attempts} attempts, ${client.ok} answered, through node1's agent restart`);
      assert.ok(client.ok >= 1, 'the client is served again once its agent is back');
      assert.equal(await plaintextIn(), plainBefore, 'zero connections from the enrolled client arrived outside the mesh');
      st = await m.status();
    });

    await t.test('an agent restart leaves nothing stale and capture works again', async () => {
      const pinDir = `/sys/fs/bpf/${m.name}-node2`;
      const pinsBefore = existsSync(pinDir) ? readdirSync(pinDir).sort() : [];
      const cgroup = join(/^\S+ (\S+) cgroup2 /m.exec(readFileSync('/proc/mounts', 'utf8'))![1]!, `${m.name}-mesh`);
      const progs = () => spawnSync('bpftool', ['cgroup', 'show', cgroup], { encoding: 'utf8' }).stdout.split('\n').filter((l) => /^\d+/.test(l.trim())).length;
      // What the agent installs inside the server pod's netns: nft tables and the reply-routing rule.
      const inPod = async () => {
        const tables = (await m.exec('mesh-b/server', ['nft', 'list', 'tables'])).stdout.split('\n').filter((l) => l.trim()).sort();
        const rules = (await m.exec('mesh-b/server', ['ip', 'rule', 'show', 'pref', '32764'])).stdout.split('\n').filter((l) => l.trim()).length;
        return { tables, rules };
      };
      const progsBefore = progs();
      const podBefore = await inPod();
      assert.equal(podBefore.rules, 1, 'one reply-routing rule in the pod');
      if (capture === 'nft') assert.ok(podBefore.tables.includes('table inet ambit_capture'), JSON.stringify(podBefore));
      await callControl(stateDirFor(m.name), 'POST', '/restart-agent', { node: 'node2' });
      st = await waitFor('node2 agent back and pods captured', async () => {
        const s = await m.status();
        const ok = s.nodes.every((n) => n.connected) && s.pods.filter((p) => p.enrolled).every((p) => p.captured && p.captureMode === capture);
        return ok ? s : undefined;
      });
      assert.deepEqual(existsSync(pinDir) ? readdirSync(pinDir).sort() : [], pinsBefore, 'the same pins, no stale ones');
      assert.equal(progs(), progsBefore, 'no extra programs attached to the mesh cgroup');
      assert.deepEqual(await inPod(), podBefore, 'the same nft tables and one reply rule in the pod, no duplicates');
      const r = await httpFrom(m, 'mesh-a/client', 'http://server.mesh-b:8080/after-restart');
      assert.equal(r.ok, true);
      assert.equal(r.body!.client.replace('::ffff:', ''), clientIp);
    });

    const pods = (await m.status()).pods.length;
    assert.equal(pods, 4);
    const down = await ambit(['local', 'down', '--name', m.name]);
    assert.equal(down.code, 0);
    assert.deepEqual(leftovers(m.name), []);
  });
}
