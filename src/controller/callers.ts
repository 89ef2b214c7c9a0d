/**
 * Who calls the controller and what each caller may have. A caller is authenticated from its bearer
 * token alone (never from what it says about itself in a request), then every certificate request
 * and every config subscription is authorized against that caller by the pure functions below:
 *
 * - a node agent (node token; on Kubernetes the agent's service-account token) gets its node's
 *   agent view, and certificates only for service accounts with a pod on its node (istiod's node
 *   authorizer rule);
 * - a pod-bound credential (a waypoint's or gateway's own token) gets only that pod's view: a
 *   waypoint the route configs of the waypoint Gateway its pod belongs to, a gateway the listeners
 *   and keys of the Gateways selecting its pod; certificates only for its own identity.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { AmbitError } from '../shared/errors.js';
import { formatSpiffeId, tryParseSpiffeId } from '../shared/identity.js';
import type { NodeInfo } from '../shared/xds/node.js';

/** A node agent, authenticated for one node. */
export interface NodeCaller {
  kind: 'node';
  node: string;
}

/** A pod's own credential (waypoint and gateway pods): its namespace, service account and name. */
export interface PodCaller {
  kind: 'pod';
  namespace: string;
  serviceAccount: string;
  pod: string;
}

export type Caller = NodeCaller | PodCaller;

/** A stable text form of a caller, for logs, stream bookkeeping and limits (never a token). */
export function callerKey(c: Caller): string {
  return c.kind === 'node' ? `node/${c.node}` : `pod/${c.namespace}/${c.pod}`;
}

/** Turns a bearer token into a caller, or undefined when the token is not valid. */
export interface CallerAuthenticator {
  authenticate(token: string): Promise<Caller | undefined>;
}

/** The bearer token of a gRPC call (`authorization: Bearer <token>`), or undefined. */
export function bearerToken(metadata: grpc.Metadata): string | undefined {
  for (const v of metadata.get('authorization')) {
    const text = typeof v === 'string' ? v : v.toString('utf8');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(text);
    if (m) return m[1];
  }
  return undefined;
}

/** A fresh random token (32 bytes, base64url). Never log it. */
export function generateToken(): string {
  return randomBytes(32).toString('base64url');
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/**
 * Tokens the controller was given (node tokens from a file; pod tokens local mode registers for the
 * waypoint and gateway pods it runs). Compared as SHA-256 digests in constant time.
 */
export class StaticTokenAuthenticator implements CallerAuthenticator {
  readonly #byDigest = new Map<string, { d: Buffer; caller: Caller }>();

  /** `nodeTokens`: token → node name. */
  constructor(nodeTokens: Map<string, string> | Record<string, string> = {}) {
    const entries = nodeTokens instanceof Map ? nodeTokens.entries() : Object.entries(nodeTokens);
    for (const [token, node] of entries) this.set(token, { kind: 'node', node });
  }

  /** Adds or replaces what a token authenticates as. */
  set(token: string, caller: Caller): void {
    if (token.length < 16) throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `token for ${callerKey(caller)} is shorter than 16 characters`);
    const d = digest(token);
    this.#byDigest.set(d.toString('hex'), { d, caller });
  }

  delete(token: string): void {
    this.#byDigest.delete(digest(token).toString('hex'));
  }

  async authenticate(token: string): Promise<Caller | undefined> {
    const d = digest(token);
    let found: Caller | undefined;
    for (const e of this.#byDigest.values()) {
      if (timingSafeEqual(e.d, d)) found = e.caller;
    }
    return found;
  }
}

/** A pod as authorization needs it. */
export interface PodRecord {
  namespace: string;
  name: string;
  serviceAccount: string;
  node: string;
  labels: Readonly<Record<string, string>>;
}

/** What authorization reads of the controller's current view. */
export interface AccessView {
  trustDomain: string;
  /** Pods scheduled on a node. */
  podsOnNode(node: string): Iterable<Pick<PodRecord, 'namespace' | 'serviceAccount'>>;
  /** A pod by namespace and name (undefined when not known). */
  pod(namespace: string, name: string): PodRecord | undefined;
}

/** Label Gateway API puts on a Gateway's pods; a waypoint pod belongs to the Gateway it names. */
export const LABEL_GATEWAY_NAME = 'gateway.networking.k8s.io/gateway-name';

/** Why a caller may not have a certificate for `spiffe`, or undefined when it may. */
export function refuseIdentity(caller: Caller, spiffe: string, view: AccessView): string | undefined {
  const id = tryParseSpiffeId(spiffe);
  if (!id) return `${spiffe} is not a SPIFFE id`;
  if (id.trustDomain !== view.trustDomain) return `identity ${spiffe} is in trust domain ${id.trustDomain}, but this ca serves ${view.trustDomain}`;
  if (caller.kind === 'node') {
    for (const p of view.podsOnNode(caller.node)) {
      if (p.namespace === id.namespace && p.serviceAccount === id.serviceAccount) return undefined;
    }
    return `node ${caller.node} may not request identity ${spiffe}: no pod with that service account is scheduled on node ${caller.node}`;
  }
  const pod = view.pod(caller.namespace, caller.pod);
  if (!pod) return `pod ${caller.namespace}/${caller.pod} is not known to the controller`;
  const own = formatSpiffeId({ trustDomain: view.trustDomain, namespace: caller.namespace, serviceAccount: pod.serviceAccount });
  if (pod.serviceAccount !== caller.serviceAccount || spiffe !== own) {
    return `pod ${caller.namespace}/${caller.pod} may only request its own identity ${own}, not ${spiffe}`;
  }
  return undefined;
}

