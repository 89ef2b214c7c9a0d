/**
 * The HTTP face of the API server: authenticates, applies impersonation, authorizes with RBAC,
 * routes discovery/OpenAPI/health and resource requests to the registry by verb, negotiates the
 * response (JSON, Table, PartialObjectMetadata, aggregated discovery) and streams watches as
 * chunked JSON lines. Every failure leaves as a Status; a handler bug is a 500, never a crash.
 */
import type { Logger } from '../../shared/log.js';
import { ANONYMOUS, AUTHENTICATED_GROUP, parseServiceAccountUser, readImpersonation, serviceAccountGroups, type Authenticator, type UserInfo } from './authn.js';
import { authorize, denyText, type Attributes } from './authz.js';
import { decodeBody, mediaType, PROTOBUF_TYPE } from './body.js';
import { aggregatedContentType, aggregatedDiscovery, aggregatedDiscoveryVersion, apiGroupList, apiResourceList, apiVersions, versionInfo } from './discovery.js';
import { openApiDocument, openApiRoot } from './openapi.js';
import { parseRequestInfo, type RequestInfo } from './request-info.js';
import type { DeleteOptions, FieldValidation, ListOptions, Registry, RequestContext } from './registry.js';
import { PATCH_TYPES } from './registry.js';
import type { ResourceDef, ResourceTypes } from './resources.js';
import { accessReview, tokenRequest, tokenReview, type ReviewDeps } from './reviews.js';
import { ApiError, badRequest, forbidden, forbiddenPath, internalError, methodNotAllowed, notAcceptable, pathNotFound, unauthorized, type Status } from './status.js';
import { toTable, type IncludeObject } from './tables.js';
import type { TokenSigner } from './tokens.js';
import { isMap, type JsonMap, type KubeObject } from './types.js';
import { prepareWatch, type WatchEvent } from './watch.js';
import { createPublicKey } from 'node:crypto';

export interface ApiRequest {
  method: string;
  /** Path and query. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body(): Promise<Buffer>;
}

export interface ApiResponse {
  head(status: number, headers: Record<string, string | string[]>): void;
  write(chunk: string): void;
  end(chunk?: string): void;
  /** Called once when the client goes away (streams stop then). */
  onClose(cb: () => void): void;
  /** Whether the head was already sent. */
  started?(): boolean;
}

export interface HandlerDeps {
  registry: Registry;
  types: ResourceTypes;
  authenticator: Authenticator;
  signer: TokenSigner;
  /** host:port clients reach the server at (APIVersions.serverAddressByClientCIDRs). */
  serverAddress: () => string;
  now: () => number;
  log: Logger;
  /** Set once the server has stopped accepting work (/readyz answers 503). */
  ready: () => boolean;
  /** Watches without timeoutSeconds end after a random [min, 2×min] seconds. */
  minRequestTimeoutSeconds: number;
}

const JSON_TYPE = 'application/json';

interface Negotiated {
  table?: 'v1' | 'v1beta1';
  partial?: boolean;
}

