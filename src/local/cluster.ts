/**
 * A Kubernetes cluster on one machine, without the mesh: the network (a bridge and one netns per
 * node), the cgroup pods run in, the API server with Ambit's CRDs and RBAC, the controllers of a
 * control plane (Deployments, ReplicaSets, EndpointSlices, the scheduler, orphaned pods), Services
 * (kube-proxy's rules), the cluster DNS behind the kube-dns Service, and one node runtime per node
 * with its CNI chain. mesh.ts puts the agents and the controller on top of it.
 *
 * Invariants: every resource made is named with the mesh prefix (cleanup.ts finds leftovers of a
 * crash); each component acts as its own identity through the API server; stop() undoes start()
 * in reverse order and never throws.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../shared/log.js';
import { createCgroup } from './cgroup.js';
import { kubernetesServiceIp, dnsServiceIp } from './apiserver/kinds/service.js';
import { ClusterApi, CONTROLLER_MANAGER, DNS_IDENTITY, NODE_IDENTITY, PROXY_IDENTITY } from './cluster-api.js';
import { CLUSTER_DNS_PORT, ClusterDns, usableUpstreams } from './cluster-dns.js';
import { parseResolvConf } from '../shared/dns/forwarder.js';
import { DeploymentController } from './controllers/deployment.js';
import { EndpointSliceController } from './controllers/endpointslice.js';
import { PodGarbageCollector } from './controllers/pod-gc.js';
import { ReplicaSetController } from './controllers/replicaset.js';
import { Scheduler } from './controllers/scheduler.js';
import { createClusterNetwork } from './network.js';
import { nodeCniPaths, writePrimaryCni, type NodeCniPaths } from './node/cni-config.js';
import { MountPoints, MOUNTPOINTS_FILE } from './node/mountpoints.js';
import { NodeRuntime } from './node/runtime.js';
import { addressPlan, cgroupName, type NodePlan } from './plan.js';
import { ServiceProxy } from './services.js';
import { CLUSTER_DOMAIN } from './workloads.js';

export interface LocalClusterOptions {
  prefix: string;
  nodes: number;
  net: number;
  stateDir: string;
  repoRoot: string;
  /** Working folder of pod processes (where `ambit local up` ran). */
  cwd: string;
  log: Logger;
  /** Something about pods changed (settling waits on it). */
  onChange?: () => void;
  /** The resolv.conf whose nameservers the cluster DNS forwards other names to (default /etc/resolv.conf). */
  resolvConf?: string;
}

export class LocalCluster {
  readonly nodes: NodePlan[] = [];
  readonly runtimes: NodeRuntime[] = [];
  readonly cniPaths = new Map<string, NodeCniPaths>();
  api: ClusterApi | undefined;
  services: ServiceProxy | undefined;
  dns: ClusterDns | undefined;
  cgroupDir = '';
  mountPoints: MountPoints;
  private readonly stoppers: Array<() => unknown> = [];

  private constructor(readonly opts: LocalClusterOptions) {
    this.mountPoints = new MountPoints(join(opts.stateDir, MOUNTPOINTS_FILE));
  }

  /** Builds everything; on failure stops what was started and rethrows. */
  static async start(opts: LocalClusterOptions): Promise<LocalCluster> {
    const c = new LocalCluster(opts);
    try {
      await c.build();
      return c;
    } catch (e) {
      await c.stop();
      throw e;
    }
  }

  get kubeconfigPath(): string {
    return join(this.opts.stateDir, 'kubeconfig');
  }

  nodeDir(node: string): string {
    return join(this.opts.stateDir, 'nodes', node);
  }

