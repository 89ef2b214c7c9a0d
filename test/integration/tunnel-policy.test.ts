/** L4 policy at the destination through the real tunnel: PeerAuthentication, ALLOW/DENY, late deny. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { twoPodMesh, type LoopbackMesh, type TwoPodMesh } from '../helpers/loopback-net.js';
import { emptyMatch, type Authorization, type AuthzMatch } from '../../src/shared/model.js';

const BASE = `127.${10 + (process.pid % 200)}.3.`;
const B_IP = BASE + '2';
const C_IP = BASE + '3';

const setup = (t: import('node:test').TestContext): Promise<TwoPodMesh> => twoPodMesh(t, BASE);

function match(m: Partial<AuthzMatch>): AuthzMatch {
  return emptyMatch(m);
}

function policy(name: string, action: Authorization['action'], m: Partial<AuthzMatch>): Authorization {
  return { name, namespace: 'backend', scope: 'namespace', action, dryRun: false, rules: [{ clauses: [{ matches: [match(m)] }] }] };
}

/**
 * Sends one line and reports how the connection answered: `echo` (it came back), `reset` (the
 * connection was reset, as ztunnel answers an L4 denial) or `eof` (an orderly close, no data).
 */
function echoes(s: net.Socket): Promise<'echo' | 'reset' | 'eof'> {
  return new Promise((resolve) => {
    let reset = false;
    s.on('error', (e: NodeJS.ErrnoException) => (reset ||= e.code === 'ECONNRESET'));
    s.once('data', () => {
      s.destroy();
      resolve('echo');
    });
    s.once('end', () => {
      s.destroy();
      resolve('eof');
    });
    s.once('close', () => resolve(reset ? 'reset' : 'eof'));
    const go = (): void => void s.write('ping');
    if (s.connecting) s.once('connect', go);
    else go();
  });
}

async function allDenials(mesh: LoopbackMesh): Promise<number> {
  const m = await mesh.registry.getSingleMetric('ambit_policy_denials_total')!.get();
  return m.values.reduce((n, v) => n + v.value, 0);
}

async function denials(mesh: LoopbackMesh, reason: string): Promise<number> {
  const m = await mesh.registry.getSingleMetric('ambit_policy_denials_total')!.get();
  return m.values.find((v) => v.labels['reason'] === reason)?.value ?? 0;
}

test('PERMISSIVE accepts plaintext on 15006, STRICT refuses it and counts the reason', { timeout: 30_000 }, async (t) => {
  const { mesh, echo, wa, wb } = await setup(t);
  const plainPort = mesh.net.realPort(B_IP, 15006);
  assert.equal(await echoes(net.connect({ host: B_IP, port: plainPort, localAddress: C_IP })), 'echo', 'PERMISSIVE: plaintext reaches the app');
  assert.deepEqual(echo.peers, [C_IP]);
  mesh.setConfig({ workloads: [wa, { ...wb, peerAuthentication: 'STRICT' }] });
  assert.equal(await echoes(net.connect({ host: B_IP, port: plainPort, localAddress: C_IP })), 'reset', 'STRICT: plaintext is reset');
  assert.equal(echo.peers.length, 1, 'nothing new reached the app');
  assert.equal(await denials(mesh, 'strict_mtls'), 1);
  // A port-level PERMISSIVE override opens that port again.
  mesh.setConfig({ workloads: [wa, { ...wb, peerAuthentication: 'STRICT', portPeerAuthentication: { [String(echo.port)]: 'PERMISSIVE' } }] });
  assert.equal(await echoes(net.connect({ host: B_IP, port: plainPort, localAddress: C_IP })), 'echo');
});

test('STRICT still admits mTLS tunnel traffic', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo, wa, wb } = await setup(t);
  mesh.setConfig({ workloads: [wa, { ...wb, peerAuthentication: 'STRICT' }] });
  assert.equal(await echoes(mesh.appConnect(a, { address: B_IP, port: echo.port })), 'echo');
});

