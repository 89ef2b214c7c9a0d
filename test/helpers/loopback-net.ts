/**
 * PodSockets over 127.0.0.0/8 for tests: every "pod" is one loopback address; listeners bind an
 * ephemeral port and the net remembers (ip, wanted port) → real port so dials to pod:15008 arrive.
 */
import * as net from 'node:net';
import type { PodSockets, PodConnectOptions } from '../../src/agent/proxy/sockets.js';

export class LoopbackNet {
  private readonly ports = new Map<string, number>();
  private readonly servers = new Set<net.Server>();

  /** The PodSockets of the pod whose address is `podIp` (a 127.x.y.z address). */
  pod(podIp: string): PodSockets {
    return {
      preservesSource: true,
      listen: (port, address) => this.listen(podIp, port, address),
      connect: (opts) => this.connect(podIp, opts),
    };
  }

  /** The real port behind (ip, wanted port), or the wanted port when nothing was remapped. */
  realPort(ip: string, port: number): number {
    return this.ports.get(`${ip}:${port}`) ?? port;
  }

  private async listen(podIp: string, port: number, address?: string): Promise<net.Server> {
    const ip = address && address !== '0.0.0.0' && address !== '::' ? address : podIp;
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: ip, port: 0, backlog: 2048 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const real = (server.address() as net.AddressInfo).port;
    this.ports.set(`${ip}:${port}`, real);
    this.servers.add(server);
    server.once('close', () => {
      this.servers.delete(server);
      if (this.ports.get(`${ip}:${port}`) === real) this.ports.delete(`${ip}:${port}`);
    });
    return server;
  }

  private connect(podIp: string, opts: PodConnectOptions): net.Socket {
    return net.connect({
      host: opts.address,
      port: this.realPort(opts.address, opts.port),
      localAddress: opts.localAddress ?? podIp,
      allowHalfOpen: true,
    });
  }

  /** Closes every listener still open (tests call this from t.after). */
  closeAll(): void {
    for (const s of this.servers) s.close();
  }
}

// ---------------------------------------------------------------------------------------------
// A whole loopback mesh for data-path tests: pods as 127.x addresses, real TLS from a test CA,
// the real OutboundProxy / TunnelPool / InboundHbone / InboundPlaintext classes.

import { Writable } from 'node:stream';
import { createTestCa, type TestCa } from './test-ca.js';
import { createLogger, type Logger } from '../../src/shared/log.js';
import { createRegistry } from '../../src/shared/metrics.js';
import type { Authorization, Service, Workload } from '../../src/shared/model.js';
import { WorkloadIndex, workloadIdentity, type ConfigSnapshot } from '../../src/shared/state/workloads.js';
import { createProxyMetrics, type ProxyMetrics } from '../../src/agent/proxy/metrics.js';
import { ConnectionRegistry } from '../../src/agent/proxy/connections.js';
import { TunnelPool, type TunnelPoolOptions } from '../../src/shared/hbone/pool.js';
import { InboundHbone, type InboundHboneOptions } from '../../src/agent/proxy/inbound.js';
import { InboundPlaintext } from '../../src/agent/proxy/inbound-plaintext.js';
import { OutboundProxy } from '../../src/agent/proxy/outbound.js';
import { LoadBalancer } from '../../src/shared/balancer.js';
import type { Address } from '../../src/shared/address.js';
import type { TunnelCertificate } from '../../src/shared/hbone/tunnel.js';
import type { Registry } from 'prom-client';
import type { TestContext } from 'node:test';
import { startEchoServer, type EchoServer } from './echo.js';

/** Collects pino lines as parsed objects. */
export class LogSink extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) this.lines.push(JSON.parse(l) as Record<string, unknown>);
    cb();
  }
  access(): Array<Record<string, unknown>> {
    return this.lines.filter((l) => l['scope'] === 'access');
  }
}

