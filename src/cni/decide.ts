/**
 * What the plugin decides, as pure functions: its settings from the network configuration,
 * whether an invocation concerns a pod at all, and whether that pod is to be captured (Istio's
 * enrollment rules: namespace or pod label istio.io/dataplane-mode=ambient, pod label `none`
 * opts out, hostNetwork and sidecar-injected pods never).
 */
import { tryParseDuration } from '../shared/duration.js';
import { DEFAULT_CNI_SOCKET } from '../shared/cni-handoff.js';
import { cniError, CniCode, type K8sArgs, type NetConf } from './protocol.js';

export const LABEL_DATAPLANE_MODE = 'istio.io/dataplane-mode';
export const ANNOTATION_SIDECAR_STATUS = 'sidecar.istio.io/status';

/** The plugin's own keys in its conflist entry (snake_case, as istio-cni's are). */
export interface PluginSettings {
  /** The agent's Unix socket (`agent_socket`). */
  agentSocket: string;
  /** How long ADD/CHECK/DEL wait for the agent (`agent_timeout`, a duration). */
  agentTimeoutMs: number;
  /** Kubeconfig the installer wrote, with the plugin's own service-account token (`kubeconfig`). */
  kubeconfig: string;
  /** How long each API request may take (`kube_timeout`). */
  kubeTimeoutMs: number;
  /** Namespaces whose pods pass through without an API call (`exclude_namespaces`). */
  excludeNamespaces: string[];
  /** The agent's own pods (`agent_pod_namespace` + `agent_pod_prefix`) pass through without an API call. */
  agentPodNamespace: string;
  agentPodPrefix: string;
  /** `log_level`: debug, info, warn, error. */
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Optional file the plugin appends its log lines to (`log_file`), besides stderr. */
  logFile?: string;
}

export const DEFAULT_SETTINGS: Readonly<PluginSettings> = {
  agentSocket: DEFAULT_CNI_SOCKET,
  agentTimeoutMs: 5000,
  kubeconfig: '/var/lib/ambit/cni/kubeconfig',
  kubeTimeoutMs: 5000,
  excludeNamespaces: ['kube-system', 'istio-system'],
  agentPodNamespace: 'istio-system',
  agentPodPrefix: 'ambit-agent-',
  logLevel: 'info',
};

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/** Reads the plugin's keys from its configuration; throws AMBIT_ERR_CNI_INVALID (CNI code 7) listing every problem. */
export function parsePluginSettings(conf: NetConf): PluginSettings {
  const problems: string[] = [];
  const out: PluginSettings = { ...DEFAULT_SETTINGS, excludeNamespaces: [...DEFAULT_SETTINGS.excludeNamespaces] };
  const path = (key: string): string | undefined => {
    const v = conf[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !v.startsWith('/')) {
      problems.push(`${key} must be an absolute path (got ${JSON.stringify(v)})`);
      return undefined;
    }
    return v;
  };
  const duration = (key: string): number | undefined => {
    const v = conf[key];
    if (v === undefined) return undefined;
    const ms = typeof v === 'string' ? tryParseDuration(v) : undefined;
    if (ms === undefined || ms <= 0) {
      problems.push(`${key} must be a positive duration such as "5s" (got ${JSON.stringify(v)})`);
      return undefined;
    }
    return ms;
  };
  const text = (key: string): string | undefined => {
    const v = conf[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') {
      problems.push(`${key} must be a string (got ${JSON.stringify(v)})`);
      return undefined;
    }
    return v;
  };
  out.agentSocket = path('agent_socket') ?? out.agentSocket;
  out.kubeconfig = path('kubeconfig') ?? out.kubeconfig;
  const logFile = path('log_file');
  if (logFile !== undefined) out.logFile = logFile;
  out.agentTimeoutMs = duration('agent_timeout') ?? out.agentTimeoutMs;
  out.kubeTimeoutMs = duration('kube_timeout') ?? out.kubeTimeoutMs;
  out.agentPodNamespace = text('agent_pod_namespace') ?? out.agentPodNamespace;
  out.agentPodPrefix = text('agent_pod_prefix') ?? out.agentPodPrefix;
  const excluded = conf['exclude_namespaces'];
  if (excluded !== undefined) {
    if (!Array.isArray(excluded) || excluded.some((n) => typeof n !== 'string')) problems.push(`exclude_namespaces must be a list of namespace names (got ${JSON.stringify(excluded)})`);
    else out.excludeNamespaces = excluded as string[];
  }
  const level = text('log_level');
  if (level !== undefined) {
    if (!(LOG_LEVELS as readonly string[]).includes(level)) problems.push(`log_level must be one of ${LOG_LEVELS.join(', ')} (got ${JSON.stringify(level)})`);
    else out.logLevel = level as PluginSettings['logLevel'];
  }
  if (problems.length > 0) {
    throw cniError('AMBIT_ERR_CNI_INVALID', CniCode.INVALID_CONFIG, `invalid ambit-cni configuration in network ${JSON.stringify(conf.name)}: ${problems.join('; ')}`);
  }
  return out;
}

