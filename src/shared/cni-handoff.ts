/**
 * The hand-off between the CNI plugin and its node's agent: HTTP/1.1 over a Unix socket, one JSON
 * request per pod event, answered once the agent has acted. The plugin (src/cni/) sends, the
 * agent's server (src/agent/cni/server.ts) receives; both validate with the functions here.
 *
 *   POST /v1/cni/add    CniPod       → 200 when the pod's capture is in place
 *   POST /v1/cni/check  CniPod       → 200 when it still is
 *   POST /v1/cni/del    CniPodRef    → 200 once the agent forgot the container (also when unknown)
 *   any error                        → 4xx/5xx with CniAgentReply { ok: false, error, code }
 */
import type { Issue } from './validate.js';

export const CNI_PATH_ADD = '/v1/cni/add';
export const CNI_PATH_CHECK = '/v1/cni/check';
export const CNI_PATH_DEL = '/v1/cni/del';

/** Default place of the agent's socket on a node (the DaemonSet mounts /var/run/ambit from the host). */
export const DEFAULT_CNI_SOCKET = '/var/run/ambit/cni.sock';

/** Largest request body either side accepts. */
export const CNI_MAX_BODY_BYTES = 64 * 1024;

/** One address the runtime's chain gave the pod (from the primary plugin's result). */
export interface CniPodIp {
  /** CIDR notation, as CNI results carry it: `10.244.1.7/24`, `fd00::7/64`. */
  address: string;
  gateway?: string;
  /** Index into the result's interfaces, when the result names one. */
  interface?: number;
}

/** Which sandbox of which pod: all DEL needs. */
export interface CniPodRef {
  podName: string;
  podNamespace: string;
  /** metadata.uid of the pod; may be empty on DEL when the runtime did not pass it. */
  podUid: string;
  /** The runtime's sandbox (infra container) id, CNI_CONTAINERID. */
  containerId: string;
  /** The sandbox's network namespace path; may be absent on DEL (already gone). */
  netns?: string;
}

/** A new pod sandbox to capture (ADD) or to confirm (CHECK). */
export interface CniPod extends CniPodRef {
  netns: string;
  /** The interface name the runtime asked for in the pod, CNI_IFNAME (usually eth0). */
  ifname: string;
  ips: CniPodIp[];
}

/** The agent's answer body. */
export interface CniAgentReply {
  ok: boolean;
  error?: string;
  /** An AmbitError code naming the cause when `ok` is false. */
  code?: string;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const UID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
const CIDR = /^[0-9A-Fa-f.:]+\/\d{1,3}$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkPath(v: unknown, field: string, issues: Issue[]): void {
  if (typeof v !== 'string' || !v.startsWith('/') || v.includes('\0') || v.length > 4096) {
    issues.push({ path: field, problem: 'must be an absolute path', value: v });
  }
}

/** Validates the fields every request carries; `uidRequired` is false for DEL. */
function checkRef(body: Record<string, unknown>, uidRequired: boolean, issues: Issue[]): void {
  const name = body['podName'];
  if (typeof name !== 'string' || !DNS_SUBDOMAIN.test(name)) issues.push({ path: 'podName', problem: 'must be a pod name (DNS subdomain)', value: name });
  const ns = body['podNamespace'];
  if (typeof ns !== 'string' || !DNS_LABEL.test(ns)) issues.push({ path: 'podNamespace', problem: 'must be a namespace name (DNS label)', value: ns });
  const uid = body['podUid'];
  if (typeof uid !== 'string' || (uid !== '' && !UID.test(uid)) || (uidRequired && uid === '')) {
    issues.push({ path: 'podUid', problem: uidRequired ? 'must be the pod\'s uid' : 'must be the pod\'s uid or empty', value: uid });
  }
  const cid = body['containerId'];
  if (typeof cid !== 'string' || !CONTAINER_ID.test(cid)) issues.push({ path: 'containerId', problem: 'must be the sandbox container id', value: cid });
}

/** Parses an ADD or CHECK body; returns the pod or the problems (each naming the field). */
export function parseCniPod(body: unknown): { pod: CniPod } | { issues: Issue[] } {
  const issues: Issue[] = [];
  if (!isRecord(body)) return { issues: [{ path: '(body)', problem: 'must be a JSON object', value: body }] };
  checkRef(body, true, issues);
  checkPath(body['netns'], 'netns', issues);
  const ifname = body['ifname'];
  if (typeof ifname !== 'string' || ifname.length === 0 || ifname.length > 15 || /[/\s]/.test(ifname)) {
    issues.push({ path: 'ifname', problem: 'must be an interface name (1-15 characters, no "/" or spaces)', value: ifname });
  }
  const ips: CniPodIp[] = [];
  const rawIps = body['ips'];
  if (!Array.isArray(rawIps)) issues.push({ path: 'ips', problem: 'must be a list (empty when the chain gave no addresses)', value: rawIps });
  else {
    rawIps.forEach((ip, i) => {
      if (!isRecord(ip) || typeof ip['address'] !== 'string' || !CIDR.test(ip['address'])) {
        issues.push({ path: `ips[${i}].address`, problem: 'must be an address in CIDR notation', value: isRecord(ip) ? ip['address'] : ip });
        return;
      }
      const out: CniPodIp = { address: ip['address'] };
      if (ip['gateway'] !== undefined) {
        if (typeof ip['gateway'] !== 'string') issues.push({ path: `ips[${i}].gateway`, problem: 'must be an address', value: ip['gateway'] });
        else out.gateway = ip['gateway'];
      }
      if (ip['interface'] !== undefined) {
        if (typeof ip['interface'] !== 'number' || !Number.isInteger(ip['interface']) || ip['interface'] < 0) issues.push({ path: `ips[${i}].interface`, problem: 'must be an interface index', value: ip['interface'] });
        else out.interface = ip['interface'];
      }
      ips.push(out);
    });
  }
  if (issues.length > 0) return { issues };
  return {
    pod: {
      podName: body['podName'] as string,
      podNamespace: body['podNamespace'] as string,
      podUid: body['podUid'] as string,
      containerId: body['containerId'] as string,
      netns: body['netns'] as string,
      ifname: ifname as string,
      ips,
    },
  };
}

/** Parses a DEL body; the netns is optional (it may already be gone), the uid may be empty. */
export function parseCniPodRef(body: unknown): { pod: CniPodRef } | { issues: Issue[] } {
  const issues: Issue[] = [];
  if (!isRecord(body)) return { issues: [{ path: '(body)', problem: 'must be a JSON object', value: body }] };
  checkRef(body, false, issues);
  if (body['netns'] !== undefined && body['netns'] !== '') checkPath(body['netns'], 'netns', issues);
  if (issues.length > 0) return { issues };
  const pod: CniPodRef = {
    podName: body['podName'] as string,
    podNamespace: body['podNamespace'] as string,
    podUid: body['podUid'] as string,
    containerId: body['containerId'] as string,
  };
  if (typeof body['netns'] === 'string' && body['netns'] !== '') pod.netns = body['netns'];
  return { pod };
}
