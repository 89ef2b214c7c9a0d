/**
 * The shell every per-pod proxy listener shares (outbound 15001, inbound HBONE 15008, inbound
 * plaintext 15006): listen inside the pod on v4 (and best-effort v6), log accept errors without
 * dying, hand each accepted socket to the proxy's handler (a failed handler is logged and the
 * socket reset), and track the sockets and pipes it owns so close(deadline) drains and destroy()
 * tears them down. The proxies keep only their per-connection decisions.
 */
import type * as net from 'node:net';
import type { Logger } from '../../shared/log.js';
import type { Workload } from '../../shared/model.js';
import { drain } from '../../shared/drain.js';
import { abort, type CopyHandle } from '../../shared/hbone/copy.js';
import { logAcceptError, type PodListenOptions, type PodSockets } from './sockets.js';
import { agentPortSet } from './self-call.js';

export interface PodListenerOptions {
  sockets: PodSockets;
  port: number;
  /** Address inside the pod; default all addresses. */
  address?: string | undefined;
  /** A second, IPv6 listener; best effort (a pod without IPv6 has none, logged at warn). */
  address6?: string | undefined;
  listenOptions?: PodListenOptions;
  log: Logger;
  /** Handles one accepted socket. A throw or rejection is logged at error and the socket reset. */
  onConnection: (socket: net.Socket) => void | Promise<void>;
}

export class PodListener {
  private server: net.Server | undefined;
  private server6: net.Server | undefined;
  /** Accepted sockets not yet piped (deciding, dialing upstream). */
  readonly pending = new Set<net.Socket>();
  /** Established pipes. */
  readonly pipes = new Set<CopyHandle>();

  constructor(private readonly opts: PodListenerOptions) {}

  async start(): Promise<void> {
    const { sockets, port, log } = this.opts;
    this.server = await sockets.listen(port, this.opts.address, this.opts.listenOptions);
    this.serve(this.server);
    if (this.opts.address6 !== undefined) {
      try {
        this.server6 = await sockets.listen(port, this.opts.address6, this.opts.listenOptions);
        this.serve(this.server6);
      } catch (e) {
        log.warn({ err: e, addr: this.opts.address6 }, 'no IPv6 listener; IPv6 connects of the pod are refused');
      }
    }
    log.info({ addr: this.address(), ...(this.server6 ? { addr6: this.server6.address() } : {}) }, 'listener established');
  }

  private serve(server: net.Server): void {
    server.on('error', (e) => logAcceptError(this.opts.log, e));
    server.on('connection', (s: net.Socket) => {
      let outcome: void | Promise<void>;
      try {
        outcome = this.opts.onConnection(s);
      } catch (e) {
        return this.failed(s, e);
      }
      if (outcome) outcome.catch((e: unknown) => this.failed(s, e));
    });
  }

  private failed(s: net.Socket, e: unknown): void {
    this.opts.log.error({ err: e }, 'connection handler failed');
    abort(s);
  }

  /** The IPv4 listening server (its fd goes to capture.enroll). */
  listener(): net.Server | undefined {
    return this.server;
  }

  address(): net.AddressInfo | undefined {
    return (this.server?.address() as net.AddressInfo | null) ?? undefined;
  }

  hasIpv6(): boolean {
    return this.server6 !== undefined;
  }

  get active(): number {
    return this.pipes.size + this.pending.size;
  }

  /** Stops accepting; established connections stay. */
  stopListening(): void {
    this.server?.close();
    this.server6?.close();
  }

  /**
   * Stops accepting, then waits for `settled` (default: no pending socket and no pipe) until
   * `deadlineMs`, after which `force` (default destroy()) runs.
   */
  async close(deadlineMs: number, o: { settled?: () => Promise<void>; force?: () => void } = {}): Promise<void> {
    const servers = [this.server, this.server6].filter((s): s is net.Server => s !== undefined);
    await drain(
      async () => {
        await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
        if (o.settled) await o.settled();
        else while (this.active > 0) await new Promise((r) => setTimeout(r, 50));
      },
      o.force ?? (() => this.destroy()),
      deadlineMs,
    );
  }

  /** Stops accepting and resets every pending socket and pipe. */
  destroy(): void {
    this.stopListening();
    for (const s of this.pending) abort(s);
    for (const p of this.pipes) p.destroy();
  }
}

/** What every per-pod proxy is given about its listener. */
export interface PodProxyOptions {
  pod: Pick<Workload, 'namespace' | 'name'>;
  sockets: PodSockets;
  log: Logger;
  /** Default: the proxy's standard port. */
  port?: number;
  listenAddress?: string;
  /** Ports the agent listens on inside pods (self-call.ts); default the standard three plus `port`. */
  agentPorts?: ReadonlySet<number>;
}

/**
 * A per-pod proxy: its logger (component and pod), its PodListener, the agent's own ports it must
 * never dial, and the listener verbs the data path calls. Subclasses supply the per-connection
 * decision (onConnection) and may widen start/close/destroy.
 */
export abstract class PodProxy {
  protected readonly log: Logger;
  protected readonly shell: PodListener;
  protected readonly agentPorts: ReadonlySet<number>;

  protected constructor(o: PodProxyOptions, component: string, defaultPort: number, extra: Pick<PodListenerOptions, 'address6' | 'listenOptions'> = {}) {
    this.log = o.log.child({ component, pod: `${o.pod.namespace}/${o.pod.name}` });
    this.agentPorts = o.agentPorts ?? agentPortSet([o.port]);
    this.shell = new PodListener({ sockets: o.sockets, port: o.port ?? defaultPort, address: o.listenAddress, ...extra, log: this.log, onConnection: (s) => this.onConnection(s) });
  }

  /** Handles one accepted socket (PodListener resets it when this throws or rejects). */
  protected abstract onConnection(socket: net.Socket): void | Promise<void>;

  /** The listening server (its fd goes to capture.enroll for the inbound listener). */
  listener(): net.Server | undefined {
    return this.shell.listener();
  }

  address(): net.AddressInfo | undefined {
    return this.shell.address();
  }

  start(): Promise<void> {
    return this.shell.start();
  }

  /** Stops accepting; established connections stay (unenroll keeps them). */
  stopListening(): void {
    this.shell.stopListening();
  }

  close(deadlineMs: number): Promise<void> {
    return this.shell.close(deadlineMs);
  }

  destroy(): void {
    this.shell.destroy();
  }
}
