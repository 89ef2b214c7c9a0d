import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Registry } from 'prom-client';
import { CertificateAuthority } from '../../../src/controller/ca/authority.js';
import { buildCsr } from '../../../src/shared/certs/csr.js';
import { CertManager, refreshAt, type TimerHandle } from '../../../src/shared/certs/cert-manager.js';
import type { CertificateFetcher } from '../../../src/shared/certs/ca-client.js';
import { isAmbitError } from '../../../src/shared/errors.js';

const TD = 'cluster.local';
const ID = `spiffe://${TD}/ns/default/sa/web`;
const HOUR = 3_600_000;

// Pre-generated keys so each fetch is instant and deterministic in time.
const KEYS = Array.from({ length: 3 }, () =>
  generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } }),
);

interface FakeTimer { fn: () => void; ms: number; cancelled: boolean }

function harness(opts: { random?: () => number } = {}) {
  let t = Date.UTC(2030, 5, 1);
  const clock = { now: () => t, advance: (ms: number) => (t += ms) };
  const ca = CertificateAuthority.generate({ trustDomain: TD, now: clock.now });
  const timers: FakeTimer[] = [];
  let fail = 0;
  let gate: Promise<void> | undefined;
  const calls: Array<{ id: string; ttlSec: number }> = [];
  let keyIdx = 0;
  const fetcher: CertificateFetcher & { wrongIdentity?: boolean } = {
    async fetchCertificate(id, csrPem, ttlSec) {
      calls.push({ id, ttlSec });
      if (gate) await gate;
      if (fail > 0) {
        fail--;
        throw new Error('ca unavailable');
      }
      const signAs = fetcher.wrongIdentity ? `spiffe://${TD}/ns/default/sa/other` : id;
      const csr = fetcher.wrongIdentity ? buildCsr(signAs, KEYS[0]!.privateKey, KEYS[0]!.publicKey) : csrPem;
      return ca.signCsr(csr, { identity: signAs, ttlMs: ttlSec * 1000 });
    },
  };
  const registry = new Registry();
  const mgr = new CertManager({
    fetcher,
    rootsPem: [ca.rootCertPem],
    ttlSec: 3600,
    registry,
    now: clock.now,
    random: opts.random ?? (() => 0.5),
    setTimer(fn, ms): TimerHandle {
      const timer = { fn, ms, cancelled: false };
      timers.push(timer);
      return { cancel: () => void (timer.cancelled = true) };
    },
    async createKeyAndCsr(id) {
      const k = KEYS[keyIdx++ % KEYS.length]!;
      return { keyPem: k.privateKey, csrPem: buildCsr(id, k.privateKey, k.publicKey) };
    },
  });
  const pending = () => timers.filter((x) => !x.cancelled);
  /** Fires the only pending timer (asserts there is exactly one). */
  const fire = () => {
    const p = pending();
    assert.equal(p.length, 1, 'exactly one timer pending');
    p[0]!.cancelled = true;
    p[0]!.fn();
  };
  const settle = async (cond: () => boolean) => {
    for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setImmediate(r));
    assert.ok(cond(), 'condition reached');
  };
  const metric = async (name: string) => (await registry.getSingleMetric(name)!.get()).values[0]?.value;
  return {
    clock, ca, mgr, calls, pending, fire, settle, metric, fetcher,
    failNext: (n: number) => void (fail = n),
    hold: () => {
      let release!: () => void;
      gate = new Promise<void>((r) => (release = r));
      return () => { gate = undefined; release(); };
    },
    state: () => mgr.status()[0]?.state,
  };
}

test('refreshAt is the half-life point', () => {
  assert.equal(refreshAt({ notBefore: new Date(1000), notAfter: new Date(3000) }), 2000);
});

test('concurrent callers share one fetch and get the same certificate', async (t) => {
  const h = harness();
  t.after(() => h.mgr.destroy());
  const [a, b, c] = await Promise.all([h.mgr.getCertificate(ID), h.mgr.getCertificate(ID), h.mgr.getCertificate(ID)]);
  assert.equal(h.calls.length, 1);
  assert.equal(a, b);
  assert.equal(b, c);
  assert.equal(a.identity, ID);
  assert.deepEqual(a.rootsPem, [h.ca.rootCertPem]);
  assert.equal(a.notAfter.getTime(), h.clock.now() + HOUR);
  assert.equal(h.calls[0]!.ttlSec, 3600);
  assert.equal(await h.metric('ambit_cert_expiry_seconds'), 3600);
});

test('renews at half life and keeps serving the old certificate until the new one is in hand', async (t) => {
  const h = harness();
  t.after(() => h.mgr.destroy());
  const first = await h.mgr.getCertificate(ID);
  const [timer] = h.pending();
  assert.equal(h.clock.now() + timer!.ms, refreshAt(first), 'renewal armed at half life');
  h.clock.advance(timer!.ms);
  const release = h.hold();
  h.fire();
  assert.equal(h.state(), 'renewing');
  assert.equal(await h.mgr.getCertificate(ID), first, 'old cert served while renewing');
  release();
  await h.settle(() => h.state() === 'valid');
  const second = await h.mgr.getCertificate(ID);
  assert.notEqual(second, first);
  assert.ok(second.notAfter > first.notAfter);
  assert.equal(h.calls.length, 2);
  assert.equal(await h.metric('ambit_cert_rotations_total'), 1);
  assert.equal(h.pending().length, 1, 'next renewal armed');
});

