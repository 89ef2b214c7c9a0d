/**
 * Validation of every pushed resource, by type URL: the config server runs it once before sending
 * and the config client once on receipt (nothing else re-validates), so a bad resource is caught
 * with a path-qualified issue naming the field and the value instead of failing later. The
 * checks are validate-model.ts (Workload, Service, Authorization) and validate-routes.ts
 * (RouteConfig, GatewayListener). Returns a normalised copy when there are no issues.
 */
import type { GatewayListener, RouteConfig } from './routes.js';
import { checkAuthorization, checkService, checkWorkload } from './validate-model.js';
import { validateGatewayListener, validateRouteConfig } from './validate-routes.js';
import { TYPE_AUTHORIZATION, TYPE_GATEWAY_LISTENER, TYPE_ROUTE_CONFIG, TYPE_SERVICE, TYPE_WORKLOAD, type Resource } from './resources.js';
import { Issues, isRecord, type Issue } from './validate.js';

export interface ResourceValidation {
  /** The normalised resource; present only when `issues` is empty. */
  value?: Resource;
  issues: Issue[];
}

const MAX_NAME = 1024;

const KIND_OF_TYPE: Record<string, string> = {
  [TYPE_WORKLOAD]: 'workload',
  [TYPE_SERVICE]: 'service',
  [TYPE_AUTHORIZATION]: 'authorization',
  [TYPE_ROUTE_CONFIG]: 'routeConfig',
  [TYPE_GATEWAY_LISTENER]: 'gatewayListener',
};

/**
 * Validates `body` as a resource of `typeUrl` named `name`. Issue paths start with `path`
 * (default `<kind>[<name>]`), e.g. `service[default/web.default.svc.cluster.local].ports[0].port`.
 */
export function validateResource(typeUrl: string, name: string, body: unknown, path?: string): ResourceValidation {
  const issues = new Issues();
  const kind = KIND_OF_TYPE[typeUrl];
  const base = path ?? `${kind ?? 'resource'}[${name}]`;
  if (kind === undefined) {
    issues.add(`${base}.typeUrl`, `unknown resource type; expected one of ${Object.keys(KIND_OF_TYPE).join(', ')}`, typeUrl);
    return { issues: issues.list };
  }
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME) {
    issues.add(`${base}.<resource name>`, `must be a non-empty string of at most ${MAX_NAME} characters`, name);
  }
  if (!isRecord(body)) {
    issues.add(base, 'must be an object', body);
    return { issues: issues.list };
  }
  let value: Resource | undefined;
  if (typeUrl === TYPE_WORKLOAD) value = checkWorkload(body, name, base, issues);
  else if (typeUrl === TYPE_SERVICE) value = checkService(body, name, base, issues);
  else if (typeUrl === TYPE_ROUTE_CONFIG) value = checkRouteConfig(body, name, base, issues);
  else if (typeUrl === TYPE_GATEWAY_LISTENER) value = checkGatewayListener(body, name, base, issues);
  else value = checkAuthorization(body, name, base, issues);
  return issues.ok && value !== undefined ? { value, issues: [] } : { issues: issues.list };
}

// ---- RouteConfig ----

/** Route config (routes.ts): its own validator; the resource name must equal its `name`. */
function checkGatewayListener(o: Record<string, unknown>, name: string, path: string, issues: Issues): GatewayListener | undefined {
  for (const i of validateGatewayListener(o, path)) issues.add(i.path, i.problem, i.value);
  if (typeof o['pod'] === 'string' && `${o['pod']}/${String(o['port'])}` !== name) issues.add(`${path}.port`, `pod/port must equal the resource name ${JSON.stringify(name)}`, o['port']);
  return issues.ok ? (structuredClone(o) as unknown as GatewayListener) : undefined;
}

function checkRouteConfig(o: Record<string, unknown>, name: string, path: string, issues: Issues): RouteConfig | undefined {
  for (const i of validateRouteConfig(o, path)) issues.add(i.path, i.problem, i.value);
  if (typeof o['name'] === 'string' && o['name'] !== name) issues.add(`${path}.name`, `must equal the resource name ${JSON.stringify(name)}`, o['name']);
  return issues.ok ? (structuredClone(o) as unknown as RouteConfig) : undefined;
}