  private async build(): Promise<void> {
    const o = this.opts;
    const log = o.log;
    await mkdir(join(o.stateDir, 'logs'), { recursive: true, mode: 0o700 });
    this.cgroupDir = await createCgroup(cgroupName(o.prefix));
    this.nodes.push(...(await createClusterNetwork(o.prefix, o.nodes, o.net)));
    const plan = addressPlan(o.net);
    const apiDir = join(o.stateDir, 'apiserver');
    await rm(apiDir, { recursive: true, force: true });
    const api = await ClusterApi.start({
      stateDir: apiDir,
      host: plan.bridgeIp,
      serviceCidr: plan.serviceNet,
      repoRoot: o.repoRoot,
      kubeconfigPath: this.kubeconfigPath,
      nodes: this.nodes.map((n) => ({ name: n.name, ip: n.ip, podCidr: n.podCidr })),
      clusterDns: { clusterIp: dnsServiceIp(plan.serviceNet), serverAddress: plan.bridgeIp },
      log,
    });
    this.api = api;
    this.stoppers.push(() => api.stop());

    const cm = await api.clientFor(CONTROLLER_MANAGER);
    const cmLog = log.child({ component: 'controller-manager' });
    for (const ctl of [new DeploymentController(cm, cmLog), new ReplicaSetController(cm, cmLog), new EndpointSliceController(cm, cmLog), new Scheduler(cm, cmLog), new PodGarbageCollector(cm, cmLog)]) {
      this.stoppers.push(() => ctl.stop());
      await ctl.start();
    }
    const services = new ServiceProxy({ client: await api.clientFor(PROXY_IDENTITY), prefix: o.prefix, nodes: this.nodes, log });
    this.services = services;
    this.stoppers.push(() => services.stop());
    await services.start();
    // The cluster DNS on the bridge address, behind kube-dns (its EndpointSlice names this address).
    const resolvConf = o.resolvConf ?? '/etc/resolv.conf';
    const resolvers = parseResolvConf(await readFile(resolvConf, 'utf8').catch(() => ''));
    const dns = new ClusterDns({
      client: await api.clientFor(DNS_IDENTITY),
      host: plan.bridgeIp,
      domain: CLUSTER_DOMAIN,
      upstreams: usableUpstreams(resolvers, { host: plan.bridgeIp, port: CLUSTER_DNS_PORT }),
      log,
    });
    this.dns = dns;
    this.stoppers.push(() => dns.stop());
    await dns.start();

    for (const n of this.nodes) {
      const dir = this.nodeDir(n.name);
      const paths = nodeCniPaths(dir);
      this.cniPaths.set(n.name, paths);
      await writePrimaryCni(paths, n, o.net, o.repoRoot, process.execPath);
    }
    for (const n of this.nodes) {
      const paths = this.cniPaths.get(n.name)!;
      const rt = new NodeRuntime({
        node: n,
        prefix: o.prefix,
        client: await api.clientFor(NODE_IDENTITY, { node: n.name }),
        dir: this.nodeDir(n.name),
        cniConfDir: paths.confDir,
        cniBinDir: paths.binDir,
        cgroupProcs: join(this.cgroupDir, 'cgroup.procs'),
        logDir: join(o.stateDir, 'logs'),
        cwd: o.cwd,
        pathPrefix: [join(o.repoRoot, 'node_modules/.bin'), join(o.repoRoot, 'bin')],
        apiService: { host: kubernetesServiceIp(plan.serviceNet), port: 443 },
        mountPoints: this.mountPoints,
        dns: { nameserver: dnsServiceIp(plan.serviceNet), domain: CLUSTER_DOMAIN },
        log,
        ...(o.onChange ? { onChange: o.onChange } : {}),
      });
      this.runtimes.push(rt);
      await rt.start();
    }
    log.info({ nodes: this.nodes.length, api: api.url }, 'local cluster ready');
  }

  /** Stops every pod of every node (containers, CNI DEL, netns), leaving the API as it is. */
  async stopNodes(): Promise<void> {
    await Promise.all(this.runtimes.map((r) => r.stop().catch((e: unknown) => this.opts.log.warn({ node: r.name, err: e }, 'node stop failed'))));
  }

  /** Stops the node runtimes (pods go first), then the rest in reverse start order. Idempotent. */
  async stop(): Promise<void> {
    await this.stopNodes();
    for (const s of this.stoppers.reverse()) {
      try {
        await s();
      } catch (e) {
        this.opts.log.warn({ err: e }, 'stop step failed');
      }
    }
    this.stoppers.length = 0;
    await this.mountPoints.removeAll();
  }
}
