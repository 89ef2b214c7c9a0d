/**
 * The controller's Kubernetes client: a kubeconfig (a file, in-cluster service-account credentials,
 * or text) loaded with @kubernetes/client-node, plain JSON requests over the client's own TLS and
 * credentials (objects stay exactly as the API server wrote them: no model classes, no Date
 * conversions), and client-node's Watch with bookmarks and a server-side timeout for informers.
 *
 * Every failed request throws AMBIT_ERR_KUBE_API naming the verb, path, HTTP status and the
 * server's Status reason and message; callers branch on `kubeStatus(e)`, never on text.
 */
import * as k8s from '@kubernetes/client-node';
import { AmbitError, errorMessage } from '../../shared/errors.js';
import { KubeApi } from '../../shared/kube-api.js';

/** Where the client's cluster and credentials come from. */
export type KubeConfigSource =
  /** A kubeconfig file (its current context). */
  | { file: string }
  /** A kubeconfig's text. */
  | { text: string }
  /** The pod's service account (KUBERNETES_SERVICE_HOST/PORT, the mounted token and CA). */
  | { inCluster: true };

/** Loads a kubeconfig; throws AMBIT_ERR_KUBE_CONFIG naming what is missing. */
export function loadKubeConfig(source: KubeConfigSource): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  try {
    if ('file' in source) kc.loadFromFile(source.file);
    else if ('text' in source) kc.loadFromString(source.text);
    else kc.loadFromCluster();
  } catch (e) {
    const what = 'file' in source ? `kubeconfig ${source.file}` : 'text' in source ? 'kubeconfig text' : 'in-cluster credentials';
    throw new AmbitError('AMBIT_ERR_KUBE_CONFIG', `cannot load ${what}: ${errorMessage(e)}`, { cause: e });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new AmbitError('AMBIT_ERR_KUBE_CONFIG', 'kubeconfig has no current cluster (current-context names none, or names a missing one)');
  return kc;
}

export { kubeFailure as kubeStatus, isNotFound, isConflict, isAlreadyExists, type KubeRequest, type KubeFailure } from '../../shared/kube-api.js';

/** Plain JSON requests to one API server with the kubeconfig's TLS settings and credentials. */
export class KubeClient extends KubeApi {
  constructor(readonly kubeConfig: k8s.KubeConfig) {
    super({
      endpoint: { server: kubeConfig.getCurrentCluster()?.server ?? '' },
      authorize: (opts) => kubeConfig.applyToHTTPSOptions(opts as Parameters<k8s.KubeConfig['applyToHTTPSOptions']>[0]),
      errorCode: 'AMBIT_ERR_KUBE_API',
      unreachableHint: 'is the API server reachable?',
      // A list of every pod of a big cluster fits.
      maxBodyBytes: 256 * 1024 * 1024,
    });
  }

  /** Server-side apply of `body` as field manager `manager` (creates the object when missing). */
  apply<T = unknown>(path: string, body: unknown, manager: string, force = true): Promise<T> {
    return this.request<T>({
      method: 'PATCH',
      path,
      query: { fieldManager: manager, ...(force ? { force: 'true' } : {}) },
      body,
      contentType: 'application/apply-patch+yaml',
    });
  }

  delete<T = unknown>(path: string, body?: unknown): Promise<T> {
    return this.request<T>({ method: 'DELETE', path, ...(body !== undefined ? { body } : {}) });
  }

  /** A client-node Watch for informers: bookmarks on, streams the server ends after a random 5-10 min. */
  clientNodeWatch(): k8s.Watch {
    return new BookmarkWatch(this.kubeConfig);
  }
}

/**
 * client-node's Watch asking for bookmarks (so a quiet resource's watch keeps an up-to-date
 * resourceVersion and its connection shows signs of life) and a server-side timeout of 5 to 10
 * minutes, as client-go's reflector does, so streams are renewed before proxies cut them.
 */
class BookmarkWatch extends k8s.Watch {
  constructor(config: k8s.KubeConfig) {
    super(config);
    // client-node aborts a watch that saw no byte for requestTimeoutMs (30 s by default), which a
    // server sending bookmarks once a minute would trip; a dead connection is still noticed.
    (this as unknown as { requestTimeoutMs: number }).requestTimeoutMs = 90_000;
  }

  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const timeoutSeconds = 300 + Math.floor(Math.random() * 300);
    return super.watch(path, { ...queryParams, allowWatchBookmarks: true, timeoutSeconds }, callback, done);
  }
}
