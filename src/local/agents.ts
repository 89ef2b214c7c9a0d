/**
 * The agent supervisor of a local mesh: one `ambit-agent` process per node, in the node's network
 * namespace and the mesh cgroup (so its getsockopt hook sees the sockets it accepts), restarted
 * with capped backoff when it exits, as a DaemonSet's pod would be.
 *
 * Invariants: an agent is restarted only while neither it nor the supervisor is stopping; stop()
 * sends SIGTERM to the process group and SIGKILL after a deadline.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { AmbitError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { AGENT_NODE_FLAGS } from '../agent/process-flags.js';
import { RAISE_NOFILE, spawnLogged } from './exec.js';
import { signalGroup } from './node/containers.js';
import type { NodePlan } from './plan.js';

export interface AgentSupervisorOptions {
  repoRoot: string;
  logDir: string;
  cgroupDir: string;
  log: Logger;
  /** The environment of node `n`'s agent. */
  env: (n: NodePlan) => NodeJS.ProcessEnv;
}

interface AgentRecord {
  node: NodePlan;
  child?: ChildProcess;
  pid?: number;
  restarts: number;
  stopping: boolean;
  /** AMBIT_WORKERS for this agent, set by restart(); absent: the environment's (else the agent's default). */
  workers?: number;
}

export class AgentSupervisor {
  private readonly agents: AgentRecord[] = [];
  private closed = false;

  constructor(private readonly opts: AgentSupervisorOptions) {}

  /** Starts the agent of every node. */
  start(nodes: readonly NodePlan[]): void {
    for (const n of nodes) {
      const a: AgentRecord = { node: n, restarts: 0, stopping: false };
      this.agents.push(a);
      this.launch(a);
    }
  }

  get count(): number {
    return this.agents.length;
  }

  /** The running agent's pid of each node. */
  pids(): Map<string, number | undefined> {
    return new Map(this.agents.map((a) => [a.node.name, a.pid]));
  }

  private launch(a: AgentRecord): void {
    const o = this.opts;
    const n = a.node;
    // nsenter keeps the mount namespace, so bpffs and cgroup2 stay visible.
    const script = `${RAISE_NOFILE} echo $$ > "$1" && shift && exec nsenter --net="$@"`;
    const child = spawnLogged('sh', ['-c', script, 'sh', join(o.cgroupDir, 'cgroup.procs'), `/var/run/netns/${n.netns}`, process.execPath, ...AGENT_NODE_FLAGS, join(o.repoRoot, 'dist/src/agent/main.js')], join(o.logDir, `agent-${n.name}.log`), 0o644, {
      env: { ...o.env(n), ...(a.workers !== undefined ? { AMBIT_WORKERS: String(a.workers) } : {}) },
      detached: true,
    });
    a.child = child;
    if (child.pid !== undefined) a.pid = child.pid;
    child.on('exit', (code, signal) => {
      delete a.child;
      delete a.pid;
      if (a.stopping || this.closed) return;
      o.log.warn({ node: n.name, code, signal }, 'agent exited; restarting');
      a.restarts++;
      setTimeout(() => this.launch(a), Math.min(5000, 250 * 2 ** Math.min(a.restarts, 4))).unref();
    });
  }

  /**
   * Restarts node `name`'s agent (tests of agent restarts, the bench); resolves once the new one
   * runs. `workers` sets its AMBIT_WORKERS from now on (null: back to the default).
   */
  async restart(name: string, opts: { workers?: number | null } = {}): Promise<void> {
    const a = this.agents.find((x) => x.node.name === name);
    if (!a) throw new AmbitError('AMBIT_ERR_LOCAL_POD_NOT_FOUND', `no node named ${JSON.stringify(name)}`);
    await this.stopOne(a, 'SIGKILL');
    if (opts.workers === null) delete a.workers;
    else if (opts.workers !== undefined) a.workers = opts.workers;
    a.stopping = false;
    this.launch(a);
  }

  private stopOne(a: AgentRecord, sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    a.stopping = true;
    const child = a.child;
    if (!child || a.pid === undefined) return Promise.resolve();
    const pid = a.pid;
    return new Promise((resolve) => {
      const kill = setTimeout(() => signalGroup(pid, 'SIGKILL'), 5000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      signalGroup(pid, sig);
    });
  }

  async stop(): Promise<void> {
    this.closed = true;
    await Promise.all(this.agents.map((a) => this.stopOne(a)));
  }
}