/**
 * Why a caller may not subscribe as `node` (its role and metadata), or undefined when it may.
 * Agents: a node caller for the node the stream names. Waypoints: a pod caller whose pod belongs
 * to the waypoint named in metadata `waypoint` (`ns/name`). Gateways: a pod caller whose own pod
 * is the one named in metadata `pod` (`ns/name`).
 */
export function refuseSubscription(caller: Caller, node: NodeInfo, view: AccessView): string | undefined {
  const who = callerKey(caller);
  if (node.role === 'agent') {
    if (caller.kind !== 'node') return `${who} may not subscribe as an agent: agents authenticate with a node credential`;
    if (node.nodeName !== caller.node) return `${who} may not subscribe as the agent of node ${JSON.stringify(node.nodeName)}`;
    return undefined;
  }
  if (caller.kind !== 'pod') return `${who} may not subscribe as a ${node.role}: waypoints and gateways authenticate with their own pod credential`;
  const pod = view.pod(caller.namespace, caller.pod);
  if (!pod) return `${who} is not a pod the controller knows`;
  if (pod.serviceAccount !== caller.serviceAccount) return `${who} runs as service account ${pod.serviceAccount}, not ${caller.serviceAccount}`;
  if (node.role === 'waypoint') {
    const named = node.metadata?.['waypoint'] ?? '';
    const [ns, name, extra] = named.split('/');
    if (!ns || !name || extra !== undefined) return `${who} must name its waypoint (node metadata waypoint=<namespace>/<name>), got ${JSON.stringify(named)}`;
    if (ns !== caller.namespace || pod.labels[LABEL_GATEWAY_NAME] !== name) return `${who} is not a pod of waypoint ${named}`;
    return undefined;
  }
  const named = node.metadata?.['pod'] ?? '';
  if (named !== `${caller.namespace}/${caller.pod}`) return `${who} may only subscribe for its own pod, not ${JSON.stringify(named)}`;
  return undefined;
}

/** The part of a TokenReview's status the mapping reads (authentication.k8s.io/v1). */
export interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}

/** What a reviewed token may be: the agents' service account, and the audience tokens must carry. */
export interface TokenReviewPolicy {
  agent: { namespace: string; serviceAccount: string };
  audience: string;
}

/** Why a reviewed token is refused (a bounded metric label). */
export type TokenRefusal = 'unauthenticated' | 'audience' | 'not_service_account' | 'agent_not_node_bound' | 'not_pod_bound';

export const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
export const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';
const SA_USER = /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/;

function singleExtra(extra: Record<string, string[]> | undefined, key: string): string | undefined {
  const v = extra?.[key];
  return Array.isArray(v) && v.length === 1 && typeof v[0] === 'string' && v[0] !== '' ? v[0] : undefined;
}

/**
 * Maps an API server's TokenReview answer to a caller (pure). The agents' service account with a
 * token bound to a node (`authentication.kubernetes.io/node-name`, which a projected token of a
 * pod on that node carries) is that node's agent; any other service-account token bound to a pod
 * (`.../pod-name`) is that pod; everything else (unauthenticated, another audience, a user or a
 * token bound to nothing) is refused with a bounded reason.
 */
export function callerFromTokenReview(status: TokenReviewStatus, policy: TokenReviewPolicy): { caller: Caller } | { refused: TokenRefusal; detail: string } {
  if (status.authenticated !== true) return { refused: 'unauthenticated', detail: `the API server did not authenticate the token${status.error ? `: ${status.error}` : ''}` };
  if (!(status.audiences ?? []).includes(policy.audience)) {
    return { refused: 'audience', detail: `the token is not for audience ${policy.audience} (it is for ${(status.audiences ?? []).join(', ') || 'none'})` };
  }
  const username = status.user?.username ?? '';
  const m = SA_USER.exec(username);
  if (!m) return { refused: 'not_service_account', detail: `${JSON.stringify(username.slice(0, 100))} is not a service account` };
  const namespace = m[1]!;
  const serviceAccount = m[3]!;
  const extra = status.user?.extra;
  if (namespace === policy.agent.namespace && serviceAccount === policy.agent.serviceAccount) {
    const node = singleExtra(extra, EXTRA_NODE_NAME);
    if (!node) return { refused: 'agent_not_node_bound', detail: `a token of the agents' service account ${namespace}/${serviceAccount} must be bound to a pod on a node (projected token)` };
    return { caller: { kind: 'node', node } };
  }
  const pod = singleExtra(extra, EXTRA_POD_NAME);
  if (!pod) return { refused: 'not_pod_bound', detail: `service account ${namespace}/${serviceAccount}: only pod-bound tokens (projected volumes) are accepted` };
  return { caller: { kind: 'pod', namespace, serviceAccount, pod } };
}