/** Before any API call: pass through, or look the pod up. */
export type Triage = { action: 'pass'; reason: string } | { action: 'lookup'; namespace: string; name: string; uid?: string };

export function triage(settings: PluginSettings, args: K8sArgs): Triage {
  if (args.podNamespace === undefined || args.podName === undefined) return { action: 'pass', reason: 'not a Kubernetes pod (no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS)' };
  if (settings.excludeNamespaces.includes(args.podNamespace)) return { action: 'pass', reason: `namespace ${args.podNamespace} is excluded` };
  if (args.podNamespace === settings.agentPodNamespace && settings.agentPodPrefix !== '' && args.podName.startsWith(settings.agentPodPrefix)) {
    return { action: 'pass', reason: 'the node agent\'s own pod' };
  }
  return { action: 'lookup', namespace: args.podNamespace, name: args.podName, ...(args.podUid ? { uid: args.podUid } : {}) };
}

/** The parts of a Pod and a Namespace the decision reads. */
export interface PodFacts {
  metadata: { name?: string; namespace?: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: { hostNetwork?: boolean };
}
export interface NamespaceFacts {
  metadata: { name?: string; labels?: Record<string, string> };
}

export type CaptureDecision = { capture: true; reason: string } | { capture: false; reason: string };

/**
 * Whether a pod is to be captured. `sandboxUid` is K8S_POD_UID from the runtime: when the API's
 * pod has another uid, the pod was deleted and re-created under the same name while this
 * sandbox was being made; that is reported (AMBIT_ERR_CNI_KUBE_LOOKUP, CNI code 11) rather
 * than deciding for the wrong pod.
 */
export function decideCapture(pod: PodFacts, namespace: NamespaceFacts, sandboxUid?: string): CaptureDecision {
  const uid = pod.metadata.uid;
  if (sandboxUid !== undefined && uid !== undefined && uid !== sandboxUid) {
    throw cniError(
      'AMBIT_ERR_CNI_KUBE_LOOKUP',
      CniCode.TRY_AGAIN_LATER,
      `pod ${pod.metadata.namespace}/${pod.metadata.name} has uid ${uid} in the API but the runtime creates a sandbox for uid ${sandboxUid}; was the pod re-created?`,
    );
  }
  if (pod.spec?.hostNetwork === true) return { capture: false, reason: 'the pod uses the host network' };
  if (pod.metadata.annotations?.[ANNOTATION_SIDECAR_STATUS] !== undefined) return { capture: false, reason: 'the pod has an Istio sidecar' };
  const podMode = pod.metadata.labels?.[LABEL_DATAPLANE_MODE];
  if (podMode === 'none') return { capture: false, reason: `the pod is labelled ${LABEL_DATAPLANE_MODE}=none` };
  if (podMode === 'ambient') return { capture: true, reason: `the pod is labelled ${LABEL_DATAPLANE_MODE}=ambient` };
  if (namespace.metadata.labels?.[LABEL_DATAPLANE_MODE] === 'ambient') return { capture: true, reason: `namespace ${namespace.metadata.name} is labelled ${LABEL_DATAPLANE_MODE}=ambient` };
  return { capture: false, reason: 'neither the pod nor its namespace is enrolled' };
}