test('ALLOW and DENY by principal, namespace and port', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t);
  const aPrincipal = 'cluster.local/ns/frontend/sa/fe';
  const cases: Array<{ name: string; policies: Authorization[]; allowed: boolean }> = [
    { name: 'no policy', policies: [], allowed: true },
    { name: 'ALLOW own principal', policies: [policy('p', 'ALLOW', { principals: [{ exact: aPrincipal }] })], allowed: true },
    { name: 'ALLOW another principal only', policies: [policy('p', 'ALLOW', { principals: [{ exact: 'cluster.local/ns/x/sa/y' }] })], allowed: false },
    { name: 'ALLOW namespace frontend', policies: [policy('p', 'ALLOW', { namespaces: [{ exact: 'frontend' }] })], allowed: true },
    { name: 'DENY namespace frontend', policies: [policy('p', 'DENY', { namespaces: [{ exact: 'frontend' }] })], allowed: false },
    { name: 'DENY the echo port', policies: [policy('p', 'DENY', { destinationPorts: [echo.port] })], allowed: false },
    { name: 'DENY another port', policies: [policy('p', 'DENY', { destinationPorts: [echo.port === 1 ? 2 : 1] })], allowed: true },
    { name: 'ALLOW port, DENY principal prefix', policies: [policy('p', 'ALLOW', { destinationPorts: [echo.port] }), policy('d', 'DENY', { principals: [{ prefix: 'cluster.local/ns/frontend/' }] })], allowed: false },
  ];
  for (const c of cases) {
    mesh.setConfig({ authorizations: c.policies });
    const before = await allDenials(mesh);
    // ztunnel resets a denied connection (curl exit 56), never an orderly close (52).
    assert.equal(await echoes(mesh.appConnect(a, { address: B_IP, port: echo.port })), c.allowed ? 'echo' : 'reset', c.name);
    assert.equal((await allDenials(mesh)) - before, c.allowed ? 0 : 1, `${c.name}: the destination's deny counter`);
  }
  for (let i = 0; i < 100 && mesh.sink.access().filter((l) => l['reason'] === 'policy_denied').length < 8; i++) await new Promise((r) => setTimeout(r, 20));
  const denied = mesh.sink.access().filter((l) => l['reason'] === 'policy_denied');
  assert.equal(denied.filter((l) => l['direction'] === 'inbound').length, 4, 'destination logs each denial');
  assert.equal(denied.filter((l) => l['direction'] === 'outbound').length, 4, 'source sees 401 as a denial');
  const closed = await mesh.registry.getSingleMetric('istio_tcp_connections_closed_total')!.get();
  const deny = closed.values.filter((v) => v.labels['response_flags'] === 'DENY');
  assert.equal(deny.reduce((n, v) => n + v.value, 0), 8, 'denied connections carry response_flags=DENY on both reporters');
});

test('a new DENY closes a live connection; others stay up', { timeout: 30_000 }, async (t) => {
  const { mesh, a, echo } = await setup(t);
  const s = mesh.appConnect(a, { address: B_IP, port: echo.port });
  s.on('error', () => undefined);
  await new Promise<void>((resolve) => {
    s.once('connect', () => s.write('x'));
    s.once('data', () => resolve());
  });
  // The app socket is half-open capable: only a reset (not a FIN) closes it, as a denied connection must.
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  // A DENY on another port changes nothing.
  mesh.setConfig({ authorizations: [policy('other', 'DENY', { destinationPorts: [echo.port === 1 ? 2 : 1] })] });
  assert.equal(s.destroyed, false);
  assert.equal(mesh.connections.size, 1);
  mesh.setConfig({ authorizations: [policy('block', 'DENY', { principals: [{ exact: 'cluster.local/ns/frontend/sa/fe' }] })] });
  await closed;
  assert.equal(mesh.connections.size, 0);
  assert.equal(await denials(mesh, 'late_deny_match'), 1);
  for (let i = 0; i < 100 && !mesh.sink.access().some((l) => l['reason'] === 'policy_late_deny'); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(mesh.sink.access().some((l) => l['reason'] === 'policy_late_deny' && l['direction'] === 'inbound'));
  assert.ok(mesh.sink.lines.some((l) => l['msg'] === 'live connection closed by policy change' && l['reason'] === 'deny_match'));
});
