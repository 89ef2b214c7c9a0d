/**
 * One invocation of the plugin, from the runtime's environment and stdin to the text for stdout
 * and the exit code. The lookups and the agent call are injected, so this runs the same in the
 * executable (main.ts) and in unit tests.
 *
 * ADD fails closed: a pod that must be captured starts only after the agent said its capture is in
 * place; when the pod or its namespace cannot be read, or the agent does not answer, ADD fails
 * and the runtime retries. Pods not to capture pass through without touching the agent. DEL
 * always succeeds (the agent is told when it can be reached). Logs go to stderr (and a file),
 * never to stdout.
 */
import { isAmbitError, errorMessage, type AmbitError } from '../shared/errors.js';
import { CNI_PATH_ADD, CNI_PATH_CHECK, CNI_PATH_DEL, type CniPod, type CniPodRef } from '../shared/cni-handoff.js';
import {
  CniCode,
  cniError,
  errorResult,
  k8sArgs,
  parseCniEnv,
  parseNetConf,
  passThroughResult,
  requestedVersion,
  resultIps,
  versionResult,
  type CniEnv,
  type NetConf,
} from './protocol.js';
import { decideCapture, parsePluginSettings, triage, type NamespaceFacts, type PluginSettings, type PodFacts } from './decide.js';
import { answerError, type AgentAnswer } from './agent-client.js';
import { createPluginLog, type PluginLog } from './log.js';

/** The plugin's contacts with the world. */
export interface PluginDeps {
  /** The pod and its namespace from the API server; rejects with AMBIT_ERR_CNI_KUBE_LOOKUP. */
  lookup(settings: PluginSettings, namespace: string, name: string): Promise<{ pod: PodFacts; namespace: NamespaceFacts }>;
  /** One request to the agent's socket; never rejects. */
  callAgent(socketPath: string, path: string, body: unknown, timeoutMs: number): Promise<AgentAnswer>;
  /** Whether the sandbox's network namespace exists. */
  netnsExists(path: string): boolean;
  /** Where log lines go (stderr by default). */
  writeLog?: (line: string) => void;
}

export interface PluginOutcome {
  stdout: string;
  exitCode: number;
}

/** Plugin-specific code for an unexpected failure (a defect, not an input problem). */
const INTERNAL_ERROR = 101;

/** The CNI error code to report for `e`. */
export function cniCodeOf(e: unknown): number {
  if (!isAmbitError(e)) return INTERNAL_ERROR;
  const code = e.details?.['cniCode'];
  if (typeof code === 'number') return code;
  switch (e.code) {
    case 'AMBIT_ERR_CNI_KUBE_LOOKUP':
    case 'AMBIT_ERR_CNI_AGENT_UNREACHABLE':
      return CniCode.TRY_AGAIN_LATER;
    case 'AMBIT_ERR_CNI_AGENT_REFUSED':
      return CniCode.AGENT_REFUSED;
    case 'AMBIT_ERR_CNI_INVALID':
      return CniCode.INVALID_CONFIG;
    default:
      return INTERNAL_ERROR;
  }
}

const json = (v: unknown): string => JSON.stringify(v) + '\n';

/** Runs one invocation; never rejects. */
export async function runPlugin(env: Readonly<Record<string, string | undefined>>, stdin: string, deps: PluginDeps): Promise<PluginOutcome> {
  let version = requestedVersion(stdin);
  let log: PluginLog = createPluginLog({ level: 'info', ...(deps.writeLog ? { write: deps.writeLog } : {}) });
  let cni: CniEnv | undefined;
  try {
    cni = parseCniEnv(env);
    if (cni.command === 'VERSION') return { stdout: json(versionResult(version)), exitCode: 0 };
    const conf = parseNetConf(stdin);
    version = conf.cniVersion;
    const settings = parsePluginSettings(conf);
    const args = k8sArgs(cni.args);
    log = createPluginLog({
      level: settings.logLevel,
      ...(settings.logFile ? { file: settings.logFile } : {}),
      ...(deps.writeLog ? { write: deps.writeLog } : {}),
      bindings: { command: cni.command, containerId: cni.containerId, pod: args.podName ? `${args.podNamespace}/${args.podName}` : undefined },
    });
    switch (cni.command) {
      case 'ADD':
        await add(cni, conf, settings, deps, log);
        return { stdout: json(passThroughResult(conf)), exitCode: 0 };
      case 'CHECK':
        await check(cni, conf, settings, deps, log);
        return { stdout: '', exitCode: 0 };
      case 'DEL':
        await del(cni, settings, deps, log);
        return { stdout: '', exitCode: 0 };
      case 'STATUS':
      case 'GC':
        // STATUS: ADD works whenever the agent does, and a failing STATUS would mark the whole
        // node's network not ready; GC: the agent drops captures of pods that are gone itself.
        return { stdout: '', exitCode: 0 };
    }
  } catch (e) {
    const code = cniCodeOf(e);
    const details = isAmbitError(e) && typeof e.details?.['cniDetails'] === 'string' ? (e.details['cniDetails'] as string) : undefined;
    log.error({ cniCode: code, code: isAmbitError(e) ? e.code : undefined, err: errorMessage(e) }, 'cni command failed');
    return { stdout: json(errorResult(version, code, errorMessage(e), details)), exitCode: 1 };
  }
}

