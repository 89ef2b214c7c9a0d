/** Runs a CNI plugin executable as a container runtime does (CNI spec 1.0): CNI_* variables, config on stdin. */
import { execFile } from 'node:child_process';

export interface CniRun {
  code: number;
  /** stdout parsed (a result or an error object), undefined when empty or not JSON. */
  json: Record<string, unknown> | undefined;
  stdout: string;
  stderr: string;
}

export interface CniCall {
  command: 'ADD' | 'CHECK' | 'DEL' | 'VERSION' | string;
  namespace: string;
  name: string;
  netns: string;
  podUid: string;
  /** CNI_PATH (where chained plugins live). */
  cniPath: string;
  /** The network config with cniVersion, name and prevResult: written to stdin. */
  config: Record<string, unknown>;
}

/** `file args...` in a minimal environment (the sandbox id is `sandbox-<name>`); never rejects. */
export function execCniPlugin(file: string, args: string[], call: CniCall): Promise<CniRun> {
  const vars: Record<string, string> = {
    PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: `sandbox-${call.name}`,
    CNI_NETNS: call.netns,
    CNI_IFNAME: 'eth0',
    CNI_PATH: call.cniPath,
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${call.namespace};K8S_POD_NAME=${call.name};K8S_POD_INFRA_CONTAINER_ID=sandbox-${call.name};K8S_POD_UID=${call.podUid}`,
  };
  return new Promise((resolve) => {
    const child = execFile(file, args, { env: vars, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code ?? 1) : 0;
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code: typeof code === 'number' ? code : 1, json, stdout, stderr });
    });
    child.stdin!.end(JSON.stringify(call.config));
  });
}