function headerOne(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** What the Accept header asks for: Table, PartialObjectMetadata, or plain JSON (406 if none fits). */
function negotiate(accept: string | undefined): Negotiated {
  if (accept === undefined || accept.trim() === '') return {};
  let jsonOk = false;
  let table: 'v1' | 'v1beta1' | undefined;
  let partial = false;
  for (const part of accept.split(',')) {
    const [typeRaw, ...paramParts] = part.split(';');
    const type = typeRaw!.trim().toLowerCase();
    const params = new Map(paramParts.map((p) => p.trim().split('=') as [string, string]));
    if (type === '*/*' || type === 'application/*') jsonOk = true;
    if (type !== JSON_TYPE && type !== '*/*' && type !== 'application/*') continue;
    const as = params.get('as');
    if (as === undefined) {
      jsonOk = true;
      continue;
    }
    if (params.get('g') !== 'meta.k8s.io') continue;
    const v = params.get('v');
    if (as === 'Table' && (v === 'v1' || v === 'v1beta1')) table ??= v;
    if ((as === 'PartialObjectMetadata' || as === 'PartialObjectMetadataList') && (v === 'v1' || v === 'v1beta1')) partial = true;
  }
  if (table !== undefined) return { table };
  if (partial) return { partial: true };
  if (!jsonOk) throw notAcceptable([JSON_TYPE, 'application/yaml']);
  return {};
}

function statusOf(e: unknown): { status: Status; headers: Record<string, string> } {
  if (e instanceof ApiError) return { status: e.status, headers: e.headers };
  return { status: internalError(e instanceof Error ? e.message : String(e)).status, headers: {} };
}

export class ApiHandler {
  /** End functions of the watches being streamed (stop() ends them cleanly). */
  private readonly watches = new Set<() => void>();

  constructor(private readonly d: HandlerDeps) {}

  /** Ends every open watch with a proper end of stream; clients resume from their last RV. */
  closeWatches(): void {
    for (const end of [...this.watches]) end();
  }

  private reviewDeps(): ReviewDeps {
    return { store: this.d.registry.store, authenticator: this.d.authenticator, signer: this.d.signer, now: this.d.now };
  }

  /** Handles one request; never throws. `user` skips authentication (in-process calls). */
  async handle(req: ApiRequest, res: ApiResponse, user?: UserInfo): Promise<void> {
    const warnings: string[] = [];
    try {
      await this.route(req, res, warnings, user);
    } catch (e) {
      const { status, headers } = statusOf(e);
      if (status.code >= 500) this.d.log.error({ err: e, method: req.method, path: req.url.split('?')[0] }, 'request failed');
      if (res.started?.()) {
        // A stream already sent its head: end it rather than append a body that is not an event.
        res.end();
        return;
      }
      this.send(res, status.code, status, warnings, headers);
    }
  }

  private send(res: ApiResponse, code: number, body: unknown, warnings: string[], headers: Record<string, string> = {}, contentType = JSON_TYPE): void {
    const h: Record<string, string | string[]> = { 'Content-Type': contentType, 'Cache-Control': 'no-cache, private', ...headers };
    if (warnings.length > 0) h['Warning'] = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
    res.head(code, h);
    res.end(JSON.stringify(body) + '\n');
  }

  private authenticate(req: ApiRequest): UserInfo {
    const user = this.d.authenticator.authenticateHeader(headerOne(req.headers['authorization']));
    if (user === undefined) throw unauthorized();
    return user;
  }

  /** Applies Impersonate-* headers when the user may impersonate (RBAC verb `impersonate`). */
  private impersonate(req: ApiRequest, user: UserInfo): UserInfo {
    const imp = readImpersonation(req.headers);
    if (imp === undefined) return user;
    const store = this.d.registry.store;
    const check = (a: Omit<Attributes, 'user' | 'verb' | 'resourceRequest'>, shown: string): void => {
      const attrs: Attributes = { user, verb: 'impersonate', resourceRequest: true, ...a };
      if (!authorize(store, attrs).allowed) {
        throw forbidden({ group: a.apiGroup ?? '', resource: a.resource ?? '' }, shown, `${denyText(attrs)}`);
      }
    };
    if (imp.user === undefined) throw badRequest('requested impersonation of groups or extra without a user');
    const sa = parseServiceAccountUser(imp.user);
    if (sa !== undefined) check({ apiGroup: '', resource: 'serviceaccounts', namespace: sa.namespace, name: sa.name }, sa.name);
    else check({ apiGroup: '', resource: 'users', name: imp.user }, imp.user);
    for (const g of imp.groups) check({ apiGroup: '', resource: 'groups', name: g }, g);
    if (imp.uid !== undefined) check({ apiGroup: 'authentication.k8s.io', resource: 'uids', name: imp.uid }, imp.uid);
    for (const [k, vs] of Object.entries(imp.extra)) for (const v of vs) check({ apiGroup: 'authentication.k8s.io', resource: 'userextras', subresource: k, name: v }, v);
    let groups = [...imp.groups];
    if (sa !== undefined && groups.length === 0) groups = serviceAccountGroups(sa.namespace);
    if (imp.user !== ANONYMOUS.username && !groups.includes(AUTHENTICATED_GROUP)) groups.push(AUTHENTICATED_GROUP);
    const out: UserInfo = { username: imp.user, groups, extra: imp.extra };
    if (imp.uid !== undefined) out.uid = imp.uid;
    return out;
  }

  private authorizeOrThrow(user: UserInfo, info: RequestInfo): void {
    const attrs: Attributes = info.resourceRequest
      ? { user, verb: info.verb, resourceRequest: true, apiGroup: info.group, resource: info.resource, subresource: info.subresource, namespace: info.namespace, name: info.name }
      : { user, verb: info.verb, resourceRequest: false, path: info.path };
    const d = authorize(this.d.registry.store, attrs);
    if (d.allowed) return;
    if (!info.resourceRequest) throw forbiddenPath(d.reason);
    throw forbidden({ group: info.group, resource: info.subresource ? `${info.resource}/${info.subresource}` : info.resource }, info.name, d.reason);
  }

  private async route(req: ApiRequest, res: ApiResponse, warnings: string[], presetUser?: UserInfo): Promise<void> {
    const url = new URL(req.url, 'https://local');
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    const q = url.searchParams;
    const info = parseRequestInfo(req.method, path, q);
    const user = presetUser ?? this.impersonate(req, this.authenticate(req));
    if (!info.resourceRequest) {
      if (!['get', 'head'].includes(info.verb)) throw methodNotAllowed();
      this.authorizeOrThrow(user, info);
      return this.nonResource(req, res, path, q, warnings);
    }
    const def = this.d.types.lookup(info.group, info.version, info.resource);
    if (def === undefined) throw pathNotFound();
    if (!def.namespaced && info.namespace !== '' && !(def.id === '/namespaces')) throw pathNotFound();
    if (def.id === '/namespaces' && info.name === '' && info.namespace !== '') {
      info.name = info.namespace;
    }
    this.authorizeOrThrow(user, info);
    const ctx: RequestContext = {
      user,
      dryRun: parseDryRun(q),
      fieldValidation: parseFieldValidation(q),
      warnings,
      fieldManager: fieldManagerOf(q.get('fieldManager'), headerOne(req.headers['user-agent'])),
      ...(q.get('force') === 'true' ? { force: true } : {}),
    };
    await this.resource(req, res, info, def, ctx, q);
  }

  private nonResource(req: ApiRequest, res: ApiResponse, path: string, q: URLSearchParams, warnings: string[]): void {
    const types = this.d.types;
    const accept = headerOne(req.headers['accept']);
    if (path === '/version') return this.send(res, 200, versionInfo(), warnings);
    if (['/healthz', '/livez', '/readyz'].includes(path)) {
      const ok = path !== '/readyz' || this.d.ready();
      res.head(ok ? 200 : 503, { 'Content-Type': 'text/plain; charset=utf-8' });
      return res.end(ok ? 'ok' : 'not ready');
    }
    if (path === '/api' || path === '/apis') {
      const agg = aggregatedDiscoveryVersion(accept);
      if (agg !== undefined) return this.send(res, 200, aggregatedDiscovery(types, path === '/api', agg), warnings, {}, aggregatedContentType(agg));
      return this.send(res, 200, path === '/api' ? apiVersions(this.d.serverAddress()) : apiGroupList(types), warnings);
    }
    const gv = /^\/(?:api\/([^/]+)|apis\/([^/]+)(?:\/([^/]+))?)$/.exec(path);
    if (gv) {
      if (gv[1] !== undefined) {
        const list = apiResourceList(types, '', gv[1]);
        if (list) return this.send(res, 200, list, warnings);
      } else if (gv[3] !== undefined) {
        const list = apiResourceList(types, gv[2]!, gv[3]);
        if (list) return this.send(res, 200, list, warnings);
      } else {
        const g = types.groups().find((x) => x.group === gv[2]);
        if (g) {
          const versions = g.versions.map((v) => ({ groupVersion: `${g.group}/${v}`, version: v }));
          return this.send(res, 200, { kind: 'APIGroup', apiVersion: 'v1', name: g.group, versions, preferredVersion: versions[0] }, warnings);
        }
      }
      throw pathNotFound();
    }
    const patchTypes = (d: ResourceDef): string[] => this.d.registry.patchTypes(d);
    if (path === '/openapi/v3') return this.send(res, 200, openApiRoot(types, patchTypes), warnings);
    const oa = /^\/openapi\/v3\/(?:api\/([^/]+)|apis\/([^/]+)\/([^/]+))$/.exec(path);
    if (oa) {
      const doc = oa[1] !== undefined ? openApiDocument(types, '', oa[1], patchTypes) : openApiDocument(types, oa[2]!, oa[3]!, patchTypes);
      if (doc === undefined) throw pathNotFound();
      const headers: Record<string, string> = q.get('hash') ? { 'Cache-Control': 'public, immutable' } : {};
      return this.send(res, 200, doc, warnings, headers);
    }
    if (path === '/.well-known/openid-configuration') {
      const iss = this.d.signer.issuer;
      return this.send(res, 200, {
        issuer: iss,
        jwks_uri: `https://${this.d.serverAddress()}/openid/v1/jwks`,
        response_types_supported: ['id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
      }, warnings);
    }
    if (path === '/openid/v1/jwks') {
      return this.send(res, 200, { keys: [this.jwk()] }, warnings, {}, 'application/jwk-set+json');
    }
    throw pathNotFound();
  }

  private jwk(): JsonMap {
    const pub = createPublicKey(this.d.signer.publicKeyPem).export({ format: 'jwk' }) as JsonMap;
    return { use: 'sig', kty: pub['kty'], kid: this.d.signer.kid, alg: 'RS256', n: pub['n'], e: pub['e'] };
  }

  private async readJson(req: ApiRequest, accepted: string[]): Promise<{ body: unknown; type: string }> {
    const buf = await req.body();
    const type = mediaType(headerOne(req.headers['content-type']));
    return { body: decodeBody(buf, type, accepted), type };
  }

  private async resource(req: ApiRequest, res: ApiResponse, info: RequestInfo, def: ResourceDef, ctx: RequestContext, q: URLSearchParams): Promise<void> {
    const reg = this.d.registry;
    const version = info.version;
    const ns = info.namespace;
    const neg = negotiate(headerOne(req.headers['accept']));
    const now = this.d.now();
    const include = (q.get('includeObject') ?? 'Metadata') as IncludeObject;
    const one = (code: number, o: KubeObject | JsonMap): void => {
      if (neg.table && isMap(o) && (o as KubeObject).metadata !== undefined && o['kind'] === def.kind) {
        const t = toTable(def, version, [o as KubeObject], { resourceVersion: String((o as KubeObject).metadata.resourceVersion ?? '') }, now, include);
        return this.send(res, code, t, ctx.warnings, {}, `application/json;as=Table;v=${neg.table};g=meta.k8s.io`);
      }
      if (neg.partial && o['kind'] === def.kind) return this.send(res, code, { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: (o as KubeObject).metadata }, ctx.warnings);
      this.send(res, code, o, ctx.warnings);
    };
    // Built-in kinds also take protobuf (kubectl's typed clients send it); custom resources never do.
    const writeAccepted = def.model !== undefined ? [JSON_TYPE, 'application/yaml', PROTOBUF_TYPE] : [JSON_TYPE, 'application/yaml'];

    if (def.review) {
      if (info.verb !== 'create') throw methodNotAllowed();
      const { body } = await this.readJson(req, writeAccepted);
      if (!isMap(body)) throw badRequest(`the body of the request must be a ${def.kind} object`);
      const out = def.kind === 'TokenReview' ? tokenReview(this.reviewDeps(), body) : accessReview(this.reviewDeps(), def, ns, body, ctx);
      return this.send(res, 201, out, ctx.warnings);
    }
    if (def.namespaced && ns === '' && ['create', 'get', 'update', 'patch', 'delete'].includes(info.verb)) throw methodNotAllowed();

    const sub = info.subresource;
    if (sub !== '') {
      const served = def.versions.find((v) => v.name === version)!;
      if (sub === 'status' && served.status) {
        if (info.verb === 'get') return one(200, reg.get(def, version, ns, info.name));
        if (info.verb === 'update') {
          const { body } = await this.readJson(req, writeAccepted);
          return one(200, reg.update(def, version, ns, info.name, body, ctx, 'status').object);
        }
        if (info.verb === 'patch') {
          const { body, type } = await this.readJson(req, reg.patchTypes(def));
          return one(200, reg.patch(def, version, ns, info.name, type, body, ctx, 'status').object);
        }
        throw methodNotAllowed();
      }
      if (sub === 'scale' && served.scale) {
        if (info.verb === 'get') return this.send(res, 200, reg.getScale(def, version, ns, info.name), ctx.warnings);
        if (info.verb === 'update') {
          const { body } = await this.readJson(req, writeAccepted);
          return this.send(res, 200, reg.updateScale(def, version, ns, info.name, body, ctx), ctx.warnings);
        }
        if (info.verb === 'patch') {
          const { body, type } = await this.readJson(req, [PATCH_TYPES.json, PATCH_TYPES.merge, PATCH_TYPES.strategic]);
          return this.send(res, 200, reg.patchScale(def, version, ns, info.name, type, body, ctx), ctx.warnings);
        }
        throw methodNotAllowed();
      }
      if (sub === 'token' && def.token) {
        if (info.verb !== 'create') throw methodNotAllowed();
        const { body } = await this.readJson(req, writeAccepted);
        return this.send(res, 201, tokenRequest(this.reviewDeps(), ns, info.name, isMap(body) ? body : {}), ctx.warnings);
      }
      if (sub === 'binding' && def.binding) {
        if (info.verb !== 'create') throw methodNotAllowed();
        const { body } = await this.readJson(req, writeAccepted);
        reg.bind(def, ns, info.name, body, ctx);
        return this.send(res, 201, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 }, ctx.warnings);
      }
      if (sub === 'finalize' && def.finalize) {
        if (info.verb !== 'update') throw methodNotAllowed();
        const { body } = await this.readJson(req, writeAccepted);
        const spec = isMap(body) && isMap(body['spec']) ? body['spec'] : {};
        const finalizers = Array.isArray(spec['finalizers']) ? spec['finalizers'].map(String) : [];
        return one(200, reg.finalize(def, info.name, finalizers, ctx));
      }
      throw pathNotFound();
    }

    // Collections take GET, POST and DELETE; items take GET, PUT, PATCH and DELETE.
    if ((info.name === '' && (info.verb === 'update' || info.verb === 'patch')) || (info.name !== '' && info.verb === 'create')) throw methodNotAllowed();
    switch (info.verb) {
      case 'get':
        return one(200, reg.get(def, version, ns, info.name));
      case 'list': {
        const opts = listOptions(q);
        const list = reg.list(def, version, ns, opts);
        if (neg.table) {
          const t = toTable(def, version, list.items, list, now, include);
          return this.send(res, 200, t, ctx.warnings, {}, `application/json;as=Table;v=${neg.table};g=meta.k8s.io`);
        }
        const meta: JsonMap = { resourceVersion: list.resourceVersion };
        if (list.continue) meta['continue'] = list.continue;
        if (list.remainingItemCount !== undefined) meta['remainingItemCount'] = list.remainingItemCount;
        if (neg.partial) {
          return this.send(res, 200, { kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', metadata: meta, items: list.items.map((o) => ({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata })) }, ctx.warnings);
        }
        return this.send(res, 200, { kind: def.listKind, apiVersion: def.group === '' ? version : `${def.group}/${version}`, metadata: meta, items: list.items }, ctx.warnings);
      }
      case 'watch':
        return this.watch(res, def, version, ns, info, q, neg, include);
      case 'create': {
        const { body } = await this.readJson(req, writeAccepted);
        return one(201, reg.create(def, version, ns, body, ctx));
      }
      case 'update': {
        const { body } = await this.readJson(req, writeAccepted);
        const r = reg.update(def, version, ns, info.name, body, ctx);
        return one(r.created ? 201 : 200, r.object);
      }
      case 'patch': {
        const type = mediaType(headerOne(req.headers['content-type']));
        const { body } = await this.readJson(req, reg.patchTypes(def));
        const r = reg.patch(def, version, ns, info.name, type, body, ctx);
        return one(r.created ? 201 : 200, r.object);
      }
      case 'delete': {
        const opts = await this.deleteOptions(req, q);
        const r = reg.delete(def, version, ns, info.name, opts, ctx);
        return 'object' in r ? one(200, r.object) : this.send(res, 200, r.status, ctx.warnings);
      }
      case 'deletecollection': {
        const opts = await this.deleteOptions(req, q);
        const list = reg.deleteCollection(def, version, ns, listOptions(q), opts, ctx);
        return this.send(res, 200, { kind: def.listKind, apiVersion: def.group === '' ? version : `${def.group}/${version}`, metadata: { resourceVersion: list.resourceVersion }, items: list.items }, ctx.warnings);
      }
      default:
        throw methodNotAllowed();
    }
  }

  private async deleteOptions(req: ApiRequest, q: URLSearchParams): Promise<DeleteOptions> {
    const { body } = await this.readJson(req, [JSON_TYPE, 'application/yaml', PROTOBUF_TYPE]);
    const opts: DeleteOptions = {};
    if (body !== undefined && !isMap(body)) throw badRequest('the body of a DELETE must be a DeleteOptions object');
    const b = (body ?? {}) as JsonMap;
    const policy = q.get('propagationPolicy') ?? b['propagationPolicy'];
    if (policy !== undefined && policy !== null) opts.propagationPolicy = String(policy);
    const grace = q.get('gracePeriodSeconds') ?? b['gracePeriodSeconds'];
    if (grace !== undefined && grace !== null) {
      const n = Number(grace);
      if (!Number.isInteger(n)) throw badRequest(`invalid gracePeriodSeconds ${JSON.stringify(grace)}: must be an integer`);
      opts.gracePeriodSeconds = n;
    }
    const orphan = q.get('orphanDependents') ?? b['orphanDependents'];
    if (orphan !== undefined && orphan !== null) opts.orphanDependents = orphan === true || orphan === 'true';
    if (isMap(b['preconditions'])) {
      const p = b['preconditions'];
      opts.preconditions = {
        ...(typeof p['uid'] === 'string' ? { uid: p['uid'] } : {}),
        ...(typeof p['resourceVersion'] === 'string' ? { resourceVersion: p['resourceVersion'] } : {}),
      };
    }
    return opts;
  }

  private watch(res: ApiResponse, def: ResourceDef, version: string, ns: string, info: RequestInfo, q: URLSearchParams, neg: Negotiated, include: IncludeObject): void {
    let fieldSelector = q.get('fieldSelector') ?? undefined;
    if (info.name !== '') fieldSelector = fieldSelector ? `${fieldSelector},metadata.name=${info.name}` : `metadata.name=${info.name}`;
    const timeoutText = q.get('timeoutSeconds');
    const sie = q.get('sendInitialEvents');
    const w = prepareWatch(this.d.registry, def, version, ns, {
      ...(q.get('resourceVersion') !== null ? { resourceVersion: q.get('resourceVersion')! } : {}),
      ...(q.get('resourceVersionMatch') ? { resourceVersionMatch: q.get('resourceVersionMatch')! } : {}),
      ...(q.get('labelSelector') ? { labelSelector: q.get('labelSelector')! } : {}),
      ...(fieldSelector ? { fieldSelector } : {}),
      allowWatchBookmarks: q.get('allowWatchBookmarks') === 'true',
      ...(sie !== null ? { sendInitialEvents: sie === 'true' } : {}),
      ...(timeoutText !== null && /^\d+$/.test(timeoutText) ? { timeoutSeconds: Number(timeoutText) } : {}),
    }, this.d.minRequestTimeoutSeconds);
    const contentType = neg.table ? `application/json;as=Table;v=${neg.table};g=meta.k8s.io` : JSON_TYPE;
    res.head(200, { 'Content-Type': contentType, 'Cache-Control': 'no-cache, private' });
    let first = true;
    const encode = (e: WatchEvent): string => {
      if (neg.table && (e.type === 'ADDED' || e.type === 'MODIFIED' || e.type === 'DELETED')) {
        const obj = e.object as KubeObject;
        const t = toTable(def, version, [obj], { resourceVersion: String(obj.metadata.resourceVersion ?? '') }, this.d.now(), include, first);
        first = false;
        return JSON.stringify({ type: e.type, object: t }) + '\n';
      }
      return JSON.stringify(e) + '\n';
    };
    let ended = false;
    // The watch may end while it starts (a too-old resourceVersion), before start() returns.
    let stop: () => void = () => {};
    const end = (): void => {
      if (ended) return;
      ended = true;
      this.watches.delete(end);
      stop();
      res.end();
    };
    this.watches.add(end);
    stop = w.start({
      send: (e) => {
        if (!ended) res.write(encode(e));
      },
      end,
    });
    if (ended) stop();
    res.onClose(() => {
      ended = true;
      this.watches.delete(end);
      stop();
    });
  }
}

/** The field manager: as given, else the user agent's product name (`kubectl`), as upstream. */
function fieldManagerOf(given: string | null, userAgent: string | undefined): string {
  if (given !== null && given !== '') {
    if (given.length > 128) throw badRequest(`fieldManager: Too long: may not be more than 128 bytes`);
    return given;
  }
  const product = (userAgent ?? '').split('/')[0]!.trim();
  return product === '' ? 'unknown' : product.slice(0, 128);
}

function parseDryRun(q: URLSearchParams): boolean {
  const v = q.getAll('dryRun');
  if (v.length === 0) return false;
  for (const x of v) if (x !== 'All') throw badRequest(`dryRun: Unsupported value: ${JSON.stringify(x)}: supported values: "All"`);
  return true;
}

function parseFieldValidation(q: URLSearchParams): FieldValidation {
  const v = q.get('fieldValidation');
  if (v === null || v === '') return 'Warn';
  if (v === 'Strict' || v === 'Warn' || v === 'Ignore') return v;
  throw badRequest(`fieldValidation: Unsupported value: ${JSON.stringify(v)}: supported values: "Ignore", "Strict", "Warn"`);
}

function listOptions(q: URLSearchParams): ListOptions {
  const o: ListOptions = {};
  const ls = q.get('labelSelector');
  if (ls) o.labelSelector = ls;
  const fs = q.get('fieldSelector');
  if (fs) o.fieldSelector = fs;
  const limit = q.get('limit');
  if (limit !== null && limit !== '') {
    const n = Number(limit);
    if (!Number.isInteger(n) || n < 0) throw badRequest(`invalid limit ${JSON.stringify(limit)}: must be a non-negative integer`);
    o.limit = n;
  }
  const c = q.get('continue');
  if (c) o.continue = c;
  const rv = q.get('resourceVersion');
  if (rv !== null) o.resourceVersion = rv;
  const rvm = q.get('resourceVersionMatch');
  if (rvm) o.resourceVersionMatch = rvm;
  return o;
}