/** The pod behind an ADD or CHECK, when it is to be captured; undefined to pass it through. */
async function podToCapture(cni: CniEnv, conf: NetConf, settings: PluginSettings, deps: PluginDeps, log: PluginLog): Promise<CniPod | undefined> {
  const args = k8sArgs(cni.args);
  const t = triage(settings, args);
  if (t.action === 'pass') {
    log.debug({ reason: t.reason }, 'passing through');
    return undefined;
  }
  const { pod, namespace } = await deps.lookup(settings, t.namespace, t.name);
  const decision = decideCapture(pod, namespace, t.uid);
  if (!decision.capture) {
    log.debug({ reason: decision.reason }, 'not captured; passing through');
    return undefined;
  }
  if (!deps.netnsExists(cni.netns)) {
    throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.UNKNOWN_CONTAINER, `the pod's network namespace ${cni.netns} does not exist`);
  }
  log.debug({ reason: decision.reason }, 'pod is to be captured');
  return {
    podName: t.name,
    podNamespace: t.namespace,
    podUid: pod.metadata.uid ?? t.uid ?? '',
    containerId: cni.containerId,
    netns: cni.netns,
    ifname: cni.ifname,
    ips: resultIps(conf.prevResult),
  };
}

async function add(cni: CniEnv, conf: NetConf, settings: PluginSettings, deps: PluginDeps, log: PluginLog): Promise<void> {
  const pod = await podToCapture(cni, conf, settings, deps, log);
  if (!pod) return;
  const answer = await deps.callAgent(settings.agentSocket, CNI_PATH_ADD, pod, settings.agentTimeoutMs);
  const err: AmbitError | undefined = answerError(answer, `capture pod ${pod.podNamespace}/${pod.podName}`, settings.agentSocket);
  if (err) throw err;
  log.info({ netns: pod.netns, ips: pod.ips.map((i) => i.address) }, 'pod captured by the node agent');
}

async function check(cni: CniEnv, conf: NetConf, settings: PluginSettings, deps: PluginDeps, log: PluginLog): Promise<void> {
  if (conf.cniVersion.startsWith('0.3.')) {
    throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INCOMPATIBLE_VERSION, `CHECK is not defined for CNI version ${conf.cniVersion} (it exists from 0.4.0)`);
  }
  if (conf.prevResult === undefined) throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_CONFIG, 'CHECK needs prevResult in the network configuration');
  const pod = await podToCapture(cni, conf, settings, deps, log);
  if (!pod) return;
  const answer = await deps.callAgent(settings.agentSocket, CNI_PATH_CHECK, pod, settings.agentTimeoutMs);
  const err = answerError(answer, `confirm the capture of pod ${pod.podNamespace}/${pod.podName}`, settings.agentSocket);
  if (err) throw err;
}

async function del(cni: CniEnv, settings: PluginSettings, deps: PluginDeps, log: PluginLog): Promise<void> {
  const args = k8sArgs(cni.args);
  const t = triage(settings, args);
  if (t.action === 'pass') return;
  // No API lookup: the pod may already be deleted. The agent knows whether it captured this
  // sandbox and forgets it either way.
  const ref: CniPodRef = { podName: t.name, podNamespace: t.namespace, podUid: t.uid ?? '', containerId: cni.containerId };
  if (cni.netns !== '') ref.netns = cni.netns;
  const answer = await deps.callAgent(settings.agentSocket, CNI_PATH_DEL, ref, settings.agentTimeoutMs);
  if (answer.kind !== 'ok') {
    // DEL must succeed when things are gone; an agent that restarts reconciles from its pod watch.
    log.warn({ answer: answer.kind, err: answer.message }, 'the node agent was not told about the deleted sandbox');
  }
}
