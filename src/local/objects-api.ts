/**
 * Objects to and from local mode's API server, as kubectl moves them: a kind's REST path found
 * through discovery (cached per group/version), `apply` as server-side apply (create or update
 * in one request, field manager `ambit-local`), `delete` with background propagation.
 *
 * Invariants: namespaces are written before the objects in them (a namespace a manifest uses but
 * does not declare is created, as `ambit local apply` always accepted such manifests); each
 * object is written on its own, in the order given, and the first refusal stops the batch with
 * the API server's message naming the object.
 */
import { AmbitError } from '../shared/errors.js';
import { describeObject, splitApiVersion, type KubeObject } from '../controller/objects.js';
import { kubeFailure, type KubeClient } from './kube-client.js';

export const FIELD_MANAGER = 'ambit-local';

interface ApiResource {
  plural: string;
  namespaced: boolean;
}

interface DiscoveryList {
  resources?: Array<{ name: string; kind: string; namespaced: boolean }>;
}

/** How long a pod waits for its namespace's `default` ServiceAccount (made just after the namespace). */
const SERVICE_ACCOUNT_WAIT_MS = 10_000;

export class ObjectsApi {
  private readonly resources = new Map<string, Promise<Map<string, ApiResource>>>();

  constructor(private readonly client: KubeClient) {}

  /** The kinds one group/version serves (kind → plural, scope), from discovery. */
  private groupVersion(apiVersion: string): Promise<Map<string, ApiResource>> {
    let p = this.resources.get(apiVersion);
    if (!p) {
      const path = apiVersion === 'v1' ? '/api/v1' : `/apis/${apiVersion}`;
      p = this.client.get<DiscoveryList>(path).then((list) => {
        const m = new Map<string, ApiResource>();
        for (const r of list.resources ?? []) if (!r.name.includes('/')) m.set(r.kind, { plural: r.name, namespaced: r.namespaced });
        return m;
      });
      // A group/version a CRD adds later must be found then: forget failures and misses.
      p.catch(() => this.resources.delete(apiVersion));
      this.resources.set(apiVersion, p);
    }
    return p;
  }

  /** The collection path of `kind` in `apiVersion` (namespaced ones in `namespace`). */
  async collectionPath(apiVersion: string, kind: string, namespace?: string): Promise<string> {
    let res = (await this.groupVersion(apiVersion).catch(() => undefined))?.get(kind);
    if (!res) {
      this.resources.delete(apiVersion);
      res = (await this.groupVersion(apiVersion).catch(() => undefined))?.get(kind);
    }
    if (!res) throw new AmbitError('AMBIT_ERR_APISERVER_REQUEST', `the local API server does not serve ${kind} in ${apiVersion}; is its CRD installed?`);
    const base = splitApiVersion(apiVersion).group === '' ? `/api/${apiVersion}` : `/apis/${apiVersion}`;
    return res.namespaced ? `${base}/namespaces/${encodeURIComponent(namespace ?? 'default')}/${res.plural}` : `${base}/${res.plural}`;
  }

  async objectPath(o: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): Promise<string> {
    return `${await this.collectionPath(o.apiVersion, o.kind, o.metadata.namespace ?? 'default')}/${encodeURIComponent(o.metadata.name)}`;
  }

  /** Server-side apply of every object (namespaces first); resolves with what the server holds. */
  async apply(objects: readonly KubeObject[]): Promise<KubeObject[]> {
    const namespaces = objects.filter((o) => o.kind === 'Namespace' && o.apiVersion === 'v1');
    const rest = objects.filter((o) => !namespaces.includes(o));
    const out: KubeObject[] = [];
    for (const ns of namespaces) out.push(await this.applyOne(ns));
    const declared = new Set(namespaces.map((n) => n.metadata.name));
    for (const o of rest) {
      const ns = o.metadata.namespace;
      if (ns && !declared.has(ns) && (await this.isNamespaced(o))) {
        await this.ensureNamespace(ns);
        declared.add(ns);
      }
      out.push(await this.applyOne(o));
    }
    return out;
  }

  private async isNamespaced(o: KubeObject): Promise<boolean> {
    return (await this.groupVersion(o.apiVersion).catch(() => undefined))?.get(o.kind)?.namespaced ?? true;
  }

  private async ensureNamespace(name: string): Promise<void> {
    try {
      await this.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    } catch (e) {
      if (kubeFailure(e)?.reason !== 'AlreadyExists') throw e;
    }
  }

  private async applyOne(o: KubeObject): Promise<KubeObject> {
    const body = { ...o, metadata: { ...o.metadata } };
    delete (body.metadata as Record<string, unknown>)['resourceVersion'];
    delete (body as Record<string, unknown>)['status'];
    const path = await this.objectPath(o);
    const deadline = Date.now() + SERVICE_ACCOUNT_WAIT_MS;
    for (;;) {
      try {
        return await this.client.request<KubeObject>({
          method: 'PATCH',
          path,
          query: { fieldManager: FIELD_MANAGER, force: 'true' },
          body,
          contentType: 'application/apply-patch+yaml',
        });
      } catch (e) {
        const f = kubeFailure(e);
        // The namespace's `default` ServiceAccount is made just after the namespace: wait for it.
        if (o.kind === 'Pod' && f?.status === 403 && /error looking up service account/.test((e as Error).message) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        throw new AmbitError('AMBIT_ERR_APISERVER_REQUEST', `cannot apply ${describeObject(o)}: ${(e as Error).message}`, { cause: e, ...(f ? { details: { status: f.status, reason: f.reason } } : {}) });
      }
    }
  }

  /** Deletes every object (dependents in the background, as kubectl does); missing ones are skipped. Resolves with what was deleted. */
  async delete(objects: readonly KubeObject[]): Promise<KubeObject[]> {
    const deleted: KubeObject[] = [];
    for (const o of [...objects].reverse()) {
      try {
        await this.client.request({ method: 'DELETE', path: await this.objectPath(o), body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background' } });
        deleted.push(o);
      } catch (e) {
        if (kubeFailure(e)?.status === 404) continue;
        throw new AmbitError('AMBIT_ERR_APISERVER_REQUEST', `cannot delete ${describeObject(o)}: ${(e as Error).message}`, { cause: e });
      }
    }
    return deleted.reverse();
  }
}
