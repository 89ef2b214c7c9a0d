/**
 * The agent's answers to the CNI plugin: a sandbox's pod is named by its workload uid (the
 * controller's naming, with this agent's cluster id), ADD holds the pod's traffic in its netns
 * until the config enrolls it (Agent.preparePod), CHECK confirms that, DEL lets the pod go.
 */
import type { CniPod, CniPodRef } from '../../shared/cni-handoff.js';
import type { Logger } from '../../shared/log.js';
import { podWorkloadUid, type Agent } from '../agent.js';
import type { CniHandler } from './server.js';

export interface AgentCniHandlerOptions {
  agent: Pick<Agent, 'preparePod' | 'checkPod' | 'releasePod'>;
  /** AMBIT_CLUSTER_ID: the first part of every workload uid. */
  clusterId: string;
  log: Logger;
}

/** CniHandler over an Agent. */
export function createAgentCniHandler(opts: AgentCniHandlerOptions): CniHandler {
  const log = opts.log.child({ component: 'cni-handler' });
  const uidOf = (pod: CniPodRef): string => podWorkloadUid(opts.clusterId, pod.podNamespace, pod.podName);
  return {
    async add(pod: CniPod): Promise<void> {
      const uid = uidOf(pod);
      await opts.agent.preparePod({ uid, netnsPath: pod.netns, containerId: pod.containerId, ...(pod.podUid ? { podUid: pod.podUid } : {}) });
      log.info({ uid, netns: pod.netns, containerId: pod.containerId, ips: pod.ips.map((i) => i.address) }, 'pod handed over by the cni; its traffic is held until it is enrolled');
    },
    async check(pod: CniPod): Promise<void> {
      await opts.agent.checkPod({ uid: uidOf(pod), netnsPath: pod.netns });
    },
    async del(pod: CniPodRef): Promise<void> {
      const uid = uidOf(pod);
      await opts.agent.releasePod(uid, { containerId: pod.containerId });
      log.info({ uid, containerId: pod.containerId }, 'pod sandbox deleted; released');
    },
  };
}