export function testWorkload(p: Partial<Workload> & { name: string; namespace: string; ip: string }): Workload {
  return {
    uid: `Kubernetes//v1/Pod/${p.namespace}/${p.name}`,
    serviceAccount: p.serviceAccount ?? p.name,
    trustDomain: 'cluster.local',
    node: 'node1',
    addresses: [p.ip],
    tunnelProtocol: 'HBONE',
    canonicalName: p.name,
    canonicalRevision: 'v1',
    workloadName: p.name,
    workloadType: 'deployment',
    labels: { app: p.name, version: 'v1' },
    services: {},
    status: 'Healthy',
    authorizationPolicies: [],
    peerAuthentication: 'PERMISSIVE',
    portPeerAuthentication: {},
    ...p,
  };
}

export interface MeshPod {
  workload: Workload;
  ip: string;
  outbound: OutboundProxy;
  pool: TunnelPool;
  inbound: InboundHbone;
  plaintext: InboundPlaintext;
}

export interface LoopbackMesh {
  net: LoopbackNet;
  ca: TestCa;
  registry: Registry;
  metrics: ProxyMetrics;
  sink: LogSink;
  log: Logger;
  connections: ConnectionRegistry;
  index(): WorkloadIndex;
  /** Replaces the config and re-evaluates live connections, as the agent does. */
  setConfig(next: Partial<{ workloads: Workload[]; services: Service[]; authorizations: Authorization[] }>): void;
  addPod(
    w: Workload,
    opts?: {
      plaintextOriginalDst?: (s: import('node:net').Socket) => Address | undefined;
      pool?: Partial<TunnelPoolOptions>;
      inbound?: Partial<InboundHboneOptions>;
      /** The pod's outbound hands connections to pods of this mesh in-process (the agent's same-node fast path). */
      sameNode?: boolean;
    },
  ): Promise<MeshPod>;
  /** An app socket in pod `from` connecting to `dst` through the pod's outbound capture listener. */
  appConnect(from: MeshPod, dst: Address, localAddress?: string): import('node:net').Socket;
  certFor(identity: string): TunnelCertificate;
  close(): Promise<void>;
}

