/**
 * The local "kubelet": runs each pod's containers as host processes inside the pod's netns and in the
 * mesh cgroup, restarts them per restartPolicy, and reports readiness (declared ports listening,
 * read from /proc/<pid>/net/tcp of the container itself, so no probe traffic is needed).
 * Invariants: a pod's processes are tracked by pid; stop() signals the process group, then kills.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../shared/log.js';
import { podCommand } from './exec.js';
import type { KubeObject } from '../controller/objects.js';

export interface ContainerSpec {
  name: string;
  command: string[];
  env: Record<string, string>;
  ports: number[];
  workingDir?: string;
}

export interface RunningContainer {
  spec: ContainerSpec;
  child?: ChildProcess;
  pid?: number;
  restarts: number;
  exitCode?: number;
  stopped: boolean;
  timer?: NodeJS.Timeout;
}

export interface PodProcessOptions {
  key: string;
  netns: string;
  podIp: string;
  nodeName: string;
  cgroupProcs: string;
  logDir: string;
  restartPolicy: 'Always' | 'OnFailure' | 'Never';
  containers: ContainerSpec[];
  pathPrefix: string[];
  cwd: string;
  log: Logger;
  onChange: () => void;
}

/** Reads containers from a Pod object (command + args; env values and common fieldRefs). */
export function containersOf(pod: KubeObject, podIp: string, nodeName: string): ContainerSpec[] {
  const spec = (pod.spec ?? {}) as Record<string, unknown>;
  const list = Array.isArray(spec.containers) ? (spec.containers as Array<Record<string, unknown>>) : [];
  return list.map((c) => {
    const env: Record<string, string> = {
      POD_NAME: pod.metadata.name,
      POD_NAMESPACE: pod.metadata.namespace ?? 'default',
      POD_IP: podIp,
      NODE_NAME: nodeName,
      HOSTNAME: pod.metadata.name,
    };
    for (const e of (Array.isArray(c.env) ? c.env : []) as Array<Record<string, unknown>>) {
      const name = String(e.name ?? '');
      if (!name) continue;
      if (typeof e.value === 'string') env[name] = e.value;
      const ref = (e.valueFrom as Record<string, Record<string, unknown>> | undefined)?.fieldRef?.fieldPath;
      if (typeof ref === 'string') env[name] = fieldRef(ref, pod, podIp, nodeName);
    }
    const ports = new Set<number>();
    for (const p of (Array.isArray(c.ports) ? c.ports : []) as Array<Record<string, unknown>>) {
      if (typeof p.containerPort === 'number') ports.add(p.containerPort);
    }
    const probe = c.readinessProbe as Record<string, Record<string, unknown>> | undefined;
    const probePort = probe?.tcpSocket?.port ?? probe?.httpGet?.port;
    if (typeof probePort === 'number') ports.add(probePort);
    const command = [...((c.command as string[] | undefined) ?? []), ...((c.args as string[] | undefined) ?? [])].map(String);
    return {
      name: String(c.name ?? 'main'),
      command,
      env,
      ports: [...ports],
      ...(typeof c.workingDir === 'string' ? { workingDir: c.workingDir } : {}),
    };
  });
}

function fieldRef(path: string, pod: KubeObject, podIp: string, nodeName: string): string {
  switch (path) {
    case 'metadata.name':
      return pod.metadata.name;
    case 'metadata.namespace':
      return pod.metadata.namespace ?? 'default';
    case 'status.podIP':
      return podIp;
    case 'spec.nodeName':
      return nodeName;
    case 'spec.serviceAccountName':
      return String((pod.spec as Record<string, unknown> | undefined)?.serviceAccountName ?? 'default');
    default: {
      const m = /^metadata\.labels\['(.+)'\]$/.exec(path);
      return m ? (pod.metadata.labels?.[m[1]!] ?? '') : '';
    }
  }
}

