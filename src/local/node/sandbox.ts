/**
 * A pod's sandbox on a local node, as a container runtime makes it (containerd's RunPodSandbox /
 * StopPodSandbox): a network namespace of its own, the node's CNI chain run on it (the primary
 * plugin wires it to the node; the Ambit plugin hands enrolled pods to the node's agent and fails
 * closed), and the pod's namespaced sysctls. Teardown runs CNI DEL, then removes the namespace and
 * its /etc/netns folder; it succeeds when things are already gone.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { KubeObject } from '../../controller/objects.js';
import { errorMessage } from '../../shared/errors.js';
import { inNetns, ip } from '../exec.js';
import { NETNS_DIR, NETNS_ETC } from '../network.js';
import { CniChain, resultPodIp, type CniResult, type CniRuntime } from './cni-chain.js';

export interface Sandbox {
  /** The runtime's sandbox id (CNI_CONTAINERID); new for every attempt. */
  id: string;
  /** Name under /var/run/netns. */
  netns: string;
  podIp: string;
  result: CniResult;
  runtime: CniRuntime;
}

/** Name of a pod's netns: the mesh prefix (so cleanup finds leftovers), node and pod uid. */
export function sandboxNetnsName(prefix: string, nodeIndex: number, podUid: string): string {
  return `${prefix}-n${nodeIndex}-${podUid.replace(/-/g, '').slice(0, 12)}`;
}

export function cniRuntimeFor(pod: KubeObject, id: string, netnsPath: string): CniRuntime {
  return {
    containerId: id,
    netns: netnsPath,
    ifname: 'eth0',
    args: {
      IgnoreUnknown: '1',
      K8S_POD_NAMESPACE: pod.metadata.namespace ?? 'default',
      K8S_POD_NAME: pod.metadata.name,
      K8S_POD_INFRA_CONTAINER_ID: id,
      K8S_POD_UID: pod.metadata.uid ?? '',
    },
  };
}

/** Makes the netns and runs CNI ADD; on failure undoes what it did and rethrows. */
export async function createSandbox(pod: KubeObject, netns: string, chain: CniChain, sysctls: Array<{ name: string; value: string }>): Promise<Sandbox> {
  const id = randomBytes(32).toString('hex');
  const path = join(NETNS_DIR, netns);
  if (existsSync(path)) await ip(['netns', 'del', netns], undefined, { allowFailure: true });
  await ip(['netns', 'add', netns], undefined, { code: 'AMBIT_ERR_LOCAL_SANDBOX' });
  const runtime = cniRuntimeFor(pod, id, path);
  try {
    for (const s of sysctls) await inNetns(netns, 'sysctl', ['-qw', `${s.name}=${s.value}`], { code: 'AMBIT_ERR_LOCAL_SANDBOX' });
    const result = await chain.add(runtime);
    const podIp = resultPodIp(result);
    if (!podIp) throw new Error(`the CNI chain gave pod ${pod.metadata.namespace}/${pod.metadata.name} no IPv4 address`);
    return { id, netns, podIp, result, runtime };
  } catch (e) {
    // libcni: a failed ADD is followed by DEL, so plugins release what they took.
    await chain.del(runtime).catch(() => undefined);
    await ip(['netns', 'del', netns], undefined, { allowFailure: true });
    throw e;
  }
}

/** CNI DEL (with the ADD result), then the netns and its /etc/netns folder. Returns the DEL error, if any. */
export async function removeSandbox(s: Pick<Sandbox, 'netns' | 'runtime'> & { result?: CniResult }, chain: CniChain): Promise<string | undefined> {
  let problem: string | undefined;
  try {
    await chain.del(s.runtime, s.result);
  } catch (e) {
    problem = errorMessage(e);
  }
  await ip(['netns', 'del', s.netns], undefined, { allowFailure: true });
  await rm(join(NETNS_ETC, s.netns), { recursive: true, force: true });
  return problem;
}