export async function createLoopbackMesh(): Promise<LoopbackMesh> {
  const loop = new LoopbackNet();
  const ca = createTestCa();
  const registry = createRegistry();
  const metrics = createProxyMetrics(registry);
  const sink = new LogSink();
  const log = createLogger({ level: (process.env['AMBIT_TEST_LOG_LEVEL'] as 'info' | undefined) ?? 'info', destination: sink as unknown as import('pino').DestinationStream });
  const connections = new ConnectionRegistry(log, metrics);
  const certs = new Map<string, TunnelCertificate>();
  const certFor = (identity: string): TunnelCertificate => {
    let c = certs.get(identity);
    if (!c) {
      const issued = ca.issue(identity);
      c = { identity, certChainPem: issued.certChainPem, keyPem: issued.keyPem, rootsPem: [ca.rootPem] };
      certs.set(identity, c);
    }
    return c;
  };
  let workloads: Workload[] = [];
  let services: Service[] = [];
  let authorizations: Authorization[] = [];
  let index = new WorkloadIndex(emptyMaps(), 'node1');
  const rebuild = (): void => {
    const snap: ConfigSnapshot = {
      workloads: new Map(workloads.map((w) => [w.uid, w])),
      services: new Map(services.map((s) => [`${s.namespace}/${s.hostname}`, s])),
      authorizations: new Map(authorizations.map((a) => [`${a.namespace}/${a.name}`, a])),
    };
    index = new WorkloadIndex(snap, 'node1');
  };
  const pods: MeshPod[] = [];
  const waiting = new Map<string, { dst?: Address; resolve?: (a: Address) => void }>();
  const balancer = new LoadBalancer();

  return {
    net: loop,
    ca,
    registry,
    metrics,
    sink,
    log,
    connections,
    index: () => index,
    certFor,
    setConfig(next) {
      if (next.workloads) workloads = next.workloads;
      if (next.services) services = next.services;
      if (next.authorizations) authorizations = next.authorizations;
      rebuild();
      connections.reevaluate(index);
    },
    async addPod(w, opts = {}) {
      workloads = [...workloads.filter((x) => x.uid !== w.uid), w];
      rebuild();
      const ip = w.addresses[0]!;
      const sockets = loop.pod(ip);
      const pool = new TunnelPool({
        log,
        metrics,
        connectTcp: (a) => sockets.connect(a),
        getCertificate: async (id) => certFor(id),
        ...opts.pool,
      });
      const outbound = new OutboundProxy({
        pod: w,
        sockets,
        pool,
        index: () => index,
        nodeName: 'node1',
        metrics,
        log,
        pickEndpoint: (svc, _port, cands, src) => balancer.pick(svc, cands, src),
        reportEndpoint: (e, ok) => (ok ? balancer.reportSuccess(e) : balancer.reportFailure(e)),
        originalDestination: (s) => {
          const key = `${s.remoteAddress}|${s.remotePort}`;
          const entry = waiting.get(key);
          if (entry?.dst) {
            waiting.delete(key);
            return entry.dst;
          }
          return new Promise<Address>((resolve) => waiting.set(key, { resolve }));
        },
        ...(opts.sameNode ? { sameNodeInbound: (dst: Workload) => pods.find((p) => p.workload.uid === dst.uid)?.inbound } : {}),
      });
      const inbound = new InboundHbone({ pod: w, sockets, index: () => index, getCertificate: async () => certFor(workloadIdentity(w)), metrics, log, connections, ...opts.inbound });
      const plaintext = new InboundPlaintext({
        pod: w,
        sockets,
        index: () => index,
        metrics,
        log,
        connections,
        ...(opts.plaintextOriginalDst ? { originalDestination: opts.plaintextOriginalDst } : {}),
      });
      await Promise.all([outbound.start(), inbound.start(), plaintext.start()]);
      const pod = { workload: w, ip, outbound, pool, inbound, plaintext };
      pods.push(pod);
      return pod;
    },
    appConnect(from, dst, localAddress) {
      const s = net.connect({
        host: from.ip,
        port: loop.realPort(from.ip, 15001),
        localAddress: localAddress ?? from.ip,
        allowHalfOpen: true,
      });
      s.once('connect', () => {
        const key = `${s.localAddress}|${s.localPort}`;
        const entry = waiting.get(key);
        if (entry?.resolve) {
          waiting.delete(key);
          entry.resolve(dst);
        } else waiting.set(key, { dst });
      });
      return s;
    },
    async close() {
      for (const p of pods) {
        p.outbound.destroy();
        p.inbound.destroy();
        p.plaintext.destroy();
        p.pool.destroy();
      }
      loop.closeAll();
    },
  };
}

function emptyMaps(): ConfigSnapshot {
  return { workloads: new Map(), services: new Map(), authorizations: new Map() };
}

/** A loopback mesh with a client pod (frontend/fe at `base`1) and a server pod (backend/be at `base`2) in front of an echo app. */
export interface TwoPodMesh {
  mesh: LoopbackMesh;
  a: MeshPod;
  b: MeshPod;
  echo: EchoServer;
  wa: Workload;
  wb: Workload;
}

/** Builds a TwoPodMesh; `t.after` closes it. */
export async function twoPodMesh(t: TestContext, base: string): Promise<TwoPodMesh> {
  const mesh = await createLoopbackMesh();
  const echo = await startEchoServer(base + '2');
  const wa = testWorkload({ name: 'client', namespace: 'frontend', ip: base + '1', serviceAccount: 'fe' });
  const wb = testWorkload({ name: 'server', namespace: 'backend', ip: base + '2', serviceAccount: 'be' });
  const a = await mesh.addPod(wa);
  const b = await mesh.addPod(wb, { plaintextOriginalDst: () => ({ address: base + '2', port: echo.port }) });
  t.after(async () => {
    await mesh.close();
    await echo.close();
  });
  return { mesh, a, b, echo, wa, wb };
}
