/**
 * Authorization of one TCP connection where a waypoint or gateway proxies it as bytes (a
 * waypoint's TCP and TLS routes, an ingress gateway's TCP and TLS passthrough listeners), in
 * Istio's order: CUSTOM first through the network ext_authz of a gRPC provider (authz.ts
 * connectionCustom decides whether to ask), then DENY and ALLOW as Envoy's network RBAC takes
 * them. A denied connection is the caller's to reset.
 */
import type { Logger } from '../../shared/log.js';
import type { RouteConfig } from '../../shared/routes.js';
import type { WaypointMetrics } from '../metrics.js';
import { authorizeConnection, connectionCustom } from './authz.js';
import type { CheckedConnection, ExtAuthzClient } from './ext-authz.js';

export interface ConnectionAuthzDeps {
  extAuthz: ExtAuthzClient;
  metrics: Pick<WaypointMetrics, 'policyDenials'>;
  log: Logger;
}

export type ConnectionAdmission = { allowed: true } | { allowed: false; reason: 'rbac' | 'ext_authz'; policy?: string };

/** Whether `config`'s policies let the connection through; counts and logs a denial. */
export async function admitConnection(deps: ConnectionAuthzDeps, config: RouteConfig, conn: CheckedConnection): Promise<ConnectionAdmission> {
  if (config.authorization.length === 0) return { allowed: true };
  const attrs = { port: conn.destinationPort, ...(conn.sourceAddress !== undefined ? { sourceIp: conn.sourceAddress } : {}), ...(conn.sourcePrincipal !== undefined ? { principal: conn.sourcePrincipal } : {}) };
  const deny = (reason: 'rbac' | 'ext_authz', policy: string | undefined, why: string): ConnectionAdmission => {
    deps.metrics.policyDenials.inc({ destination_service: config.hostname, reason });
    deps.log.debug({ port: conn.destinationPort, source: conn.sourceAddress, policy, reason: why }, 'connection denied by authorization policy; reset');
    return { allowed: false, reason, ...(policy !== undefined ? { policy } : {}) };
  };
  const custom = connectionCustom(config.authorization, attrs);
  if (custom.kind === 'deny') return deny('ext_authz', custom.policy, custom.reason);
  if (custom.kind === 'check') {
    const v = await deps.extAuthz.checkConnection(custom.provider, conn);
    if (!v.allowed) {
      if (v.error) deps.log.warn({ provider: custom.provider.name, error: v.error }, 'external authorization of a connection failed; connection denied');
      return deny('ext_authz', custom.policy, `denied by extension provider ${custom.provider.name}`);
    }
    if (v.failedOpen) deps.log.warn({ provider: custom.provider.name, error: v.failedOpen }, 'external authorization of a connection failed; connection allowed (failOpen)');
  }
  const verdict = authorizeConnection(config.authorization, attrs);
  return verdict.allowed ? { allowed: true } : deny('rbac', verdict.policy, verdict.reason);
}