test('failed renewal backs off with growing jittered delays capped at 150 s, keeping the old cert', async (t) => {
  const h = harness({ random: () => 1 });
  t.after(() => h.mgr.destroy());
  const first = await h.mgr.getCertificate(ID);
  h.clock.advance(h.pending()[0]!.ms);
  h.failNext(12);
  const delays: number[] = [];
  for (let i = 0; i < 10; i++) {
    h.fire();
    await h.settle(() => h.state() === 'backoff');
    assert.equal(await h.mgr.getCertificate(ID), first, 'old cert still served');
    delays.push(h.pending()[0]!.ms);
    h.clock.advance(h.pending()[0]!.ms); // 10 retries add up to 555 s: still inside the old cert's life
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 150000, 150000]);
  assert.equal(await h.metric('ambit_cert_fetch_failures_total'), 10);
  assert.equal(h.mgr.status()[0]!.failures, 10);
  h.failNext(0);
  h.fire();
  await h.settle(() => h.state() === 'valid');
  assert.notEqual(await h.mgr.getCertificate(ID), first);
  assert.equal(h.mgr.status()[0]!.failures, 0, 'failure count resets on success');
  assert.equal(await h.metric('ambit_cert_rotations_total'), 1);
});

test('jitter: with random 0 the first retry waits half the base delay', async (t) => {
  const h = harness({ random: () => 0 });
  t.after(() => h.mgr.destroy());
  h.failNext(1);
  await assert.rejects(h.mgr.getCertificate(ID), (e) => isAmbitError(e, 'AMBIT_ERR_CERT_UNAVAILABLE'));
  assert.equal(h.state(), 'backoff');
  assert.equal(h.pending()[0]!.ms, 500);
});

test('once the old certificate expired and the CA fails, callers get AMBIT_ERR_CERT_UNAVAILABLE', async (t) => {
  const h = harness();
  t.after(() => h.mgr.destroy());
  await h.mgr.getCertificate(ID);
  h.clock.advance(2 * HOUR);
  h.failNext(1);
  await assert.rejects(h.mgr.getCertificate(ID), (e) => isAmbitError(e, 'AMBIT_ERR_CERT_UNAVAILABLE') && e.message.includes(ID));
  // A later call fetches again right away (a connection needs it) and succeeds.
  const cert = await h.mgr.getCertificate(ID);
  assert.ok(cert.notAfter.getTime() > h.clock.now());
});

test('a timer that wakes before the due time re-arms instead of renewing', async (t) => {
  const h = harness();
  t.after(() => h.mgr.destroy());
  await h.mgr.getCertificate(ID);
  const due = h.clock.now() + h.pending()[0]!.ms;
  h.clock.advance(1000);
  h.fire();
  assert.equal(h.calls.length, 1, 'no early renewal');
  assert.equal(h.clock.now() + h.pending()[0]!.ms, due);
});

test('a certificate for another identity is refused and counted as a failure', async (t) => {
  const h = harness();
  t.after(() => h.mgr.destroy());
  h.fetcher.wrongIdentity = true;
  await assert.rejects(h.mgr.getCertificate(ID), (e) => isAmbitError(e, 'AMBIT_ERR_CERT_UNAVAILABLE') && /sa\/other/.test(e.message));
  assert.equal(await h.metric('ambit_cert_fetch_failures_total'), 1);
});

test('prefetch fetches in the background; forget and close cancel timers', async (t) => {
  const h = harness();
  t.after(() => h.mgr.destroy());
  const other = `spiffe://${TD}/ns/default/sa/db`;
  h.mgr.prefetch([ID, other, 'not-a-spiffe-id']);
  await h.settle(() => h.mgr.status().filter((s) => s.state === 'valid').length === 2);
  assert.equal(h.calls.length, 2);
  assert.equal(h.pending().length, 2);
  h.mgr.forget(other);
  assert.equal(h.pending().length, 1);
  assert.deepEqual(h.mgr.status().map((s) => s.identity), [ID]);
  await h.mgr.close();
  assert.equal(h.pending().length, 0);
  await assert.rejects(h.mgr.getCertificate(ID), (e) => isAmbitError(e, 'AMBIT_ERR_CERT_UNAVAILABLE'));
});

test('an invalid SPIFFE id is refused without a fetch', async (t) => {
  const h = harness();
  t.after(() => h.mgr.destroy());
  await assert.rejects(h.mgr.getCertificate('spiffe://cluster.local/web'), (e) => isAmbitError(e, 'AMBIT_ERR_SPIFFE_INVALID'));
  assert.equal(h.calls.length, 0);
});
