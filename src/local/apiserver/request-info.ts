/**
 * Parses a request path and method into what is asked (the real server's RequestInfoFactory):
 * the API group/version, namespace, resource, name, subresource and verb, or a non-resource path.
 */

export interface RequestInfo {
  resourceRequest: boolean;
  path: string;
  /** get, list, watch, create, update, patch, delete, deletecollection; lowercase method otherwise. */
  verb: string;
  apiPrefix?: 'api' | 'apis';
  group: string;
  version: string;
  namespace: string;
  resource: string;
  name: string;
  subresource: string;
}

const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);

export function parseRequestInfo(method: string, path: string, query: URLSearchParams): RequestInfo {
  const info: RequestInfo = {
    resourceRequest: false,
    path,
    verb: method.toLowerCase(),
    group: '',
    version: '',
    namespace: '',
    resource: '',
    name: '',
    subresource: '',
  };
  let parts = path.split('/').filter((p) => p !== '').map((p) => decodeURIComponent(p));
  if (parts.length === 0 || (parts[0] !== 'api' && parts[0] !== 'apis')) return info;
  info.apiPrefix = parts[0] as 'api' | 'apis';
  parts = parts.slice(1);
  if (info.apiPrefix === 'apis') {
    if (parts.length < 2) return info;
    info.group = parts[0]!;
    parts = parts.slice(1);
  } else if (parts.length < 1) return info;
  info.version = parts[0]!;
  parts = parts.slice(1);
  if (parts.length === 0) return info;
  info.resourceRequest = true;
  const methodVerb: Record<string, string> = { POST: 'create', GET: 'get', HEAD: 'get', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };
  info.verb = methodVerb[method.toUpperCase()] ?? method.toLowerCase();
  if (parts[0] === 'watch') {
    // The deprecated /watch/ path prefix.
    info.verb = 'watch';
    parts = parts.slice(1);
  }
  if (parts[0] === 'namespaces') {
    if (parts.length > 1) {
      info.namespace = parts[1]!;
      if (parts.length > 2 && !NAMESPACE_SUBRESOURCES.has(parts[2]!)) parts = parts.slice(2);
    }
  }
  if (parts.length >= 3) info.subresource = parts[2]!;
  if (parts.length >= 2) info.name = parts[1]!;
  if (parts.length >= 1) info.resource = parts[0]!;
  if (info.name === '' && info.verb === 'get') info.verb = 'list';
  if (info.verb === 'delete' && info.name === '') info.verb = 'deletecollection';
  const w = query.get('watch');
  if ((info.verb === 'list' || info.verb === 'get') && (w === 'true' || w === '1')) info.verb = 'watch';
  return info;
}