/** TCP ports in LISTEN state in the netns of `pid` (from /proc/<pid>/net/tcp and tcp6). */
export function listeningPorts(pid: number): Set<number> {
  const ports = new Set<number>();
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 3 && f[3] === '0A') ports.add(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

/** The processes of one pod. */
export class PodProcesses {
  readonly containers: RunningContainer[];
  private closed = false;
  private readonly logs: WriteStream[] = [];

  constructor(private readonly opts: PodProcessOptions) {
    this.containers = opts.containers.map((spec) => ({ spec, restarts: 0, stopped: false }));
  }

  start(): void {
    for (const c of this.containers) this.launch(c);
  }

  private launch(c: RunningContainer): void {
    if (this.closed) return;
    const o = this.opts;
    const logFile = createWriteStream(join(o.logDir, `${o.key.replace('/', '_')}_${c.spec.name}.log`), { flags: 'a' });
    this.logs.push(logFile);
    if (c.spec.command.length === 0) {
      c.exitCode = 127;
      logFile.write(`container ${c.spec.name} has no command\n`);
      return;
    }
    const env = { ...process.env, ...c.spec.env, PATH: [...o.pathPrefix, process.env.PATH ?? '/usr/bin:/bin'].join(':') };
    const [sh, argv] = podCommand(o.cgroupProcs, o.netns, c.spec.command);
    const child = spawn(sh, argv, {
      cwd: c.spec.workingDir ?? o.cwd,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.pipe(logFile, { end: false });
    child.stderr?.pipe(logFile, { end: false });
    c.child = child;
    if (child.pid !== undefined) c.pid = child.pid;
    delete c.exitCode;
    child.on('error', (err) => {
      logFile.write(`cannot start: ${err.message}\n`);
    });
    child.on('exit', (code, signal) => {
      c.exitCode = code ?? (signal ? 128 : 1);
      delete c.pid;
      delete c.child;
      o.log.info({ pod: o.key, container: c.spec.name, exitCode: c.exitCode }, 'container exited');
      const again = !this.closed && !c.stopped && (o.restartPolicy === 'Always' || (o.restartPolicy === 'OnFailure' && c.exitCode !== 0));
      if (again) {
        const waitMs = Math.min(10_000, 500 * 2 ** Math.min(c.restarts, 5));
        c.restarts++;
        c.timer = setTimeout(() => this.launch(c), waitMs);
      }
      o.onChange();
    });
    o.onChange();
  }

  /** Ready when every container runs and listens on each port it declared. */
  ready(): boolean {
    return this.containers.every((c) => {
      if (c.pid === undefined) return false;
      if (c.spec.ports.length === 0) return true;
      const listening = listeningPorts(c.pid);
      return c.spec.ports.every((p) => listening.has(p));
    });
  }

  phase(): 'Pending' | 'Running' | 'Succeeded' | 'Failed' {
    if (this.containers.some((c) => c.pid !== undefined)) return 'Running';
    if (this.containers.every((c) => c.exitCode === 0)) return 'Succeeded';
    if (this.containers.every((c) => c.exitCode !== undefined) && this.opts.restartPolicy === 'Never') return 'Failed';
    return 'Pending';
  }

  pids(): number[] {
    return this.containers.flatMap((c) => (c.pid === undefined ? [] : [c.pid]));
  }

  /** SIGTERM to each container's process group, SIGKILL after `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    this.closed = true;
    const waits: Promise<void>[] = [];
    for (const c of this.containers) {
      c.stopped = true;
      if (c.timer) clearTimeout(c.timer);
      const child = c.child;
      const pid = c.pid;
      if (!child || pid === undefined) continue;
      waits.push(
        new Promise<void>((resolve) => {
          const kill = setTimeout(() => signal(pid, 'SIGKILL'), graceMs);
          child.once('exit', () => {
            clearTimeout(kill);
            resolve();
          });
          signal(pid, 'SIGTERM');
        }),
      );
    }
    await Promise.all(waits);
    for (const l of this.logs) l.end();
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}
